"""Box-free discovery: heat atlas, region shares and SpRAy clusters, checked against known answers.

Pure numpy/scipy; scikit-learn's adjusted_rand_score is the independent oracle for cluster recovery.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from validator.discovery.atlas import (
    OVERALL,
    REGIONS,
    AtlasAccumulator,
    centre_heat,
    downsample,
    region_shares,
)
from validator.discovery.spray import MIN_POINTS, describe_clusters, spray

G = 16
_YY, _XX = np.mgrid[0:G, 0:G] + 0.5


def _unit(m):
    return m / m.sum()


def _blob(cx, cy, s=2.0):
    return np.exp(-((_XX - cx) ** 2 + (_YY - cy) ** 2) / (2 * s * s))


def _centre_maps(rng, n, jitter=2.5, noise=0.02):
    """Heat on a Gaussian blob at a random position near the centre, plus a little uniform noise."""
    centres = G / 2 + rng.uniform(-jitter, jitter, (n, 2))
    maps = np.stack([_unit(_blob(cx, cy) + noise * rng.random((G, G))) for cx, cy in centres])
    return maps, centres


def _corner_maps(rng, n, rows=slice(0, 2), cols=slice(0, 2), noise=0.02, object_heat=0.3):
    """A corner tag (most of the heat) plus weak heat on the object near the centre, plus noise."""
    centres = G / 2 + rng.uniform(-2.5, 2.5, (n, 2))
    out = []
    for cx, cy in centres:
        tag = np.zeros((G, G))
        tag[rows, cols] = 1.0 + 0.3 * rng.random(tag[rows, cols].shape)
        out.append(_unit(_unit(tag) + object_heat * _unit(_blob(cx, cy)) + noise * rng.random((G, G))))
    return np.stack(out), centres


def _box_masks(centres, half=4.0):
    """Coverage on the grid of a box of half-width `half` cells around each object centre."""
    def cover(lo, hi):
        j = np.arange(G, dtype=np.float64)
        return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, 1)

    return np.stack([cover(cy - half, cy + half)[:, None] * cover(cx - half, cx + half)[None, :]
                     for cx, cy in centres])


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    a, ca = _centre_maps(rng, 70)
    b, cb = _corner_maps(rng, 30)
    return np.concatenate([a, b]), np.r_[np.zeros(70, int), np.ones(30, int)], np.concatenate([ca, cb])


# ---------------------------------------------------------------- downsample


def test_downsample_block_sums_preserve_mass_and_place_a_delta():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 64, 48)) * 7.0
    maps[2] = 0.0
    maps[2, 37, 5] = 3.0  # rows 4 px per cell, cols 3 px per cell -> cell (9, 1)
    small = downsample(maps, grid=16)
    assert small.shape == (3, 16, 16) and small.dtype == np.float32
    np.testing.assert_allclose(small.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    expected = np.zeros((16, 16))
    expected[9, 1] = 1.0
    np.testing.assert_array_equal(small[2], expected)
    # block sums of the normalised map, exactly
    unit = maps[0] / maps[0].sum()
    np.testing.assert_allclose(small[0], unit.reshape(16, 4, 16, 3).sum(axis=(1, 3)), rtol=1e-6)


def test_downsample_non_divisor_uses_area_weights():
    maps = np.zeros((2, 50, 40))
    maps[0, 3, 5] = 1.0  # row 3 = [3, 4): 1/8 in cell row 0 = [0, 3.125), 7/8 in row 1; col 5 in col 2 = [5, 7.5)
    maps[1] = np.random.default_rng(1).random((50, 40))
    small = downsample(maps, grid=16)
    np.testing.assert_allclose(small.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    expected = np.zeros((16, 16))
    expected[0, 2], expected[1, 2] = 0.125, 0.875
    np.testing.assert_allclose(small[0], expected, atol=1e-7)


@pytest.mark.parametrize("fill", [0.0, np.nan, np.inf])
def test_downsample_dead_map_is_nan(fill):
    maps = np.ones((2, 32, 32))
    maps[1] = 0.0
    maps[1, 0, 0] = fill
    small = downsample(maps, grid=8)
    assert np.isnan(small[1]).all()
    np.testing.assert_allclose(small[0], np.full((8, 8), 1 / 64), rtol=1e-6)
    assert np.isnan(downsample(maps[:, :30, :30], grid=8)[1]).all()  # the cv2 path too


def test_downsample_rejects_negative_heat():
    with pytest.raises(ValueError, match=">= 0"):
        downsample(-np.ones((1, 16, 16)), grid=4)


# ---------------------------------------------------------------- atlas


def test_accumulator_streaming_equals_one_shot_mean():
    rng = np.random.default_rng(2)
    small = downsample(rng.random((30, 32, 32)) ** 4, grid=8).astype(np.float64)
    small[4] = np.nan  # a dead map: skipped and not counted
    keys = rng.choice(["cat", "dog", "eel"], size=30).tolist()
    keys[7] = "fox"
    small[7] = np.nan  # a class seen only with dead maps
    acc = AtlasAccumulator()
    for lo, hi in ((0, 9), (9, 20), (20, 30)):
        acc.add(small[lo:hi], keys[lo:hi])
    atlas = acc.atlas()
    live = np.isfinite(small).all(axis=(1, 2))
    def mean(rows):  # float32 inputs sum to 1 within 1e-7: the atlas renormalises the mean
        m = small[rows].mean(axis=0)
        return m / m.sum()

    np.testing.assert_allclose(atlas[OVERALL], mean(live), rtol=1e-12)
    for key in ("cat", "dog", "eel"):
        rows = live & (np.array(keys) == key)
        np.testing.assert_allclose(atlas[key], mean(rows), rtol=1e-12)
        assert acc.counts[key] == rows.sum()
        assert atlas[key].sum() == pytest.approx(1.0, abs=1e-12)
    assert acc.counts[OVERALL] == 28 and acc.n_dead == 2
    assert acc.counts["fox"] == 0 and "fox" not in atlas


def test_accumulator_rejects_shape_change_and_reserved_key():
    acc = AtlasAccumulator()
    acc.add(np.full((1, 4, 4), 1 / 16), ["a"])
    with pytest.raises(ValueError, match="shape"):
        acc.add(np.full((1, 8, 8), 1 / 64), ["a"])
    with pytest.raises(ValueError, match=OVERALL):
        acc.add(np.full((1, 4, 4), 1 / 16), [OVERALL])


@pytest.mark.parametrize("grid", [16, 12, 10, 7, 5])
def test_region_shares_of_uniform_atlas_are_the_area_shares(grid):
    uniform = np.full((grid, grid), 1.0 / grid**2)
    f, b, c = 0.125, 0.1, 0.5
    shares = region_shares(uniform, corner_fraction=f, border_fraction=b, centre_fraction=c)
    area = {**{f"corner_{k}": f * f for k in ("tl", "tr", "bl", "br")}, "border": 1 - (1 - 2 * b) ** 2,
            "centre": c * c}
    for name in REGIONS:
        assert shares[name] == pytest.approx(area[name], rel=1e-12, abs=1e-15)
        assert shares[f"area_{name}"] == pytest.approx(area[name], rel=1e-12, abs=1e-15)
    # and per map for a stack, with NaN for a dead map
    stack = np.stack([uniform, np.full((grid, grid), np.nan)])
    per_map = region_shares(stack)
    assert per_map["centre"][0] == pytest.approx(0.25, rel=1e-12) and np.isnan(per_map["centre"][1])


def test_region_shares_heat_in_top_left_corner():
    m = np.zeros((16, 16))
    m[:2, :2] = [[1.0, 2.0], [3.0, 4.0]]  # 12.5% of 16 = exactly 2 cells
    shares = region_shares(m)
    assert shares["corner_tl"] == pytest.approx(1.0)
    assert shares["corner_tr"] == shares["corner_bl"] == shares["corner_br"] == 0.0
    # border 0.1 * 16 = 1.6 cells: cell (1, 1) is 0.4 x 0.4 inside, so 4/10 * 0.16 of the heat is not border
    assert shares["border"] == pytest.approx(1.0 - 0.4 * 0.16) and shares["centre"] == 0.0
    # grid 12: the corner is 1.5 cells; heat in the fully covered cell (0, 0) is all in the corner
    m12 = np.zeros((12, 12))
    m12[0, 0] = 1.0
    assert region_shares(m12)["corner_tl"] == pytest.approx(1.0)


def test_atlas_of_bottom_right_hot_maps_concentrates_there():
    rng = np.random.default_rng(3)
    maps = rng.random((20, 64, 64)) * 0.002
    maps[:, 58:, 58:] += 1.0 + rng.random((20, 6, 6))  # inside the bottom-right 12.5% corner (8 px)
    acc = AtlasAccumulator()
    acc.add(downsample(maps, grid=16), ["cls"] * 20)
    shares = region_shares(acc.atlas()["cls"])
    lift = shares["corner_br"] / shares["area_corner_br"]
    assert shares["corner_br"] > 0.8 and lift > 40
    assert max(shares[f"corner_{c}"] for c in ("tl", "tr", "bl")) < 0.01


def test_centre_heat_pixel_rule_and_dead_maps():
    maps = np.zeros((4, 10, 10))
    maps[0] = 1.0  # rectangle [2.5, 7.5): pixel centres 2.5 .. 6.5, i.e. pixels 2..6 (5 x 5)
    maps[1, 2, 6] = 1.0
    maps[2, 7, 7] = 1.0
    maps[3, 0, 0] = np.nan
    np.testing.assert_allclose(centre_heat(maps)[:3], [0.25, 1.0, 0.0])
    assert np.isnan(centre_heat(maps)[3])


def test_mean_centre_heat_equals_atlas_centre_share():
    rng = np.random.default_rng(4)
    maps = rng.random((25, 64, 64)) ** 3
    maps[:10, 20:40, 10:30] += 5.0 * rng.random((10, 20, 20))
    maps[5] = 0.0  # dead: NaN per sample, skipped by the atlas
    per_sample = centre_heat(maps, centre_fraction=0.5)
    assert np.isnan(per_sample[5]) and np.isfinite(np.delete(per_sample, 5)).all()
    acc = AtlasAccumulator()
    acc.add(downsample(maps, grid=16), ["c"] * 25)  # 64 / 16: the centre [16, 48) px is cells [4, 12)
    atlas_share = region_shares(acc.atlas()["c"], centre_fraction=0.5)["centre"]
    assert atlas_share == pytest.approx(np.nanmean(per_sample), rel=1e-6)


# ---------------------------------------------------------------- SpRAy


def _corner_label(result, truth):
    """The cluster label holding most of the planted corner maps."""
    return int(np.bincount(result.labels[truth == 1]).argmax())


def test_spray_recovers_planted_corner_subgroup():
    maps, truth, centres = _planted()
    result = spray(maps, seed=0)
    assert result.k == 2
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    corner = _corner_label(result, truth)
    members = set(result.clusters[corner].members.tolist())
    planted = set(range(70, 100))
    assert len(members & planted) >= 0.95 * 30 and len(members - planted) <= 1
    assert result.eigenvalues[1] < 0.1 * result.eigenvalues[2]  # the gap that chose k = 2
    for cluster in result.clusters:
        assert cluster.mean_map.sum() == pytest.approx(1.0)
    assert sum(c.size for c in result.clusters) == 100

    report = describe_clusters(result, maps)  # no boxes: the centre rule
    json.dumps(report, allow_nan=False)
    flags = [c["off_object"] for c in report["clusters"]]
    assert flags[corner] and not flags[1 - corner]
    # the tag holds 1 of about 1 + 0.3 + 2.6 (noise) units: about a quarter, on 1/64 of the area
    assert report["clusters"][corner]["lifts"]["corner_tl"] > 10
    assert report["clusters"][1 - corner]["lifts"]["corner_tl"] < 2

    boxed = describe_clusters(result, maps, box_masks_small=_box_masks(centres))
    json.dumps(boxed, allow_nan=False)
    flags = [c["off_object"] for c in boxed["clusters"]]
    assert flags[corner] and not flags[1 - corner]
    assert boxed["clusters"][corner]["off_object_share"] > 0.6
    assert boxed["clusters"][1 - corner]["off_object_share"] < 0.2
    assert {c["rule"] for c in boxed["clusters"]} == {"boxes"}


def test_spray_homogeneous_maps_give_one_cluster():
    maps, _ = _centre_maps(np.random.default_rng(5), 100)
    result = spray(maps)
    assert result.k == 1 and (result.labels == 0).all()
    report = describe_clusters(result, maps)
    assert report["k"] == 1 and not report["clusters"][0]["off_object"]


def test_spray_finds_three_planted_groups():
    rng = np.random.default_rng(6)
    a, _ = _centre_maps(rng, 50)
    b, _ = _corner_maps(rng, 30)
    c, _ = _corner_maps(rng, 25, rows=slice(13, 16), cols=slice(13, 16))
    truth = np.r_[np.zeros(50), np.ones(30), np.full(25, 2)]
    result = spray(np.concatenate([a, b, c]))
    assert result.k == 3
    assert adjusted_rand_score(truth, result.labels) >= 0.9
    assert [cl.size for cl in result.clusters] == sorted((cl.size for cl in result.clusters), reverse=True)


def test_spray_is_deterministic_for_a_seed():
    maps, truth, _ = _planted(seed=7)
    first, second = spray(maps, seed=3), spray(maps, seed=3)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.eigenvalues, second.eigenvalues)
    assert adjusted_rand_score(first.labels, spray(maps, seed=4).labels) == 1.0  # a clear split: any seed


def test_spray_subsample_labels_every_live_map():
    rng = np.random.default_rng(8)
    a, _ = _centre_maps(rng, 100)
    b, _ = _corner_maps(rng, 50)
    maps = np.concatenate([a, b])
    maps[[3, 120]] = np.nan
    truth = np.r_[np.zeros(100), np.ones(50)]
    result = spray(maps, max_points=60, seed=1)
    assert result.clustered.size == 60 and not np.isin([3, 120], result.clustered).any()
    live = np.ones(150, bool)
    live[[3, 120]] = False
    assert (result.labels[live] >= 0).all() and (result.labels[~live] == -1).all()
    assert result.k == 2
    assert adjusted_rand_score(truth[live], result.labels[live]) >= 0.9
    assert sum(c.size for c in result.clusters) == 148
    np.testing.assert_array_equal(result.labels, spray(maps, max_points=60, seed=1).labels)


def test_spray_small_and_dead_sets():
    maps, _, _ = _planted()
    few = spray(maps[[0, 1, 2, 80, 81, 82, 83, 84]])
    assert len(few.labels) < MIN_POINTS and few.k == 1 and (few.labels == 0).all()
    assert few.eigenvalues.size == 0 and np.isnan(few.eigengap)
    assert describe_clusters(few, maps[[0, 1, 2, 80, 81, 82, 83, 84]])["eigengap"] is None
    dead = spray(np.full((4, G, G), np.nan))
    assert dead.k == 0 and (dead.labels == -1).all() and dead.clusters == ()
    same = spray(np.full((20, G, G), 1.0 / G**2))
    assert same.k == 1 and (same.labels == 0).all()


def test_spray_timing_on_500_random_maps():
    """A timing note, not a benchmark: the bound only catches a pathological slowdown."""
    maps = np.random.default_rng(9).random((500, G, G))
    maps /= maps.sum(axis=(1, 2), keepdims=True)
    start = time.perf_counter()
    result = spray(maps)
    elapsed = time.perf_counter() - start
    print(f"spray on 500 random {G}x{G} maps: {elapsed:.3f} s, k = {result.k}")
    assert result.k == 1 and (result.labels >= 0).all()
    assert elapsed < 30.0
