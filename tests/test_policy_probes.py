"""Policy semantics of the checks that do not trust one heatmap: the sanity check's INCONCLUSIVE, box-free data,
and the probes section."""

from __future__ import annotations

import numpy as np
import pytest
from test_policy_evaluate import TODAY, make_policy, make_table

from validator.errors import PolicyError
from validator.policy import evaluate, gate_status, load_policy

SANITY = {"id": "sanity", "metric": "sanity_spearman", "aggregate": "mean", "max": 0.5,
          "severity": "inconclusive", "min_samples": 5, "on_missing": "not_judged"}
HEAT = {"id": "heat", "metric": "relative_lift", "min": 0.15}
CORNER = {"id": "corner", "metric": "corner_lift_max", "max": 5.0}
PROBE = {"id": "bg", "metric": "bg_only_skill", "max": 0.5}


def judge(policy, table, **summary):
    results = evaluate(policy, table, data_summary={"n_records": len(table["class_name"]), "n_skipped": 0,
                                                    **summary}, today=TODAY)
    return {r.check_id: r for r in results if not r.check_id.startswith("data.")}, gate_status(results)


def table(n=20, *, spearman, relative_lift=0.5, corner=1.0, bg=0.0, with_sanity_rows=10):
    sanity = np.full(n, np.nan)
    sanity[:with_sanity_rows] = spearman  # the sanity check runs on a sample: NaN elsewhere
    return make_table(["a"] * n, relative_lift=relative_lift, corner_lift_max=corner, bg_only_skill=bg,
                      sanity_spearman=sanity)


def test_maps_that_ignore_the_model_make_passing_heat_checks_inconclusive():
    policy = make_policy(SANITY, HEAT, CORNER, PROBE)
    by_id, status = judge(policy, table(spearman=0.97))
    assert by_id["sanity"].outcome == "INCONCLUSIVE"
    assert by_id["heat"].outcome == "INCONCLUSIVE" and by_id["corner"].outcome == "INCONCLUSIVE"
    assert "not trusted" in by_id["heat"].message and "sanity overall" in by_id["heat"].message
    assert by_id["bg"].outcome == "PASS"  # a probe does not read the map: it keeps its outcome
    assert status == "INCONCLUSIVE"


def test_a_heat_failure_stays_a_failure_when_the_maps_are_in_doubt():
    by_id, status = judge(make_policy(SANITY, HEAT), table(spearman=0.97, relative_lift=0.01))
    assert by_id["heat"].outcome == "FAIL"
    assert status == "FAIL"  # fails closed: FAIL outranks INCONCLUSIVE


def test_maps_that_change_leave_the_heat_checks_alone():
    by_id, status = judge(make_policy(SANITY, HEAT, CORNER), table(spearman=0.1))
    assert by_id["sanity"].outcome == "PASS"
    assert by_id["heat"].outcome == "PASS" and "not trusted" not in by_id["heat"].message
    assert status == "PASS"


def test_a_sanity_check_that_could_not_run_is_not_judged_and_the_heat_checks_stand():
    by_id, status = judge(make_policy(SANITY, HEAT), table(spearman=np.nan, with_sanity_rows=0))
    assert by_id["sanity"].outcome == "NOT_JUDGED"
    assert by_id["heat"].outcome == "PASS"
    assert status == "PASS"


def test_an_inconclusive_sanity_check_can_be_waived_to_warn():
    policy = make_policy(SANITY, HEAT, waivers=[{"check": "sanity", "reason": "known", "expires": "2026-12-31"}])
    by_id, status = judge(policy, table(spearman=0.97))
    assert by_id["sanity"].outcome == "WARN" and by_id["heat"].outcome == "PASS"
    assert status == "WARN"


def test_data_without_boxes_judge_only_the_box_free_checks():
    t = table(spearman=0.1, relative_lift=np.nan, corner=1.2, bg=np.nan)
    t["area"][:] = np.nan
    by_id, status = judge(make_policy(SANITY, HEAT, CORNER, PROBE), t, n_with_box=0)
    assert by_id["heat"].outcome == "NOT_JUDGED" and "no object boxes" in by_id["heat"].message
    assert by_id["bg"].outcome == "NOT_JUDGED"
    assert by_id["corner"].outcome == "PASS"
    assert status == "PASS"
    t["corner_lift_max"][:] = 9.0  # a corner tag is still caught without any box
    by_id, status = judge(make_policy(SANITY, HEAT, CORNER, PROBE), t, n_with_box=0)
    assert by_id["corner"].outcome == "FAIL" and status == "FAIL"


def test_boxes_missing_on_some_rows_are_still_a_shortfall_not_box_free_data():
    t = table(spearman=0.1, relative_lift=np.nan)
    by_id, _ = judge(make_policy(HEAT), t, n_with_box=3)
    assert by_id["heat"].outcome == "FAIL"  # the policy asked for boxes the data should have had


def test_probes_section_defaults_and_errors():
    policy = load_policy({"name": "t", "version": 1, "checks": [HEAT]})
    assert policy.probes.counterfactual and policy.probes.fill == "tile"
    assert (policy.probes.faithfulness_samples, policy.probes.sanity_samples) == (32, 32)
    assert policy.probes.faithfulness_steps == 2
    off = load_policy({"name": "t", "version": 1, "checks": [HEAT],
                       "probes": {"counterfactual": False, "faithfulness": {"samples": 0}}})
    assert not off.probes.counterfactual and off.probes.faithfulness_samples == 0
    assert off.content_hash != policy.content_hash
    with pytest.raises(PolicyError, match=r"probes\.counterfactual\.fill.*unknown value 'median'"):
        load_policy({"name": "t", "version": 1, "checks": [HEAT], "probes": {"counterfactual": {"fill": "median"}}})
    with pytest.raises(PolicyError, match=r"probes\.faithfulness\.steps.*>= 2"):  # no inner point: no gain
        load_policy({"name": "t", "version": 1, "checks": [HEAT], "probes": {"faithfulness": {"steps": 1}}})
    with pytest.raises(PolicyError, match=r"probes.*'sanitee'"):
        load_policy({"name": "t", "version": 1, "checks": [HEAT], "probes": {"sanitee": {}}})


def _default_faithfulness():
    import yaml

    from validator.policy import default_policy_path

    raw = yaml.safe_load(default_policy_path().read_text())
    return next(c for c in raw["checks"] if c["id"] == "faithfulness")


def _faith_table(gain, gap=0.3, n=100, sampled=32):
    """The probe's columns on the first ``sampled`` rows (NaN elsewhere, as the runner writes them)."""
    g, p = np.full(n, np.nan), np.full(n, np.nan)
    g[:sampled], p[:sampled] = gain, gap
    return make_table(["a"] * n, faithfulness_gain=g, faithfulness_gap=p)


def test_default_faithfulness_check_wants_the_map_shown_better_than_a_random_order():
    policy = make_policy(_default_faithfulness())
    chance = np.random.default_rng(0).normal(0.0, 0.3, 32)  # a map unrelated to the image: gain ~0
    by_id, _ = judge(policy, _faith_table(chance))
    assert by_id["faithfulness"].outcome == "WARN" and "random order" in by_id["faithfulness"].message
    by_id, _ = judge(policy, _faith_table(np.random.default_rng(0).normal(0.9, 0.3, 32)))
    assert by_id["faithfulness"].outcome == "PASS"
    by_id, _ = judge(policy, _faith_table(0.0))  # a uniform map: its shifted copy is the same order
    assert by_id["faithfulness"].outcome == "WARN"


def test_faithfulness_where_the_model_ignores_deletion_is_not_judged_and_says_why():
    policy = make_policy(_default_faithfulness())
    gain = np.full(32, np.nan)
    gain[:5] = 0.8  # 27 of the 32 probed images: the class probability did not move
    by_id, _ = judge(policy, _faith_table(gain))
    check = by_id["faithfulness"]
    assert check.outcome == "NOT_JUDGED"
    assert "only 5 samples" in check.message
    assert "27 of the 32 rows the probe ran on have no faithfulness_gain" in check.message
    assert "does not react to the deletion baseline" in check.message
    by_id, _ = judge(policy, _faith_table(np.nan, gap=np.nan))  # probe switched off: a different reason
    assert by_id["faithfulness"].outcome == "NOT_JUDGED"
    assert "the probe ran on no row here" in by_id["faithfulness"].message
    assert "does not react" not in by_id["faithfulness"].message
