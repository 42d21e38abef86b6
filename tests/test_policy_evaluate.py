"""Policy evaluation on hand-built per-sample tables with known aggregates and intervals."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from validator.policy import evaluate, gate_status, load_policy, waiver_report
from validator.stats import aggregate

TODAY = date(2026, 6, 1)
CLEAN = {"n_records": 0, "n_skipped": 0}  # n_records 0 is replaced below by the table's row count


def make_table(classes, **columns):
    """Per-sample table; every box row gets area 0.1 unless given."""
    n = len(classes)
    table = {"sample_id": np.array([f"s{i}" for i in range(n)], dtype=object),
             "class_name": np.array(classes, dtype=object), "area": np.full(n, 0.1), "dead": np.zeros(n)}
    for name, values in columns.items():
        table[name] = np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()
    return table


def make_policy(*checks, sample=None, **top):
    # a policy needs one check; this one cannot fail (the dead-map rate is at most 1)
    checks = checks or ({"metric": "dead", "aggregate": "rate", "max": 1.0},)
    raw = {"name": "t", "version": 1, "sample": {"min_samples": 1, "min_per_class": 1, **(sample or {})},
           "checks": [{"id": f"c{i}", "min_samples": 1, **c} for i, c in enumerate(checks)], **top}
    return load_policy(raw)


def run(policy, table, **kwargs):
    summary = kwargs.pop("data_summary", {"n_records": len(table["class_name"]), "n_skipped": 0})
    results = evaluate(policy, table, data_summary=summary, today=kwargs.pop("today", TODAY), **kwargs)
    return [r for r in results if not r.check_id.startswith("data.")], results


def only(policy, table, **kwargs):
    checks, _ = run(policy, table, **kwargs)
    assert len(checks) == 1
    return checks[0]


# ---- operators on constant data (lo = hi = value) ------------------------------------------------------

@pytest.mark.parametrize(("limits", "value", "outcome"), [
    ({"min": 1.5}, 1.6, "PASS"), ({"min": 1.5}, 1.5, "PASS"), ({"min": 1.5}, 1.4, "FAIL"),
    ({"max": 2.0}, 1.9, "PASS"), ({"max": 2.0}, 2.0, "PASS"), ({"max": 2.0}, 2.1, "FAIL"),
    ({"min": 1.0, "max": 2.0}, 1.5, "PASS"), ({"min": 1.0, "max": 2.0}, 0.9, "FAIL"),
    ({"min": 1.0, "max": 2.0}, 2.1, "FAIL"),
])
def test_min_max_operators(limits, value, outcome):
    result = only(make_policy({"metric": "lift", **limits}), make_table(["a"] * 10, lift=value))
    assert result.outcome == outcome
    assert [result.observed, result.lo, result.hi, result.compared] == pytest.approx([value] * 4, abs=1e-12)
    assert result.n == 10
    assert (result.min, result.max) == (limits.get("min"), limits.get("max"))


def test_warn_severity_turns_a_broken_limit_into_warn():
    result = only(make_policy({"metric": "lift", "min": 2.0, "severity": "warn"}), make_table(["a"] * 5, lift=1.0))
    assert result.outcome == "WARN"


# ---- bounds: Wilson interval of 80 successes in 100 is [0.71118, 0.86664] (z = 1.95996) ----------------

CORRECT_80 = make_table(["a"] * 100, correct=[1.0] * 80 + [0.0] * 20)


@pytest.mark.parametrize(("bound", "limit", "compared", "outcome"), [
    ("point", {"min": 0.75}, 0.8, "PASS"),
    ("lower", {"min": 0.75}, 0.71118, "FAIL"),
    ("lower", {"min": 0.70}, 0.71118, "PASS"),
    ("point", {"max": 0.85}, 0.8, "PASS"),
    ("upper", {"max": 0.85}, 0.86664, "FAIL"),
    ("upper", {"max": 0.87}, 0.86664, "PASS"),
])
def test_bound_picks_the_end_of_the_interval(bound, limit, compared, outcome):
    policy = make_policy({"metric": "correct", "aggregate": "rate", "bound": bound, **limit})
    result = only(policy, CORRECT_80)
    assert result.compared == pytest.approx(compared, abs=1e-5)
    assert (result.lo, result.hi) == (pytest.approx(0.71118, abs=1e-5), pytest.approx(0.86664, abs=1e-5))
    assert result.outcome == outcome


def test_bootstrap_bounds_match_stats_aggregate():
    lift = np.linspace(0.5, 3.5, 40)
    expected = aggregate(lift, "mean", seed=7)
    assert expected.lo < expected.value < expected.hi
    for bound, compared in (("lower", expected.lo), ("upper", expected.hi), ("point", expected.value)):
        policy = make_policy({"metric": "lift", "bound": bound, "min": 0.0})
        result = only(policy, make_table(["a"] * 40, lift=lift), seed=7)
        assert result.compared == compared and result.observed == expected.value


def test_rate_with_threshold_counts_share_at_or_above():
    policy = make_policy({"metric": "lift", "aggregate": "rate", "threshold": 1.0, "min": 0.5})
    result = only(policy, make_table(["a"] * 4, lift=[0.5, 1.0, 2.0, 0.9]))
    assert result.observed == 0.5 and result.outcome == "PASS"
    assert "share of samples with lift >= 1" in result.message


# ---- rows: box filter, rows without class, NaN ----------------------------------------------------------

def test_box_metrics_drop_large_boxes_and_nan_but_other_metrics_keep_them():
    table = make_table(["a", "a", "a", None], lift=[2.0, 4.0, np.nan, 8.0], correct=[1.0, 0.0, 1.0, 1.0])
    table["area"] = np.array([0.2, 0.6, 0.2, 0.2])  # row 1 box too large; row 3 has no class
    policy = make_policy({"metric": "lift", "min": 0.0}, {"metric": "correct", "aggregate": "rate", "min": 0.0})
    lift, correct = run(policy, table)[0]
    assert (lift.n, lift.observed) == (1, 2.0)
    assert (correct.n, correct.observed) == (3, pytest.approx(2 / 3))


# ---- slices ----------------------------------------------------------------------------------------------

SLICED = make_table(["cat"] * 3 + ["dog"] * 3, lift=[2.0, 2.0, 2.0, 1.0, 1.0, 1.0])


def test_per_class_slices_in_class_order():
    checks, _ = run(make_policy({"metric": "lift", "min": 1.5, "slices": "per_class"}), SLICED)
    assert [(r.slice, r.observed, r.outcome) for r in checks] == [
        ("class=cat", 2.0, "PASS"), ("class=dog", 1.0, "FAIL")]
    overall = only(make_policy({"metric": "lift", "min": 1.5}), SLICED)
    assert (overall.slice, overall.observed, overall.n, overall.outcome) == ("overall", 1.5, 6, "PASS")


def test_per_class_follows_policy_classes_and_a_missing_class_is_not_judged():
    policy = make_policy({"metric": "lift", "min": 0.5, "slices": "per_class"}, classes=["dog", "cat", "fox"])
    checks, results = run(policy, SLICED)
    assert [(r.slice, r.outcome, r.n) for r in checks] == [
        ("class=dog", "PASS", 3), ("class=cat", "PASS", 3), ("class=fox", "NOT_JUDGED", 0)]
    assert "no samples with a defined lift in class=fox" in checks[2].message
    assert "not judged" in checks[2].message and "low" not in checks[2].message
    per_class = [(r.slice, r.outcome) for r in results if r.check_id == "data.min_per_class"]
    assert per_class == [("class=dog", "PASS"), ("class=cat", "PASS"), ("class=fox", "NOT_JUDGED")]
    assert gate_status(results) == "PASS"  # a class too small to judge neither passes nor fails the gate


def test_a_missing_class_fails_where_the_policy_asks():
    policy = make_policy({"metric": "lift", "min": 0.5, "slices": "per_class"}, classes=["dog", "cat", "fox"],
                         sample={"on_small_class": "fail"})
    checks, results = run(policy, SLICED)
    assert [(r.slice, r.outcome) for r in checks][2] == ("class=fox", "FAIL")
    per_class = [(r.slice, r.outcome) for r in results if r.check_id == "data.min_per_class"]
    assert per_class[2] == ("class=fox", "FAIL")
    assert gate_status(results) == "FAIL"
    # a warn check never fails the gate because a class is small: it warns at most
    warn = make_policy({"metric": "lift", "min": 0.5, "slices": "per_class", "severity": "warn"},
                       classes=["dog", "cat", "fox"], sample={"on_small_class": "fail"})
    assert [r.outcome for r in run(warn, SLICED)[0]][2] == "WARN"


def test_slice_list_and_on_missing_warn():
    policy = make_policy({"metric": "lift", "min": 0.5, "slices": ["dog", "fox"], "on_missing": "warn"})
    checks, _ = run(policy, SLICED)
    assert [(r.slice, r.outcome) for r in checks] == [("class=dog", "PASS"), ("class=fox", "WARN")]


def test_min_samples_shortfall_fails_or_warns():
    table = make_table(["a"] * 5, lift=3.0)
    result = only(make_policy({"metric": "lift", "min": 1.5, "min_samples": 6}), table)
    assert result.outcome == "FAIL" and result.observed == 3.0
    assert "only 5 samples with a defined lift in overall (min_samples 6)" in result.message
    warn = make_policy({"metric": "lift", "min": 1.5, "min_samples": 6, "on_missing": "warn"})
    assert only(warn, table).outcome == "WARN"
    assert only(make_policy({"metric": "lift", "min": 1.5, "min_samples": 5}), table).outcome == "PASS"


def test_uncomputable_bound_is_treated_as_missing():
    result = only(make_policy({"metric": "lift", "min": 1.0, "bound": "lower"}), make_table(["a"], lift=2.0))
    assert math.isnan(result.compared) and result.outcome == "FAIL" and "could not be computed" in result.message


# ---- messages ----------------------------------------------------------------------------------------------

def test_message_names_reason_value_interval_threshold_n_and_slice():
    policy = make_policy({"metric": "correct", "aggregate": "rate", "bound": "lower", "min": 0.75,
                          "description": "Accuracy is too low"})
    message = only(policy, CORRECT_80).message
    assert message == ("Accuracy is too low: lower 95% bound of rate of correct = 0.7112 < min 0.75 "
                       "(rate 0.8, 95% CI [0.7112, 0.8666], n=100, overall)")


def test_to_dict_is_json_ready():
    result = only(make_policy({"metric": "lift", "min": 1.0}), make_table(["a"], lift=2.0))
    data = result.to_dict()
    assert data["lo"] is None and data["hi"] is None and data["observed"] == 2.0 and data["check_id"] == "c0"


# ---- change against a baseline -------------------------------------------------------------------------

@pytest.mark.parametrize(("metric", "change", "baseline", "new", "outcome"), [
    # higher is better (lift)
    ("lift", {"absolute": -0.05}, 2.0, 1.96, "PASS"),
    ("lift", {"absolute": -0.05}, 2.0, 1.90, "FAIL"),
    ("lift", {"absolute": 0.1}, 2.0, 2.05, "FAIL"),    # positive tolerance: must improve by 0.1
    ("lift", {"absolute": 0.1}, 2.0, 2.20, "PASS"),
    ("lift", {"relative": -0.1}, 2.0, 1.85, "PASS"),   # limit 1.8
    ("lift", {"relative": -0.1}, 2.0, 1.75, "FAIL"),
    ("lift", {"relative": 0.1}, 2.0, 2.10, "FAIL"),    # limit 2.2
    ("lift", {"relative": 0.1}, 2.0, 2.30, "PASS"),
    # lower is better (corner heat)
    ("corner_heat_max", {"absolute": 0.02}, 0.10, 0.115, "PASS"),   # may rise by 0.02
    ("corner_heat_max", {"absolute": 0.02}, 0.10, 0.13, "FAIL"),
    ("corner_heat_max", {"absolute": -0.02}, 0.10, 0.07, "PASS"),   # must drop by 0.02
    ("corner_heat_max", {"absolute": -0.02}, 0.10, 0.09, "FAIL"),
    ("corner_heat_max", {"relative": 0.5}, 0.10, 0.14, "PASS"),     # limit 0.15
    ("corner_heat_max", {"relative": 0.5}, 0.10, 0.16, "FAIL"),
    ("corner_heat_max", {"relative": -0.5}, 0.10, 0.04, "PASS"),    # limit 0.05
    ("corner_heat_max", {"relative": -0.5}, 0.10, 0.06, "FAIL"),
])
def test_change_sign_convention(metric, change, baseline, new, outcome):
    policy = make_policy({"metric": metric, "change": change})
    result = only(policy, make_table(["a"] * 5, **{metric: new}),
                  baseline_table=make_table(["a"] * 5, **{metric: baseline}))
    assert result.outcome == outcome
    assert result.baseline == baseline and result.change == change


@pytest.mark.parametrize("bound", ["point", "lower", "upper"])
@pytest.mark.parametrize("metric,aggregate", [("correct", "rate"), ("lift", "mean"), ("lift", "median"),
                                              ("lift", "p10"), ("corner_heat_max", "mean")])
def test_a_model_compared_with_itself_never_regresses(bound, metric, aggregate):
    # The old rule compared the new model's interval bound with the baseline's point value: a model
    # compared with itself FAILed at bound lower whenever its interval was wider than the tolerance.
    rng = np.random.default_rng(4)
    values = (rng.random(40) < 0.8).astype(float) if metric == "correct" else rng.gamma(2.0, 1.0, 40)
    table = make_table(["a"] * 40, **{metric: values})
    tolerance = 0.0  # not even the smallest regression is allowed
    result = only(make_policy({"metric": metric, "aggregate": aggregate, "bound": bound,
                               "change": {"absolute": tolerance}}), table, baseline_table=table)
    assert result.outcome == "PASS", result.message
    change = result.change_estimate
    assert change["value"] == 0.0 and change["lo"] == 0.0 and change["hi"] == 0.0 and change["n"] == 40


def test_change_is_judged_on_the_paired_difference():
    # Large spread between samples, a small shift that every sample shares: the paired difference knows the
    # shift exactly, an unpaired comparison of two intervals could not tell it from noise.
    rng = np.random.default_rng(1)
    base = rng.uniform(0.5, 5.0, 60)
    new = base - 0.03 + rng.normal(0, 0.002, 60)
    oracle = float(np.mean(new - base))
    policy = make_policy({"metric": "lift", "bound": "lower", "change": {"absolute": -0.05}})
    ok = only(policy, make_table(["a"] * 60, lift=new), baseline_table=make_table(["a"] * 60, lift=base))
    assert ok.outcome == "PASS", ok.message
    change = ok.change_estimate
    assert change["value"] == pytest.approx(oracle, abs=1e-12)
    assert change["lo"] <= oracle <= change["hi"] and change["hi"] - change["lo"] < 0.005
    assert ok.baseline == pytest.approx(float(np.mean(base)))
    strict = make_policy({"metric": "lift", "bound": "lower", "change": {"absolute": -0.02}})
    bad = only(strict, make_table(["a"] * 60, lift=new), baseline_table=make_table(["a"] * 60, lift=base))
    assert bad.outcome == "FAIL" and "change new - baseline" in bad.message and "paired on 60 samples" in bad.message


def test_change_pairs_samples_by_id_not_by_position():
    base = make_table(["a"] * 30, lift=np.linspace(1, 4, 30))
    new = {k: v[::-1].copy() for k, v in base.items()}  # the same samples, listed in the other order
    result = only(make_policy({"metric": "lift", "bound": "lower", "change": {"absolute": 0.0}}), new,
                  baseline_table=base)
    assert result.outcome == "PASS" and result.change_estimate["hi"] == 0.0


def test_relative_change_scales_with_the_baseline():
    base = make_table(["a"] * 20, lift=np.full(20, 2.0))
    new = make_table(["a"] * 20, lift=np.full(20, 1.85))  # -7.5%
    loose = make_policy({"metric": "lift", "change": {"relative": -0.1}})
    tight = make_policy({"metric": "lift", "change": {"relative": -0.05}})
    assert only(loose, new, baseline_table=base).outcome == "PASS"
    assert only(tight, new, baseline_table=base).outcome == "FAIL"


def test_no_baseline_skips_or_fails():
    table = make_table(["a"] * 5, lift=2.0)
    skipped = only(make_policy({"metric": "lift", "change": {"absolute": -0.05}}), table)
    assert skipped.outcome == "SKIPPED" and "no baseline model" in skipped.message and skipped.baseline is None
    failing = make_policy({"metric": "lift", "change": {"absolute": -0.05}}, on_missing_baseline="fail")
    assert only(failing, table).outcome == "FAIL"
    with_min = only(make_policy({"metric": "lift", "min": 1.5, "change": {"absolute": -0.05}}), table)
    assert with_min.outcome == "PASS" and "change vs baseline skipped" in with_min.message


def test_baseline_without_data_for_the_slice_is_missing_too():
    policy = make_policy({"metric": "lift", "change": {"absolute": -0.05}, "slices": ["dog"]})
    result = only(policy, SLICED, baseline_table=make_table(["cat"] * 3, lift=2.0))
    assert result.outcome == "SKIPPED" and "baseline has no data" in result.message


# ---- waivers -----------------------------------------------------------------------------------------------

def waived_policy(expires, slice_=None):
    waiver = {"check": "c0", "reason": "ticket ML-123", "expires": expires}
    if slice_:
        waiver["slice"] = slice_
    return make_policy({"metric": "lift", "min": 1.5, "slices": "per_class"}, waivers=[waiver])


def test_active_waiver_turns_fail_into_warn_and_is_attached():
    checks, results = run(waived_policy(date(2026, 6, 1)), SLICED)  # expires today: still active
    dog = checks[1]
    assert dog.outcome == "WARN"
    assert dog.waiver == {"check": "c0", "slice": None, "reason": "ticket ML-123", "expires": "2026-06-01"}
    assert "ticket ML-123" in dog.message
    assert checks[0].waiver is None and checks[0].outcome == "PASS"
    assert gate_status(results) == "WARN"


def test_expired_waiver_does_nothing():
    policy = waived_policy(date(2026, 5, 31))
    checks, results = run(policy, SLICED)
    assert checks[1].outcome == "FAIL" and checks[1].waiver is None
    assert gate_status(results) == "FAIL"
    assert waiver_report(policy, TODAY)[0]["state"] == "expired"


def test_waiver_for_one_slice_and_waiver_report():
    policy = waived_policy(date(2027, 1, 1), "class=cat")
    checks, results = run(policy, SLICED)
    assert checks[1].outcome == "FAIL"  # the waiver names cat, dog fails
    assert waiver_report(policy, TODAY)[0]["state"] == "active"
    assert waiver_report(policy, TODAY, results)[0]["state"] == "unused"
    dog_policy = waived_policy(date(2027, 1, 1), "class=dog")
    _, dog_results = run(dog_policy, SLICED)
    assert waiver_report(dog_policy, TODAY, dog_results)[0] == {
        "check": "c0", "slice": "class=dog", "reason": "ticket ML-123", "expires": "2027-01-01",
        "state": "active"}


# ---- built-in data checks ------------------------------------------------------------------------------

def data_results(policy, table, summary):
    _, results = run(policy, table, data_summary=summary)
    return {(r.check_id, r.slice): r for r in results if r.check_id.startswith("data.")}


def test_data_sample_counts():
    policy = make_policy(sample={"min_samples": 6, "min_per_class": 3}, classes=["cat", "dog", "fox"])
    table = make_table(["cat"] * 3 + ["dog"] * 2 + [None], lift=2.0)
    data = data_results(policy, table, {"n_records": 6, "n_skipped": 0})
    assert (data["data.min_samples", "overall"].outcome, data["data.min_samples", "overall"].n) == ("FAIL", 5)
    assert data["data.min_per_class", "class=cat"].outcome == "PASS"
    assert data["data.min_per_class", "class=dog"].outcome == "NOT_JUDGED"
    assert "only 2 samples (min 3): not judged" in data["data.min_per_class", "class=dog"].message
    assert data["data.min_per_class", "class=fox"].n == 0
    assert "5 samples < min 6" in data["data.min_samples", "overall"].message
    ok = data_results(make_policy(sample={"min_samples": 5}), table, {"n_records": 6, "n_skipped": 0})
    assert ok["data.min_samples", "overall"].outcome == "PASS"


@pytest.mark.parametrize(("skipped", "records", "outcome"), [
    (0, 100, "PASS"), (1, 100, "WARN"), (5, 100, "WARN"), (6, 100, "FAIL"), (0, 0, "FAIL")])
def test_data_skipped(skipped, records, outcome):
    result = data_results(make_policy(), make_table(["a"], lift=2.0),
                          {"n_records": records, "n_skipped": skipped})["data.skipped", "overall"]
    assert result.outcome == outcome and result.max == 0.05
    if records:
        assert result.observed == skipped / records


def test_a_gate_that_compared_nothing_is_inconclusive_not_pass():
    assert gate_status([]) == "INCONCLUSIVE"
    # only a change check, and no baseline under on_missing_baseline: skip -> nothing was compared
    _, results = run(make_policy({"metric": "lift", "change": {"absolute": 0.0}}), make_table(["a"], lift=2.0))
    assert [r.outcome for r in results] == ["PASS", "PASS", "PASS", "SKIPPED"]
    assert gate_status(results) == "INCONCLUSIVE"
    # one compared check is enough for a verdict
    _, results = run(make_policy({"metric": "lift", "change": {"absolute": 0.0}}, {"metric": "lift", "min": 1.0}),
                     make_table(["a"], lift=2.0))
    assert gate_status(results) == "PASS"
    # a failure still fails, judged or not
    _, results = run(make_policy({"metric": "lift", "change": {"absolute": 0.0}}, sample={"min_samples": 5}),
                     make_table(["a"], lift=2.0))
    assert gate_status(results) == "FAIL"


def test_a_policy_without_checks_is_refused():
    from validator.errors import PolicyError

    with pytest.raises(PolicyError, match="no checks, so it would pass any model"):
        load_policy({"name": "t", "version": 1, "checks": []})


@pytest.mark.parametrize(("severity", "on_small_class", "outcome"), [
    ("fail", "fail", "FAIL"), ("warn", "fail", "WARN"), ("inconclusive", "fail", "INCONCLUSIVE"),
    ("fail", "warn", "WARN"), ("warn", "warn", "WARN"), ("inconclusive", "warn", "WARN"),
    ("inconclusive", "not_judged", "NOT_JUDGED"),
])
def test_a_small_class_is_never_judged_more_severely_than_its_check(severity, on_small_class, outcome):
    policy = make_policy({"metric": "lift", "min": 0.5, "slices": "per_class", "severity": severity},
                         classes=["dog", "cat", "fox"], sample={"on_small_class": on_small_class})
    assert policy.checks[0].on_missing == outcome.lower()
    fox = [r for r in run(policy, SLICED)[0] if r.slice == "class=fox"]
    assert [(r.outcome, r.severity) for r in fox] == [(outcome, severity)]


def test_a_pass_on_the_lenient_end_with_the_estimate_beyond_the_threshold_says_not_shown():
    """bound: upper against a min passes unless the class is shown to be low; a pass whose point estimate is
    below the min says so, rather than reading as a clean pass (issue 23)."""
    table = make_table(["a"] * 20, lift=[0.0, 0.3] * 10)  # mean 0.15, interval reaching above 0.2
    low = only(make_policy({"metric": "lift", "bound": "upper", "min": 0.2}), table)
    assert low.outcome == "PASS" and low.observed < 0.2 <= low.compared
    assert "; not shown to be low (the interval reaches the threshold): mean 0.15 < min 0.2" in low.message
    high = only(make_policy({"metric": "lift", "bound": "lower", "max": 0.1}), table)
    assert high.outcome == "PASS" and "not shown to be high (the interval reaches the threshold)" in high.message
    clean = only(make_policy({"metric": "lift", "bound": "upper", "min": 0.1}), table)
    assert clean.outcome == "PASS" and "not shown" not in clean.message
    point = only(make_policy({"metric": "lift", "bound": "point", "min": 0.1}), table)
    assert "not shown" not in point.message


# ---- limits for masks (with_masks) -------------------------------------------------------------------

@pytest.mark.parametrize(("regions", "outcome", "limit"), [
    (["mask"] * 10, "PASS", 1.0),  # every region a mask: the mask limit (1.0) judges 1.2
    (["mask"] * 8 + ["none"] * 2, "PASS", 1.0),  # samples without an object region do not count
    (["mask"] * 9 + ["box"], "FAIL", 1.5),  # one box: the set keeps the check's own limit
    (["mask"] * 9 + ["mask+box"], "FAIL", 1.5),  # a sample mixing both is not a mask region
    (["box"] * 10, "FAIL", 1.5),
])
def test_with_masks_limits_apply_only_where_every_object_region_is_a_mask(regions, outcome, limit):
    policy = make_policy({"metric": "lift", "min": 1.5, "with_masks": {"min": 1.0}})
    table = make_table(["a"] * 10, lift=1.2)
    table["region"] = np.array(regions, dtype=object)
    result = only(policy, table)
    assert (result.outcome, result.min) == (outcome, limit)
    assert ("limits for masks" in result.message) == (limit == 1.0)


def test_with_masks_replaces_only_the_limit_it_names():
    policy = make_policy({"metric": "lift", "min": 1.0, "max": 2.0, "with_masks": {"max": 1.5}})
    table = make_table(["a"] * 10, lift=1.8)
    table["region"] = np.array(["mask"] * 10, dtype=object)
    result = only(policy, table)
    assert (result.outcome, result.min, result.max) == ("FAIL", 1.0, 1.5)
    del table["region"]  # a table without the column (an older shard): box limits
    assert only(policy, table).outcome == "PASS"


def test_a_policy_without_with_masks_keeps_its_hash_shape():
    policy = make_policy({"metric": "lift", "min": 1.5})
    assert "with_masks" not in policy.to_dict()["checks"][0]
    masked = make_policy({"metric": "lift", "min": 1.5, "with_masks": {"min": 1.0}})
    assert masked.to_dict()["checks"][0]["with_masks"] == {"min": 1.0}
    assert masked.content_hash != policy.content_hash
