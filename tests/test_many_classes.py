"""Policy behaviour on data shaped like users' data: many classes, small classes, any box size, marks in
any corner, skipped records counted over one population. Tables are built by hand with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validator.data import Sample, select_samples
from validator.data.sampling import quota
from validator.metrics import score_maps
from validator.policy import evaluate, gate_status, load_policy
from validator.policy.datachecks import skipped_fraction
from validator.policy.evaluate import corner_sentence, slice_confidence


def _samples(sizes: dict[int, int]) -> list[Sample]:
    return [Sample(sample_id=f"c{c}-{i:04d}", image_path=f"/x/c{c}-{i}.png", class_id=c, class_name=f"k{c}",
                   boxes=((0.0, 0.0, 1.0, 1.0),), annotation_ids=(f"a{c}-{i}",), image_size=None)
            for c, n in sizes.items() for i in range(n)]


# ---- class-aware sampling ------------------------------------------------------------------------------------

def test_quota_tops_every_class_up_to_min_per_class_where_the_data_allow():
    sizes = {c: 100 for c in range(10)} | {10: 12}
    counts = quota(sizes, 200, 30)
    assert counts[10] == 12  # all it has
    assert all(counts[c] == 30 for c in range(10))  # 200 / 11 classes would give ~18 each
    assert sum(counts.values()) == 312


def test_select_samples_with_min_per_class_is_deterministic_and_reaches_the_quota():
    samples = _samples({c: 100 for c in range(20)})
    chosen = select_samples(samples, 200, seed=3, min_per_class=30)
    per_class = np.bincount([s.class_id for s in chosen])
    assert per_class.tolist() == [30] * 20
    assert select_samples(list(reversed(samples)), 200, seed=3, min_per_class=30) == chosen
    # the proportional budget still rules when it gives more than the minimum
    big = select_samples(_samples({0: 900, 1: 100}), 200, seed=0, min_per_class=30)
    assert np.bincount([s.class_id for s in big]).tolist() == [180, 30]


# ---- family-wise error over classes --------------------------------------------------------------------------

def _per_class_policy(multiple_comparisons: str, bound: str = "upper"):
    return load_policy({
        "name": "t", "version": 1, "multiple_comparisons": multiple_comparisons,
        "sample": {"min_samples": 1, "min_per_class": 30},
        "checks": [{"id": "c", "metric": "relative_lift", "aggregate": "mean", "bound": bound, "min": 0.1,
                    "severity": "warn", "slices": "per_class"}],
    })


def test_bonferroni_confidence_is_one_minus_alpha_over_k():
    policy = _per_class_policy("bonferroni")
    assert slice_confidence(policy, 80, per_class=True) == pytest.approx(1 - 0.05 / 80)
    assert slice_confidence(policy, 80, per_class=False) == 0.95
    assert slice_confidence(_per_class_policy("none"), 80, per_class=True) == 0.95


def test_eighty_clean_classes_at_the_floor_collect_no_warnings_by_chance_under_bonferroni():
    """Every class's true mean sits exactly at the floor (the hardest clean case): unadjusted 95% intervals
    warn on ~2.5% of classes (expected 6 over 3 x 80), Bonferroni's family-wise 5% keeps it at ~0."""
    unadjusted = adjusted = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        k, n = 80, 30
        table = {"class_name": np.repeat([f"c{i:02d}" for i in range(k)], n).astype(object),
                 "area": np.full(k * n, 0.1), "relative_lift": rng.normal(0.1, 0.3, k * n)}
        for mc in ("none", "bonferroni"):
            results = evaluate(_per_class_policy(mc), table, data_summary={"n_records": k * n, "n_skipped": 0})
            warns = sum(r.outcome == "WARN" for r in results if r.check_id == "c")
            if mc == "none":
                unadjusted += warns
            else:
                adjusted += warns
                checked = [r for r in results if r.check_id == "c"]
                assert all(r.confidence == pytest.approx(1 - 0.05 / k) for r in checked)
                assert "99.94% bound" in checked[0].message
    assert unadjusted >= 3
    assert adjusted == 0


def test_a_class_that_is_truly_low_still_warns_among_many():
    rng = np.random.default_rng(0)
    k, n = 20, 30
    values = rng.normal(0.5, 0.2, k * n)
    values[:n] = rng.normal(-0.2, 0.2, n)  # class c00 reads the background
    table = {"class_name": np.repeat([f"c{i:02d}" for i in range(k)], n).astype(object),
             "area": np.full(k * n, 0.1), "relative_lift": values}
    results = evaluate(_per_class_policy("bonferroni"), table, data_summary={"n_records": k * n, "n_skipped": 0})
    assert [r.slice for r in results if r.outcome == "WARN"] == ["class=c00"]


def test_small_class_is_not_judged_and_says_so():
    table = {"class_name": np.array(["big"] * 40 + ["tiny"] * 12, dtype=object), "area": np.full(52, 0.1),
             "relative_lift": np.full(52, 0.6)}
    policy = _per_class_policy("bonferroni")
    results = evaluate(policy, table, data_summary={"n_records": 52, "n_skipped": 0,
                                                    "available_per_class": {"big": 400, "tiny": 12}})
    tiny = {r.check_id: r for r in results if r.slice == "class=tiny"}
    assert tiny["c"].outcome == "NOT_JUDGED" and tiny["data.min_per_class"].outcome == "NOT_JUDGED"
    assert "only 12 samples (min 30; 12 available in the data): not judged" in tiny["data.min_per_class"].message
    assert "low" not in tiny["c"].message
    assert gate_status(results) == "PASS"


# ---- skipped records: one population ----------------------------------------------------------------------

def test_skipped_fraction_counts_file_and_selection_over_the_same_population():
    # 1% of a 5,000-record file is missing; 200 sampled from the 4,950 readable, none of them unreadable.
    summary = {"n_read": 4950, "n_skipped_read": 50, "n_selected": 200, "n_skipped_selected": 0}
    fraction, skipped, records = skipped_fraction(summary, 200)
    assert fraction == pytest.approx(0.01) and (skipped, records) == (50, 5000)
    # the old denominator (sampled size + file skips) read 50 / 250 = 20%
    # both stages: 1% at read time, 2 of 200 selected fail to decode -> 1% + 99% x 1%
    both = {**summary, "n_skipped_selected": 2}
    assert skipped_fraction(both, 198)[0] == pytest.approx(0.01 + 0.99 * 0.01)
    table = {"class_name": np.array(["a"] * 200, dtype=object), "area": np.full(200, 0.1), "dead": np.zeros(200)}
    policy = load_policy({"name": "t", "version": 1, "sample": {"min_samples": 1, "min_per_class": 1},
                          "checks": [{"id": "any", "metric": "dead", "aggregate": "rate", "max": 1.0}]})
    result = next(r for r in evaluate(policy, table, data_summary=summary) if r.check_id == "data.skipped")
    assert result.outcome == "WARN"
    assert "50 of 5000 records skipped while reading, 0 of 200 selected not decodable" in result.message


# ---- area-robust object heat and corner lift ---------------------------------------------------------------

def _one_box_map(size: int, box, inside: float, outside: float) -> np.ndarray:
    heat = np.full((1, size, size), outside)
    x0, y0, x1, y1 = box
    heat[0, y0:y1, x0:x1] = inside
    return heat


@pytest.mark.parametrize(("inside", "outside", "expected"), [
    (1.0, 1.0, 0.0),  # uniform: lift 1
    (1.0, 0.0, 1.0),  # all heat on the object: lift = 1/A
    (0.0, 1.0, -1.0),  # none on it (floored)
])
def test_relative_lift_known_answers(inside, outside, expected):
    box = (0, 0, 32, 32)  # A = 1/4
    out = score_maps(_one_box_map(64, box, inside, outside), [np.array([box], float)])
    assert out["relative_lift"][0] == pytest.approx(expected)


def test_relative_lift_is_comparable_across_box_sizes():
    """Half of the way to the ceiling on a log scale: E = sqrt(A) gives 0.5 whatever A."""
    for side in (8, 16, 32, 44):  # A from 1.6% to 47%
        area = side * side / 64 / 64
        energy = math.sqrt(area)
        # inside density d_in, outside d_out with E = d_in * A / (d_in * A + d_out * (1 - A))
        d_out = 1.0
        d_in = energy * (1 - area) / (area * (1 - energy))
        out = score_maps(_one_box_map(64, (0, 0, side, side), d_in, d_out), [np.array([[0, 0, side, side]], float)])
        assert out["energy"][0] == pytest.approx(energy)
        assert out["relative_lift"][0] == pytest.approx(0.5)
        assert out["lift"][0] == pytest.approx(1 / math.sqrt(area))  # plain lift swings from 8 to 1.45


def test_corner_lift_is_one_for_a_uniform_map_and_the_inverse_area_share_for_a_mark():
    uniform = score_maps(np.ones((1, 64, 64)), [np.array([[20, 20, 40, 40]], float)])
    for c in ("tl", "tr", "bl", "br", "max"):
        assert uniform[f"corner_lift_{c}"][0] == pytest.approx(1.0)
    mark = np.zeros((1, 64, 64))
    mark[0, 60:, 0:4] = 1.0  # all heat inside the bottom-left 8x8 corner
    out = score_maps(mark, [np.array([[20, 20, 40, 40]], float)])
    assert out["corner_lift_bl"][0] == pytest.approx(64 * 64 / 64)  # share 1 over area share 64 / 4096
    assert out["corner_lift_max"][0] == out["corner_lift_bl"][0]
    assert out["corner_lift_tr"][0] == 0.0


def test_corner_lift_skips_a_corner_the_object_fills():
    out = score_maps(np.ones((1, 64, 64)), [np.array([[0, 0, 30, 30]], float)])
    assert math.isnan(out["corner_lift_tl"][0]) and out["corner_lift_max"][0] == pytest.approx(1.0)


def test_corner_sentence_names_one_corner_or_all_of_them():
    n = 40
    rows = np.ones(n, bool)
    fixed = {f"corner_lift_{c}": np.full(n, 0.5) for c in ("tl", "tr", "bl", "br")}
    fixed["corner_lift_br"] = np.full(n, 12.0)
    assert corner_sentence(fixed, rows).startswith("the evidence sits in the bottom-right corner")
    rng = np.random.default_rng(0)
    hot = rng.integers(0, 4, n)
    anywhere = {f"corner_lift_{c}": np.where(hot == i, 12.0, 0.5) for i, c in enumerate(("tl", "tr", "bl", "br"))}
    assert corner_sentence(anywhere, rows).startswith("the evidence sits in the corners, no single one")
