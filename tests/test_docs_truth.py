"""The words match the code: the README's default-policy table, its policy snippet, the example policy's
comments and `camgate check-policy` say what the shipped policies and the gate actually do."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli

from validator.policy import load_policy
from validator.policy.datachecks import data_checks
from validator.policy.result import NOT_JUDGED

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
DEFAULT = load_policy(ROOT / "policies" / "default.yaml")


def _default_table() -> dict[str, str]:
    """{check id: rule} from the README's "The shipped default" table."""
    section = README.split("### The shipped default", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("check", "") and not set(cells[0]) <= set("-"):
            rows[cells[0].strip("`")] = cells[1]
    return rows


TABLE = _default_table()


def _numbers(rule: str) -> set[float]:
    """The numbers a rule quotes; code spans (metric names) and the interval level (95%) are not limits."""
    text = re.sub(r"`[^`]*`", " ", rule).replace("95%", " ")
    return {float(n.rstrip("%")) / (100 if n.endswith("%") else 1) for n in re.findall(r"\d+(?:\.\d+)?%?", text)}


def test_readme_table_has_a_row_for_every_default_check_and_no_other():
    assert set(TABLE) - {"data"} == {c.id for c in DEFAULT.checks}


@pytest.mark.parametrize("check", DEFAULT.checks, ids=lambda c: c.id)
def test_readme_rule_quotes_the_default_policy(check):
    """Every limit, the bound, the severity and the named metric of a README row are the policy's."""
    rule = TABLE[check.id]
    limits = {v for v in (check.min, check.max, check.threshold) if v is not None}
    limits |= set((check.with_masks or {}).values())  # "..., <limit> where every object region is a mask"
    if "fewer than" in rule:  # the row quotes the check's min_samples too
        limits.add(float(check.min_samples))
    assert _numbers(rule) == limits, (f"README row `{check.id}` quotes {sorted(_numbers(rule))}; "
                                      f"policies/default.yaml has {sorted(limits)}")
    for bound in ("lower", "upper"):
        if bound in rule:
            assert check.bound == bound, f"README row `{check.id}` says {bound} bound; the policy: {check.bound}"
    severity = ("inconclusive" if "INCONCLUSIVE" in rule else "warn" if "warn" in rule
                else "fail" if "(fail)" in rule else None)
    assert severity == check.severity, f"README row `{check.id}` says {severity}; the policy: {check.severity}"
    for name in re.findall(r"`([^`]*)`", rule):
        assert name == check.metric, f"README row `{check.id}` names metric {name}; the policy: {check.metric}"


def test_readme_data_row_quotes_the_sample_section():
    sample = DEFAULT.sample
    assert _numbers(TABLE["data"]) == {sample.min_samples, sample.min_per_class, sample.max_skipped_fraction}
    assert ("NOT_JUDGED" in TABLE["data"]) == (sample.on_small_class == "not_judged")


def test_readme_policy_snippet_is_the_default():
    snippet = yaml.safe_load(README.split("```yaml\nname: default\n", 1)[1].split("```", 1)[0])
    assert snippet["version"] == DEFAULT.version
    policy = DEFAULT.to_dict()
    for key, value in snippet["sample"].items():
        assert policy["sample"][key] == value, f"README snippet sample.{key}"
    assert snippet["multiple_comparisons"] == policy["multiple_comparisons"]
    for key, value in snippet["explainer"].items():
        assert policy["explainer"][key] == value, f"README snippet explainer.{key}"
    checks = {c["id"]: c for c in policy["checks"]}
    for check in snippet["checks"]:
        for key, value in check.items():
            assert checks[check["id"]][key] == value, f"README snippet {check['id']}.{key}"


def test_readme_names_the_default_counterfactual_fill():
    row = next(line for line in README.splitlines() if line.startswith("| background only"))
    assert f"`{DEFAULT.probes.fill}`, the default" in row


def test_readme_never_says_the_atlas_judges():
    """No check reads the atlas (evaluate() sees the per-sample table only): it is shown, not judged."""
    prose = " ".join(README.split())
    assert not re.search(r"atlas (judges?|decides?)", prose), "the README says the atlas judges"


def test_example_policy_absent_class_is_not_judged_as_its_comment_says():
    example = load_policy(ROOT / "policies" / "example.yaml")
    text = (ROOT / "policies" / "example.yaml").read_text()
    assert "NOT_JUDGED by default" in text and "a class absent from the data fails" not in text
    absent = example.classes[-1]
    classes = [c for c in example.classes[:-1] for _ in range(example.sample.min_per_class)]
    results = data_checks(example, classes, {"n_read": len(classes)})
    outcome = {r.slice: r.outcome for r in results if r.check_id == "data.min_per_class"}
    assert outcome[f"class={absent}"] == NOT_JUDGED
    assert Counter(outcome.values())["PASS"] == len(example.classes) - 1


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.name)
def test_check_policy_lists_every_field_that_decides_a_check(capsys, path):
    result = run_cli(capsys, "check-policy", path)
    assert result.exit_code == 0, result.err
    lines = {line.split(":", 1)[0].strip(): line for line in result.out.splitlines()[1:]}
    for check in load_policy(path).checks:
        line = lines[check.id]
        assert f"{check.aggregate} of {check.metric}" in line and f"[{check.severity}]" in line
        assert (f">= {check.threshold}" in line) == (check.threshold is not None), line
        for name in ("min", "max"):
            if getattr(check, name) is not None:
                assert f"{name} {getattr(check, name)}" in line, line
        for kind, value in (check.change or {}).items():
            assert f"change {kind} {value}" in line, line
        slices = check.slices if isinstance(check.slices, str) else ", ".join(check.slices)
        assert f"slices {slices}" in line or f"slices [{slices}]" in line, line
