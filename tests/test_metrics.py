"""Localisation metrics: known-answer fixtures and a cross-check against a per-pixel reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validator.errors import DataError, UsageError
from validator.metrics import METRICS, box_mask, default_pointing_tolerance, metric_info, score_maps
from validator.metrics.registry import BOOLEAN, CONTINUOUS

BOX_METRICS = ["area", "energy", "lift", "excess", "chance_corrected", "pointing_hit", "center_hit",
               "rank_accuracy", "cam_box_iou", "cam_box_hit"]
MAP_METRICS = ["energy", "lift", "excess", "chance_corrected", "pointing_hit", "rank_accuracy", "cam_box_iou",
               "cam_box_hit", "corner_heat_tl", "corner_heat_tr", "corner_heat_bl", "corner_heat_br",
               "corner_heat_max", "border_heat"]


def one(maps_2d, boxes, **kw):
    """Score a single map; return {metric: float}."""
    out = score_maps(np.asarray(maps_2d, dtype=np.float64)[None], [np.asarray(boxes, dtype=float)], **kw)
    return {k: float(v[0]) for k, v in out.items()}


# ---------------------------------------------------------------- box masks


def test_box_mask_pixel_centre_rule():
    assert box_mask(np.array([[0, 0, 2, 2]]), 4, 4).sum() == 4
    assert box_mask(np.array([[0, 0, 2, 2]]), 4, 4)[:2, :2].all()
    # centres 0.5 and 1.5 lie in [0.4, 1.6): 2 x 2 pixels
    assert box_mask(np.array([[0.4, 0.4, 1.6, 1.6]]), 4, 4).sum() == 4
    # x1 is exclusive: centre 1.5 is not < 1.5, and centre 0.5 is < 0.6
    assert box_mask(np.array([[0.6, 0, 1.5, 1]]), 4, 4).sum() == 0
    # union of overlapping boxes, clipped at the image edge
    m = box_mask(np.array([[0, 0, 3, 1], [2, 0, 9, 2]]), 3, 5)
    expected = np.array([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(m, expected)
    assert box_mask(np.zeros((0, 4)), 3, 3).sum() == 0


def test_box_validation():
    with pytest.raises(DataError, match="x1 < x0"):
        box_mask(np.array([[5, 0, 2, 2]]), 4, 4)
    with pytest.raises(DataError, match="finite"):
        box_mask(np.array([[0, 0, np.nan, 2]]), 4, 4)
    with pytest.raises(DataError, match=r"\[k, 4\]"):
        box_mask(np.array([[0, 0, 2]]), 4, 4)


# ---------------------------------------------------------------- mass metrics

BOX = [[2, 2, 6, 6]]  # 16 pixels of a 10 x 10 image: A = 0.16


def test_all_heat_inside_box():
    h = np.zeros((10, 10))
    h[2:6, 2:6] = np.arange(1, 17).reshape(4, 4)
    r = one(h, BOX)
    assert r["area"] == pytest.approx(0.16)
    assert r["energy"] == pytest.approx(1.0)
    assert r["lift"] == pytest.approx(1 / 0.16)
    assert r["excess"] == pytest.approx(0.84)
    assert r["chance_corrected"] == pytest.approx(1.0)
    assert r["rank_accuracy"] == pytest.approx(1.0)
    assert r["pointing_hit"] == 1.0
    assert r["dead"] == 0.0


def test_no_heat_inside_box():
    h = np.ones((10, 10))
    h[2:6, 2:6] = 0.0
    r = one(h, BOX)
    assert r["energy"] == 0.0
    assert r["lift"] == 0.0
    assert r["chance_corrected"] == pytest.approx(-0.16 / 0.84)
    # the 84 outside pixels tie at the cut; each counts 16/84 of a pixel, none inside
    assert r["rank_accuracy"] == 0.0


def test_half_heat_inside_and_tied_peaks():
    h = np.zeros((10, 10))
    h[3, 3] = 1.0  # inside
    h[9, 9] = 1.0  # outside, far from the box
    r = one(h, BOX)
    assert r["energy"] == pytest.approx(0.5)
    assert r["lift"] == pytest.approx(0.5 / 0.16)
    # two tied maxima, one of them off the object: not a hit (every maximum must hit)
    assert r["pointing_hit"] == 0.0
    # K = 16: two hot pixels (1 inside), then 14 of the 98 zero-valued pixels (15 of them inside)
    assert r["rank_accuracy"] == pytest.approx((1 + 14 * 15 / 98) / 16)


def test_uniform_map_scores_chance():
    r = one(np.full((10, 10), 3.0), BOX)
    assert r["energy"] == pytest.approx(0.16)
    assert r["lift"] == pytest.approx(1.0)
    assert r["excess"] == pytest.approx(0.0)
    assert r["rank_accuracy"] == pytest.approx(0.16)  # ties shared fractionally: chance level
    assert r["pointing_hit"] == 0.0  # a flat map points nowhere
    assert r["cam_box_iou"] == pytest.approx(0.16)  # the CAM box is the whole image


def test_box_covering_image_has_no_chance_correction():
    r = one(np.random.default_rng(0).random((6, 6)), [[0, 0, 6, 6]])
    assert r["area"] == 1.0 and r["lift"] == pytest.approx(1.0)
    assert math.isnan(r["chance_corrected"])


def test_dead_maps_are_nan_never_pass():
    nan_map = np.ones((10, 10))
    nan_map[0, 0] = np.nan
    inf_map = np.ones((10, 10))
    inf_map[5, 5] = np.inf
    maps = np.stack([np.zeros((10, 10)), nan_map, inf_map, np.ones((10, 10))])
    out = score_maps(maps, [np.array(BOX, float)] * 4)
    np.testing.assert_array_equal(out["dead"], [1, 1, 1, 0])
    for name in MAP_METRICS:
        assert np.isnan(out[name][:3]).all(), name
        assert np.isfinite(out[name][3]), name
    # not map-derived: still defined for dead maps
    np.testing.assert_allclose(out["area"], 0.16)
    np.testing.assert_array_equal(out["center_hit"], 1.0)


def test_sample_without_boxes():
    h = np.random.default_rng(1).random((2, 16, 16))
    out = score_maps(h, [np.zeros((0, 4)), np.array([[0, 0, 8, 8.0]])])
    for name in BOX_METRICS:
        assert np.isnan(out[name][0]), name
        assert np.isfinite(out[name][1]), name
    assert out["dead"][0] == 0.0
    # nothing to exclude: the corner share is the plain share of heat in the 2 x 2 corner
    assert out["corner_heat_br"][0] == pytest.approx(h[0, 14:, 14:].sum() / h[0].sum())


def test_empty_batch():
    out = score_maps(np.zeros((0, 8, 8)), [])
    assert set(out) >= set(MAP_METRICS) and all(v.shape == (0,) for v in out.values())


def test_negative_maps_rejected_and_bad_settings():
    with pytest.raises(ValueError, match=">= 0"):
        score_maps(-np.ones((1, 4, 4)), [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="2 box arrays"):
        score_maps(np.ones((1, 4, 4)), [np.zeros((0, 4))] * 2)
    with pytest.raises(UsageError, match="corner_fraction"):
        score_maps(np.ones((1, 4, 4)), [np.zeros((0, 4))], corner_fraction=0.7)
    with pytest.raises(UsageError, match="region 'wm'"):
        score_maps(np.ones((1, 4, 4)), [np.zeros((0, 4))], regions={"wm": (0.5, 0, 0.2, 1)})


# ---------------------------------------------------------------- pointing game


def hot_pixel(row, col, size=224):
    h = np.full((size, size), 0.01)
    h[row, col] = 1.0
    return h


def test_pointing_hot_pixel_inside_near_and_outside():
    box = [[100, 100, 120, 120]]
    assert default_pointing_tolerance(224, 224) == 15.0
    assert one(hot_pixel(110, 110), box)["pointing_hit"] == 1.0
    assert one(hot_pixel(110, 134), box)["pointing_hit"] == 1.0  # centre 134.5: 14.5 px from x1 = 120
    assert one(hot_pixel(110, 135), box)["pointing_hit"] == 0.0  # 15.5 px
    assert one(hot_pixel(110, 135), box, pointing_tolerance=0)["pointing_hit"] == 0.0
    assert one(hot_pixel(10, 10), box)["pointing_hit"] == 0.0


def test_pointing_tolerance_edge_is_inclusive_and_euclidean():
    box = [[100, 100, 120, 120]]
    # centre 124.5 is exactly 4.5 px right of the box
    assert one(hot_pixel(110, 124), box, pointing_tolerance=4.5)["pointing_hit"] == 1.0
    assert one(hot_pixel(110, 124), box, pointing_tolerance=4.49)["pointing_hit"] == 0.0
    # diagonal: (123.5, 123.5) is 3.5 * sqrt(2) = 4.95 px from the corner (120, 120)
    assert one(hot_pixel(123, 123), box, pointing_tolerance=4.9)["pointing_hit"] == 0.0
    assert one(hot_pixel(123, 123), box, pointing_tolerance=4.95)["pointing_hit"] == 1.0


def test_default_tolerance_scales_with_image():
    assert default_pointing_tolerance(64, 32) == pytest.approx(15 * 64 / 224)  # 4.29 px
    box = [[20, 20, 30, 30]]
    assert one(hot_pixel(25, 33, size=64), box)["pointing_hit"] == 1.0  # 3.5 px
    assert one(hot_pixel(25, 34, size=64), box)["pointing_hit"] == 0.0  # 4.5 px


def test_center_baseline():
    h = np.ones((100, 100))
    assert one(h, [[40, 40, 60, 60]])["center_hit"] == 1.0
    assert one(h, [[0, 0, 20, 20]])["center_hit"] == 0.0
    # centre (50, 50) is 15 px right of x1 = 35: beyond the default 15 * 100 / 224 = 6.7 px, within 15 px
    assert one(h, [[0, 40, 35, 60]])["center_hit"] == 0.0
    assert one(h, [[0, 40, 35, 60]], pointing_tolerance=15)["center_hit"] == 1.0


# ---------------------------------------------------------------- CAM box


def blob_map():
    h = np.full((32, 32), 0.1)  # background below the 20% threshold
    h[4:14, 6:20] = 1.0  # the largest component: box (6, 4, 20, 14), 140 px
    h[25:28, 25:29] = 0.9  # a smaller separate hot blob: must be ignored
    return h


def test_cam_box_largest_component():
    h = blob_map()
    assert one(h, [[6, 4, 20, 14]])["cam_box_iou"] == pytest.approx(1.0)
    r = one(h, [[6, 4, 20, 24]])  # twice as tall: IoU 140 / 280
    assert r["cam_box_iou"] == pytest.approx(0.5) and r["cam_box_hit"] == 1.0
    r = one(h, [[10, 4, 20, 14]])  # 100 / 140
    assert r["cam_box_iou"] == pytest.approx(100 / 140)
    r = one(h, [[25, 25, 29, 28]])  # the small blob's box: the CAM box is elsewhere
    assert r["cam_box_iou"] == 0.0 and r["cam_box_hit"] == 0.0
    # best-matching of several boxes
    assert one(h, [[25, 25, 29, 28], [10, 4, 20, 14]])["cam_box_iou"] == pytest.approx(100 / 140)
    assert one(h, [[6, 4, 20, 24]], iou_hit=0.6)["cam_box_hit"] == 0.0


def test_cam_box_uses_8_connectivity_and_threshold():
    h = blob_map()
    h[14, 20] = 1.0  # touches the big blob only diagonally: joins it, box grows to (6, 4, 21, 15)
    assert one(h, [[6, 4, 21, 15]])["cam_box_iou"] == pytest.approx(1.0)
    # below 0.1 / 1.0 the background joins in: one component spanning the image
    assert one(blob_map(), [[0, 0, 32, 32]], cam_threshold=0.05)["cam_box_iou"] == pytest.approx(1.0)


# ---------------------------------------------------------------- corner, border and region heat


def corner_map():
    h = np.ones((64, 64))
    h[:8, :8] = 10.0  # hot top-left corner (corner_fraction 0.125 -> 8 x 8 px)
    return h


def test_corner_heat_with_hot_corner():
    h = corner_map()
    total = 4096 - 64 + 640
    r = one(h, [[30, 30, 40, 40]], regions={"wm": (0.75, 0.75, 1.0, 1.0)})
    assert r["corner_heat_tl"] == pytest.approx(640 / total)
    for c in ("tr", "bl", "br"):
        assert r[f"corner_heat_{c}"] == pytest.approx(64 / total)
    assert r["corner_heat_max"] == pytest.approx(640 / total)
    assert r["region_wm"] == pytest.approx(256 / total)  # pixels 48..63 in both directions
    # border band of 0.1 * 64 = 6.4 px: centres < 6.4 -> 6 px per side; 60 of the hot 64 px lie in it
    band_px = 64 * 64 - 52 * 52
    assert r["border_heat"] == pytest.approx((band_px + 60 * 9) / total)


def test_corner_heat_excludes_object_pixels():
    h = corner_map()
    total = 4096 - 64 + 640
    r = one(h, [[0, 0, 16, 16]])  # the object covers the hot corner: not off-object heat
    assert r["corner_heat_tl"] == 0.0
    assert r["corner_heat_tr"] == pytest.approx(64 / total)
    r = one(h, [[0, 0, 4, 8]])  # covers the left half of the corner only
    assert r["corner_heat_tl"] == pytest.approx(320 / total)


# ---------------------------------------------------------------- cross-check against a per-pixel reference


def reference_scores(h: np.ndarray, boxes: np.ndarray, tol: float) -> tuple[float, float, float]:
    """Energy, pointing hit and rank accuracy by explicit loops over pixels (independent of the library)."""
    rows, cols = h.shape

    def inside(r, c):
        return any(x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1 for x0, y0, x1, y1 in boxes)

    def dist(px, py):
        return min(math.hypot(max(x0 - px, 0, px - x1), max(y0 - py, 0, py - y1)) for x0, y0, x1, y1 in boxes)

    pixels = [(float(h[r, c]), inside(r, c), r, c) for r in range(rows) for c in range(cols)]
    total = sum(v for v, *_ in pixels)
    energy = sum(v for v, b, *_ in pixels if b) / total
    peak = max(v for v, *_ in pixels)
    hit = all(dist(c + 0.5, r + 0.5) <= tol for v, _, r, c in pixels if v == peak)
    k = sum(b for _, b, *_ in pixels)
    taken, score = 0, 0.0
    for value in sorted({v for v, *_ in pixels}, reverse=True):  # groups of tied values, hottest first
        group = [b for v, b, *_ in pixels if v == value]
        take = min(len(group), k - taken)
        score += take * sum(group) / len(group)
        taken += take
        if taken == k:
            break
    return energy, float(hit), score / k


@pytest.mark.parametrize("quantised", [False, True])
def test_matches_per_pixel_reference(quantised):
    rng = np.random.default_rng(42 + quantised)
    n, rows, cols = 12, 12, 15
    maps = rng.random((n, rows, cols)) ** 3
    if quantised:  # many ties: exercises the tie rules of pointing and rank accuracy
        maps = np.floor(maps * 4) + (rng.random((n, rows, cols)) < 0.1)
    boxes = []
    for _ in range(n):
        k = rng.integers(1, 4)
        xy0 = rng.uniform(-2, [cols - 2, rows - 2], size=(k, 2))
        wh = rng.uniform(1.5, 8, size=(k, 2))
        boxes.append(np.concatenate([xy0, xy0 + wh], axis=1))
    tol = 2.3
    out = score_maps(maps, boxes, pointing_tolerance=tol)
    for i in range(n):
        if box_mask(boxes[i], rows, cols).sum() == 0:
            assert np.isnan(out["energy"][i])
            continue
        energy, hit, rank = reference_scores(maps[i], boxes[i], tol)
        assert out["energy"][i] == pytest.approx(energy, abs=1e-12)
        assert out["pointing_hit"][i] == hit
        assert out["rank_accuracy"][i] == pytest.approx(rank, abs=1e-12)
        np.testing.assert_array_equal(box_mask(boxes[i], rows, cols),
                                      [[any(b[0] <= c + .5 < b[2] and b[1] <= r + .5 < b[3] for b in boxes[i])
                                        for c in range(cols)] for r in range(rows)])


# ---------------------------------------------------------------- registry


def test_registry_covers_every_column_with_the_right_direction():
    out = score_maps(np.ones((1, 8, 8)), [np.array([[1, 1, 4, 4.0]])], regions={"wm": (0, 0, 0.5, 0.5)})
    for name in out:
        info = metric_info(name)
        assert info.name == name and info.kind in (CONTINUOUS, BOOLEAN)
    higher = {"lift", "energy", "excess", "chance_corrected", "relative_lift", "pointing_hit", "rank_accuracy", "cam_box_iou",
              "cam_box_hit", "correct", "object_only_correct", "insertion_auc", "faithfulness_gap",
              "faithfulness_gain"}
    lower = {"corner_heat_tl", "corner_heat_tr", "corner_heat_bl", "corner_heat_br", "corner_heat_max",
             "corner_lift_tl", "corner_lift_tr", "corner_lift_bl", "corner_lift_br", "corner_lift_max",
             "border_heat", "region_wm", "dead", "edge_lift_top", "edge_lift_bottom", "edge_lift_left",
             "edge_lift_right", "edge_lift_max", "ring_heat", "ring_lift", "ring_side_lift", "ring_one_sided"}
    informational = {"area", "object_area", "center_hit", "confidence", "centre_heat", "confidence_drop",
                     "mixed_same_correct"}
    assert {n for n, m in METRICS.items() if m.higher_is_better is True} == higher
    assert {n for n in METRICS if METRICS[n].higher_is_better is None} == informational
    assert all(metric_info(n).higher_is_better is False for n in lower)
    assert not any(METRICS[n].needs_box for n in ("correct", "confidence", "dead"))
    assert METRICS["lift"].hi == math.inf
    assert METRICS["cam_box_hit"].kind == BOOLEAN
    assert METRICS["ring_one_sided"].kind == BOOLEAN and METRICS["ring_side_lift"].kind == CONTINUOUS
    assert (METRICS["ring_side_lift"].lo, METRICS["ring_side_lift"].hi) == (1.0, 8.0)
    assert METRICS["ring_side_lift"].needs_box and METRICS["ring_one_sided"].needs_box
    # lower is better for every probe that finds the class without the object, and for the sanity correlation
    assert all(METRICS[n].higher_is_better is False for n in ("bg_only_correct", "bg_only_skill", "bg_gap",
                                                              "bg_reliance", "deletion_auc", "sanity_spearman"))
    # only heatmap metrics are put in doubt by a failed sanity check
    assert {n for n, m in METRICS.items() if m.source != "heatmap"} == {
        "correct", "confidence", "bg_only_correct", "bg_only_skill", "bg_only_confidence", "object_only_correct",
        "bg_gap", "mixed_same_correct", "bg_reliance", "confidence_drop", "deletion_auc", "insertion_auc",
        "faithfulness_gap", "faithfulness_gain",
        "sanity_spearman", "hotspot_drop", "hotspot_flip"}


def test_unknown_metric_suggests_a_close_name():
    with pytest.raises(KeyError, match="did you mean 'lift'"):
        metric_info("lfit")
    with pytest.raises(KeyError, match="unknown metric 'region_'"):
        metric_info("region_")


# ---------------------------------------------------------------- ring around the object (a mark beside it)


def test_ring_known_answers():
    # 20 x 20, box 4 x 4 at (6, 6): grown by (4 + 4) / 4 = 2 (cap 20 / 8 = 2.5) -> 8 x 8 = 64 px, ring 48 px
    box = [[6, 6, 10, 10]]
    r = one(np.ones((20, 20)), box)
    assert r["ring_heat"] == pytest.approx(48 / 400) and r["ring_lift"] == pytest.approx(1.0)
    m = np.ones((20, 20))
    m[5, 5] += 9  # a mark touching the box's corner: inside the ring
    r = one(m, box)
    assert r["ring_heat"] == pytest.approx(57 / 409)
    assert r["ring_lift"] == pytest.approx((57 / 409) / (48 / 400))
    m = np.ones((20, 20))
    m[0, 19] += 9  # a mark in the far corner: outside the ring
    assert one(m, box)["ring_lift"] == pytest.approx((48 / 409) / (48 / 400))


def test_ring_width_capped_by_the_frame_and_clipped():
    # a 16 x 16 box (64% of the frame): grown by min(32 / 4, 20 / 8) = 2.5 -> the whole frame; ring = 400 - 256
    r = one(np.ones((20, 20)), [[2, 2, 18, 18]])
    assert r["ring_heat"] == pytest.approx(144 / 400) and r["ring_lift"] == pytest.approx(1.0)
    # a box in the corner: its ring is clipped to the frame, 2 x 2 box grown by 1 -> 3 x 3 = 9 px, ring 5 px
    m = np.ones((20, 20))
    m[2, 0] += 5
    r = one(m, [[0, 0, 2, 2]])
    assert r["ring_heat"] == pytest.approx(10 / 405) and r["ring_lift"] == pytest.approx((10 / 405) / (5 / 400))


def test_ring_undefined_without_box_room_or_heat():
    assert math.isnan(one(np.ones((8, 8)), [[0, 0, 8, 8]])["ring_lift"])  # the object fills the frame
    assert math.isnan(one(np.ones((8, 8)), np.zeros((0, 4)))["ring_heat"])
    assert math.isnan(one(np.zeros((8, 8)), [[2, 2, 4, 4]])["ring_lift"])  # dead map
    # two boxes: the ring is the union of both grown boxes minus both boxes
    r = one(np.ones((20, 20)), [[2, 2, 6, 6], [12, 12, 16, 16]])
    assert r["ring_heat"] == pytest.approx(2 * 48 / 400)
