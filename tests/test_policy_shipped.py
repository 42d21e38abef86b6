"""The shipped policies: they load, the packaged copies match policies/, and the default judges sensibly."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from validator.errors import PolicyError
from validator.policy import (
    BUILTIN_POLICIES,
    builtin_policy_path,
    default_policy_path,
    evaluate,
    gate_status,
    load_policy,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", BUILTIN_POLICIES)
def test_shipped_policy_loads_and_packaged_copy_is_identical(name):
    source = REPO / "policies" / f"{name}.yaml"
    packaged = builtin_policy_path(name)
    assert packaged.read_bytes() == source.read_bytes()
    policy = load_policy(source)
    assert policy.name == name and policy.checks
    assert load_policy(packaged).content_hash == policy.content_hash


def test_no_stray_policy_files():
    shipped = sorted(p.name for p in (REPO / "policies").glob("*.yaml"))
    packaged = sorted(p.name for p in (REPO / "validator" / "policies").glob("*.yaml"))
    assert shipped == packaged == sorted(f"{n}.yaml" for n in BUILTIN_POLICIES)


def test_default_policy_path_and_unknown_builtin():
    assert default_policy_path() == builtin_policy_path("default")
    assert [c.id for c in load_policy(default_policy_path()).checks] == [
        "object-heat", "object-heat-share", "class-object-heat", "corner-heat", "edge-heat", "beside-heat",
        "dead-maps", "accuracy", "background-only", "background-swap", "hotspot", "explainer-sanity", "faithfulness"]
    with pytest.raises(PolicyError, match="did you mean 'strict'"):
        builtin_policy_path("strcit")


def test_example_shows_every_option():
    text = (REPO / "policies" / "example.yaml").read_text()
    for key in ("classes:", "explainer:", "method:", "layer:", "batch_size:", "max_samples:", "seed:",
                "min_samples:", "min_per_class:", "max_box_area:", "max_skipped_fraction:", "regions:",
                "on_missing_baseline:", "description:", "aggregate: rate", "threshold:", "bound: lower",
                "bound: upper", "bound: point", "min:", "max:", "absolute:", "relative:", "severity: warn",
                "slices: per_class", "slices: [", "on_missing: warn", "waivers:", "slice:", "reason:",
                "expires:", "probes:", "counterfactual:", "fill:", "faithfulness:", "steps:", "baseline:",
                "sanity:", "stages:", "discovery:", "grid:", "max_clusters:", "severity: inconclusive"):
        assert key in text, key
    policy = load_policy(REPO / "policies" / "example.yaml")
    assert {c.metric for c in policy.checks} >= {"region_logo"}
    assert {next(iter(c.change)) for c in policy.checks if c.change} == {"absolute", "relative"}


def _is_faithfulness(check) -> bool:
    return "faithfulness" in check.metric or check.id.startswith("faithfulness")


# The shipped policies' faithfulness checks, read from the files: the table carries whichever column they name.
SHIPPED = {name: load_policy(builtin_policy_path(name)) for name in BUILTIN_POLICIES}
FAITHFULNESS_CHECKS = [c for policy in SHIPPED.values() for c in policy.checks if _is_faithfulness(c)]


def _faithfulness_value(metric: str, faithful: bool) -> float:
    """A centre every shipped check on ``metric`` passes (faithful) or flags (not): 0.3 clear of each limit."""
    checks = [c for c in FAITHFULNESS_CHECKS if c.metric == metric]
    mins = [c.min for c in checks if c.min is not None]
    maxes = [c.max for c in checks if c.max is not None]
    assert not (mins and maxes), f"{metric}: no single value passes both a min and a max check here"
    if mins:
        return max(mins) + 0.3 if faithful else min(mins) - 0.3
    return min(maxes) - 0.3 if faithful else max(maxes) + 0.3


def _table(lift, corner, correct_share, n_per_class=100, relative=0.5, corner_lift=1.0, bg_correct=0.5,
           gap=0.0, spearman=0.1, faithful=True, hotspot=0.0, edge_lift=1.0, one_sided=0.0):
    """Two classes; lift and corner heat spread evenly around the given centres; probe columns at the given
    shares (background-only accuracy, BG-gap) and sanity / faithfulness on a 32-row sample (faithful: maps
    the shipped faithfulness checks pass; not: maps they flag)."""
    n = 2 * n_per_class
    n_correct = round(correct_share * n)
    subset = np.full(n, np.nan)
    rows = np.arange(0, n, n // 32)[:32]
    subset[rows] = 1.0
    spread = np.full(n, np.nan)
    spread[rows] = np.linspace(-0.05, 0.05, len(rows))
    bg = np.array([1.0] * round(bg_correct * n) + [0.0] * (n - round(bg_correct * n)))
    faithfulness = {c.metric: subset * _faithfulness_value(c.metric, faithful) + spread for c in FAITHFULNESS_CHECKS}
    return {
        "bg_only_skill": (bg - 0.5) / 0.5,
        "bg_gap": np.array([1.0] * round(gap * n) + [0.0] * (n - round(gap * n))),
        "hotspot_drop": np.linspace(hotspot - 0.05, hotspot + 0.05, n),
        "sanity_spearman": subset * spearman,
        **faithfulness,
        "class_name": np.array(["circle"] * n_per_class + ["square"] * n_per_class, dtype=object),
        "area": np.full(n, 0.1),
        "lift": np.linspace(lift - 0.5, lift + 0.5, n),
        "corner_heat_max": np.linspace(corner * 0.5, corner * 1.5, n),
        "relative_lift": np.linspace(relative - 0.2, relative + 0.2, n),
        "corner_lift_max": np.linspace(corner_lift * 0.5, corner_lift * 1.5, n),
        "edge_lift_max": np.linspace(edge_lift * 0.5, edge_lift * 1.5, n),
        "ring_one_sided": (np.arange(n) < round(one_sided * n)).astype(float),
        "dead": np.zeros(n),
        "correct": np.array([1.0] * n_correct + [0.0] * (n - n_correct)),
    }


def test_default_policy_passes_a_clean_model_and_fails_a_corner_shortcut():
    policy = load_policy(default_policy_path())
    summary = {"n_records": 200, "n_skipped": 0}
    clean = evaluate(policy, _table(2.5, 0.03, 0.9), data_summary=summary, today=date(2026, 6, 1))
    assert gate_status(clean) == "PASS", [r.message for r in clean if r.outcome != "PASS"]
    shortcut = evaluate(policy, _table(0.9, 0.5, 0.95, relative=-0.1, corner_lift=15.0, bg_correct=1.0, gap=0.95,
                                       faithful=False, hotspot=0.6), data_summary=summary, today=date(2026, 6, 1))
    failed = {r.check_id for r in shortcut if r.outcome == "FAIL"}
    assert failed == {"object-heat", "object-heat-share", "corner-heat", "background-only", "background-swap",
                      "hotspot"}
    assert {r.check_id for r in shortcut if r.outcome == "WARN" and r.slice == "overall"} == {"faithfulness"}
    assert {r.slice for r in shortcut if r.check_id == "class-object-heat"} == {"class=circle", "class=square"}


def test_default_policy_calls_maps_that_ignore_the_weights_inconclusive():
    policy = load_policy(default_policy_path())
    summary = {"n_records": 200, "n_skipped": 0}
    results = evaluate(policy, _table(2.5, 0.03, 0.9, spearman=0.95), data_summary=summary, today=date(2026, 6, 1))
    by_id = {r.check_id: r.outcome for r in results if r.slice == "overall"}
    assert by_id["explainer-sanity"] == "INCONCLUSIVE"
    assert by_id["object-heat"] == by_id["corner-heat"] == "INCONCLUSIVE"
    assert by_id["accuracy"] == by_id["background-only"] == "PASS"  # they never read a map
    assert gate_status(results) == "INCONCLUSIVE"


@pytest.mark.parametrize("name", [n for n, p in SHIPPED.items() if any(map(_is_faithfulness, p.checks))])
def test_shipped_faithfulness_check_passes_faithful_maps_and_flags_unfaithful_ones(name):
    """Each shipped policy's faithfulness check alone, both ways: a check that cannot flag (or cannot pass)
    an explainer would make this fail."""
    raw = yaml.safe_load(builtin_policy_path(name).read_text())
    raw["checks"] = [c for c in raw["checks"] if "faithfulness" in c["metric"] or c["id"].startswith("faithfulness")]
    policy = load_policy(raw)
    summary = {"n_records": 200, "n_skipped": 0}
    for faithful in (True, False):
        results = evaluate(policy, _table(2.5, 0.03, 0.9, faithful=faithful), data_summary=summary,
                           today=date(2026, 6, 1))
        for check in policy.checks:
            (result,) = [r for r in results if r.check_id == check.id]
            flagged = {"warn": "WARN", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}[check.severity]
            assert result.outcome == ("PASS" if faithful else flagged), (name, faithful, result.message)


@pytest.mark.parametrize("share, outcome", [(0.0, "PASS"), (0.08, "PASS"), (0.45, "FAIL")])
def test_default_beside_heat_fails_one_sided_ring_heat_at_the_shortcuts_share_not_the_clean_models(share, outcome):
    """0.08: the most one-sided clean control measured; 0.45: the least one-sided mark-beside-object shortcut
    (issue 21). With 200 images the Wilson upper bound of 0.08 is ~0.13, of 0.45 ~0.52: either side of 0.25."""
    policy = load_policy(default_policy_path())
    results = evaluate(policy, _table(2.5, 0.03, 0.9, one_sided=share), data_summary={"n_records": 200, "n_skipped": 0},
                       today=date(2026, 6, 1))
    beside = next(r for r in results if r.check_id == "beside-heat" and r.slice == "overall")
    assert beside.outcome == outcome, beside.message
    assert {r.check_id for r in results if r.outcome == "FAIL"} == ({"beside-heat"} if outcome == "FAIL" else set())
