"""Aggregation and intervals: hand-computed values, numpy oracles and coverage by simulation."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from validator.stats import (
    AGGREGATES,
    Estimate,
    aggregate,
    bootstrap_estimates,
    concat_tables,
    post_stratified_weights,
    summarize,
    wilson_interval,
)

# ---------------------------------------------------------------- Wilson


def test_wilson_known_values():
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson_interval(50, 100)
    assert (round(lo, 4), round(hi, 4)) == (0.4038, 0.5962)
    # the edges are exact: 0 successes -> lo 0, all successes -> hi 1
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    # wider at higher confidence
    assert wilson_interval(8, 10, 0.99)[0] < 0.4902


def test_wilson_edge_cases():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=95)


def test_wilson_coverage_bernoulli():
    n, p = 50, 0.8
    covers = np.array([wilson_interval(k, n)[0] <= p <= wilson_interval(k, n)[1] for k in range(n + 1)])
    exact = float((sps.binom.pmf(np.arange(n + 1), n, p) * covers).sum())
    assert 0.93 <= exact <= 0.97  # 0.951
    simulated = covers[np.random.default_rng(7).binomial(n, p, size=2000)].mean()
    assert 0.93 <= simulated <= 0.975
    assert abs(simulated - exact) < 0.015  # ~3 standard errors of 2000 draws


# ---------------------------------------------------------------- bootstrap aggregates


def test_bootstrap_mean_ci_coverage_on_skewed_data():
    covered = 0
    for trial in range(300):
        x = np.random.default_rng(1000 + trial).exponential(scale=1.0, size=100)
        est = aggregate(x, "mean", n_resamples=1000, seed=trial)
        covered += est.lo <= 1.0 <= est.hi
    assert 0.92 <= covered / 300 <= 0.98  # nominal 0.95; observed 0.957


def test_point_estimates_match_numpy():
    for size in (57, 200):  # odd and even n: the median interpolates for even n
        x = np.random.default_rng(size).normal(size=size)
        assert aggregate(x, "mean").value == pytest.approx(np.mean(x), abs=1e-12)
        assert aggregate(x, "median").value == pytest.approx(np.median(x), abs=1e-12)
        assert aggregate(x, "p10").value == pytest.approx(np.percentile(x, 10), abs=1e-12)
        assert aggregate(x, "p90").value == pytest.approx(np.percentile(x, 90), abs=1e-12)


def test_mean_ci_close_to_normal_theory():
    x = np.random.default_rng(3).normal(5.0, 2.0, size=400)
    est = aggregate(x, "mean")
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert est.lo < est.value < est.hi
    assert est.hi - est.lo == pytest.approx(2 * half, rel=0.1)
    assert (est.lo + est.hi) / 2 == pytest.approx(np.mean(x), abs=0.1 * half)
    narrow = aggregate(x, "mean", confidence=0.5)
    assert est.lo < narrow.lo < narrow.hi < est.hi


def test_seeded_and_reproducible():
    x = np.random.default_rng(0).exponential(size=60)
    assert aggregate(x, "median", seed=4) == aggregate(x, "median", seed=4)
    assert aggregate(x, "median", seed=4).lo != aggregate(x, "median", seed=5).lo


def test_nan_and_inf_dropped():
    est = aggregate([1.0, np.nan, 3.0, np.inf, -np.inf], "mean")
    assert est.value == 2.0 and est.n == 2
    est = aggregate([1.0, np.nan, 0.0, 1.0], "rate")
    assert est.value == pytest.approx(2 / 3) and est.n == 3
    assert (est.lo, est.hi) == wilson_interval(2, 3)


def test_small_and_degenerate_samples_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = aggregate([np.nan], "mean")
        assert empty.n == 0 and all(math.isnan(v) for v in (empty.value, empty.lo, empty.hi))
        single = aggregate([0.7], "median")
        assert single.value == 0.7 and single.n == 1 and math.isnan(single.lo) and math.isnan(single.hi)
        assert math.isnan(aggregate([1.0], "rate").lo)
        for how in ("mean", "median", "p10", "p90"):
            const = aggregate([2.5] * 30, how)
            assert (const.value, const.lo, const.hi, const.n) == (2.5, 2.5, 2.5, 30)
        pair = aggregate([1.0, 2.0], "mean")
        assert pair.lo <= 1.5 <= pair.hi
        # p10 of mostly-zero data: every resample has p10 = 0 (BCa undefined -> percentile interval)
        mostly_zero = aggregate([0.0] * 45 + [1.0] * 5, "p10")
        assert (mostly_zero.value, mostly_zero.lo, mostly_zero.hi) == (0.0, 0.0, 0.0)


def test_rate_boolean_and_thresholded():
    flags = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=float)
    est = aggregate(flags, "rate")
    assert est.value == 0.8 and (round(est.lo, 4), round(est.hi, 4)) == (0.4902, 0.9433)
    lift = np.array([0.5, 1.0, 1.7, 2.0, 0.99])
    est = aggregate(lift, "rate", threshold=1.0)  # share >= 1: three of five
    assert est.value == pytest.approx(0.6) and (est.lo, est.hi) == wilson_interval(3, 5)
    with pytest.raises(ValueError, match="threshold"):
        aggregate(lift, "rate")


def test_unknown_aggregate_lists_valid_names():
    with pytest.raises(ValueError, match="mean, median, p10, p90, rate"):
        aggregate([1.0, 2.0], "average")
    assert AGGREGATES == ("mean", "median", "p10", "p90", "rate")


def test_estimate_to_dict_is_strict_json():
    d = Estimate("mean", 1.5, float("nan"), float("nan"), 1).to_dict()
    assert d == {"aggregate": "mean", "value": 1.5, "lo": None, "hi": None, "n": 1}
    json.dumps(d, allow_nan=False)


# ---------------------------------------------------------------- summarize and tables


def make_table(rows=200):
    rng = np.random.default_rng(11)
    lift = rng.gamma(2.0, 1.0, size=rows)
    lift[::17] = np.nan  # dead maps
    return {
        "lift": lift,
        "pointing_hit": (rng.random(rows) < 0.7).astype(float),
        "my_flag": (rng.random(rows) < 0.4).astype(float),  # unregistered 0/1 column
        "label": np.array(["tank", "car"] * (rows // 2)),
    }


def test_summarize_structure_and_values():
    table = make_table()
    slices = {"overall": np.ones(200, bool), "class=tank": table["label"] == "tank",
              "class=none": np.zeros(200, bool)}
    out = summarize(table, metrics=["lift", "pointing_hit", "my_flag"], slices=slices, n_resamples=500)
    json.dumps(out, allow_nan=False)
    assert list(out) == list(slices)
    assert set(out["overall"]["lift"]) == {"mean", "median", "p10", "p90"}
    assert set(out["overall"]["pointing_hit"]) == {"mean", "median", "p10", "p90", "rate"}
    assert set(out["overall"]["my_flag"]) == {"mean", "median", "p10", "p90", "rate"}
    for slice_name in ("overall", "class=tank"):
        mask = slices[slice_name]
        lift = table["lift"][mask]
        got = out[slice_name]["lift"]
        assert got["mean"]["n"] == np.isfinite(lift).sum()
        assert got["mean"]["value"] == pytest.approx(np.nanmean(lift), abs=1e-12)
        assert got["median"]["value"] == pytest.approx(np.nanmedian(lift), abs=1e-12)
        assert got["p10"]["value"] == pytest.approx(np.nanpercentile(lift, 10), abs=1e-12)
        assert got["p90"]["value"] == pytest.approx(np.nanpercentile(lift, 90), abs=1e-12)
        # same seed, same resamples: identical to a separate aggregate call
        assert got["median"] == aggregate(lift, "median", n_resamples=500).to_dict()
        hits = table["pointing_hit"][mask]
        rate = out[slice_name]["pointing_hit"]["rate"]
        assert rate["value"] == pytest.approx(hits.mean())
        assert (rate["lo"], rate["hi"]) == pytest.approx(wilson_interval(int(hits.sum()), len(hits)))
    empty = out["class=none"]["lift"]["mean"]
    assert empty == {"aggregate": "mean", "value": None, "lo": None, "hi": None, "n": 0}


def test_summarize_rejects_bad_input():
    table = make_table()
    with pytest.raises(ValueError, match="not in the table"):
        summarize(table, metrics=["energy"], slices={"overall": np.ones(200, bool)})
    with pytest.raises(ValueError, match="boolean mask of 200 rows"):
        summarize(table, metrics=["lift"], slices={"overall": np.ones(10, bool)})
    with pytest.raises(ValueError, match="differ in length"):
        summarize({"lift": np.ones(3), "energy": np.ones(4)}, metrics=["lift"], slices={})


def test_concat_tables():
    a = {"lift": np.array([1.0, 2.0]), "label": np.array(["a", "b"])}
    b = {"label": np.array(["c"]), "lift": np.array([np.nan])}
    merged = concat_tables(a, b)
    assert list(merged) == ["lift", "label"]
    np.testing.assert_array_equal(merged["lift"], [1.0, 2.0, np.nan])
    np.testing.assert_array_equal(merged["label"], ["a", "b", "c"])
    assert concat_tables() == {}
    with pytest.raises(ValueError, match="missing \\['label'\\]"):
        concat_tables(a, {"lift": np.ones(1)})


@pytest.mark.parametrize("n", [2, 3, 10, 501, 1999, 2000, 2001, 6007])
@pytest.mark.parametrize("kind", ["normal", "ties", "binary"])
def test_quantiles_from_partition_equal_a_sort_bit_for_bit(n, kind):
    """Long rows take their order statistics from np.partition; the oracle sorts and interpolates."""
    from validator.stats import _QUANTILES, BOOTSTRAPPED, _statistics

    rng = np.random.default_rng(n)
    if kind == "normal":
        x = rng.normal(size=(7, n))
    else:
        x = rng.integers(0, 4 if kind == "ties" else 2, size=(7, n)).astype(float)
    ordered = np.sort(x, axis=-1)
    expected = []
    for how in BOOTSTRAPPED:
        if how == "mean":
            expected.append(x.mean(axis=-1))
            continue
        pos = _QUANTILES[how] * (n - 1)
        lo = int(np.floor(pos))
        hi = min(lo + 1, n - 1)
        expected.append(ordered[:, lo] + (pos - lo) * (ordered[:, hi] - ordered[:, lo]))
    assert np.array_equal(_statistics(x, BOOTSTRAPPED), np.stack(expected))
    assert np.allclose(_statistics(x, ("median", "p10")), np.quantile(x, [0.5, 0.1], axis=-1), rtol=0, atol=1e-12)


# ---- weighted estimates (post-stratification of the stratified sample) ----------------------------------

def test_equal_weights_are_bit_identical_to_no_weights():
    x = np.random.default_rng(3).normal(size=120)
    assert bootstrap_estimates(x, weights=np.full(120, 2.5)) == bootstrap_estimates(x)
    hits = (x > 0).astype(float)
    assert aggregate(hits, "rate", weights=np.full(120, 0.3)) == aggregate(hits, "rate")


def test_weighted_point_estimates_by_hand():
    assert aggregate([1.0, 2.0, 3.0], "mean", weights=[1, 1, 2]).value == pytest.approx(9 / 4)
    # a heavy top value pulls the median up to it (midpoint positions 0.25/4, 1.25/4, 2.5/4... here 1/102 etc.)
    assert aggregate([1.0, 2.0, 3.0], "median", weights=[1, 1, 100]).value == pytest.approx(2.980198, abs=1e-6)
    rate = aggregate([1.0, 0.0, 0.0, 0.0], "rate", weights=[3, 1, 1, 1])
    assert rate.value == pytest.approx(0.5)
    # Kish: n_eff = 6^2 / 12 = 3, so the interval is Wilson's at p = 0.5 with n = 3
    z = sps.norm.ppf(0.975)
    half = z * math.sqrt(0.25 / 3 + z * z / 36) / (1 + z * z / 3)
    assert (rate.lo, rate.hi) == pytest.approx((0.5 - half, 0.5 + half))
    with pytest.raises(ValueError, match="positive"):
        aggregate([1.0, 2.0], "mean", weights=[1.0, 0.0])


def _population(seed=0):
    """1,000 records: 900 of 'common' with mean 1.0, 100 of 'rare' with mean 3.0 (sd 0.5 both)."""
    from validator.data import Sample

    rng = np.random.default_rng(seed)
    names = ["common"] * 900 + ["rare"] * 100
    values = np.where(np.array(names) == "common", 1.0, 3.0) + rng.normal(0, 0.5, 1000)
    samples = [Sample(f"s{i:04d}", f"/x/{i}.png", int(n == "rare"), n, ((0, 0, 1, 1),), (str(i),))
               for i, n in enumerate(names)]
    return samples, dict(zip((s.sample_id for s in samples), values, strict=True))


def _overall_lift(samples, value_of, min_per_class):
    from validator.data import select_samples
    from validator.policy import evaluate, load_policy

    chosen = select_samples(samples, 100, seed=0, min_per_class=min_per_class)
    table = {"class_name": np.array([s.class_name for s in chosen], dtype=object),
             "area": np.full(len(chosen), 0.1), "dead": np.zeros(len(chosen)),
             "lift": np.array([value_of[s.sample_id] for s in chosen])}
    policy = load_policy({"name": "t", "version": 1, "sample": {"min_samples": 1, "min_per_class": 1},
                          "checks": [{"id": "heat", "metric": "lift", "min": 0.0}]})
    summary = {"n_records": len(chosen), "n_skipped": 0, "available_per_class": {"common": 900, "rare": 100}}
    (result,) = [r for r in evaluate(policy, table, data_summary=summary) if r.check_id == "heat"]
    return result, table


def test_the_overall_slice_is_weighted_to_the_data_not_to_min_per_class():
    samples, value_of = _population()
    result, table = _overall_lift(samples, value_of, min_per_class=55)
    rare = table["class_name"] == "rare"
    assert rare.mean() == pytest.approx(0.38, abs=0.01)  # the sample over-represents the rare class
    by_hand = 0.9 * table["lift"][~rare].mean() + 0.1 * table["lift"][rare].mean()
    assert result.observed == pytest.approx(by_hand, rel=1e-12)
    assert result.lo < by_hand < result.hi
    assert table["lift"].mean() > by_hand + 0.5  # what the unweighted mean said
    # topping the rare class up to 10 or to 55 samples moves the estimate by noise only
    few, _ = _overall_lift(samples, value_of, min_per_class=10)
    assert abs(few.observed - result.observed) < min(result.hi - result.lo, few.hi - few.lo) / 2
    population = np.array(list(value_of.values()))
    assert few.lo < population.mean() < few.hi and result.lo < population.mean() < result.hi


def test_post_stratified_weights():
    labels = np.array(["a"] * 60 + ["b"] * 40 + [None] * 3, dtype=object)
    w = post_stratified_weights(labels, {"a": 900, "b": 100})
    assert w[:60] == pytest.approx(0.9 / 0.6) and w[60:100] == pytest.approx(0.1 / 0.4)
    assert np.isnan(w[100:]).all()  # unlabelled rows are in no pooled slice
    assert post_stratified_weights(labels, None) is None
    assert post_stratified_weights(labels, {"a": 900}) is None  # no count for b: nothing to weight by


def test_summarize_weights_a_slice_like_aggregate():
    x = np.random.default_rng(5).normal(size=50)
    w = np.where(np.arange(50) < 10, 4.0, 0.5)
    table = {"lift": x, "correct": (x > 0).astype(float)}
    out = summarize(table, metrics=["lift", "correct"], slices={"overall": np.ones(50, bool)}, weights={"overall": w})
    mean = aggregate(x, "mean", weights=w)
    assert (out["overall"]["lift"]["mean"]["value"], out["overall"]["lift"]["mean"]["lo"]) == (mean.value, mean.lo)
    assert out["overall"]["correct"]["rate"]["value"] == aggregate(table["correct"], "rate", weights=w).value
