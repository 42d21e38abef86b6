"""The help is the manual: options grouped in sections (each option in exactly one), an example that parses,
the exit codes the code really uses; and every verdict line says why, INCONCLUSIVE included, without -v."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from cli_helpers import run_cli

from validator import cli
from validator.errors import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_FAIL,
    EXIT_INCONCLUSIVE,
    EXIT_PASS,
    EXIT_USAGE,
    CamgateError,
    DataError,
    PolicyError,
    UsageError,
)

ROOT = Path(__file__).resolve().parents[1]
AUDIT_SECTIONS = ["Inputs", "Explainer", "Sampling", "Outputs", "MLflow", "Scale-out", "Help", "Example",
                  "Exit codes"]


def _help(capsys, *command: str) -> str:
    result = run_cli(capsys, *command, "--help")
    assert result.exit_code == 0, result.err
    return result.out


def _sections(text: str) -> dict[str, list[str]]:
    """{heading: its lines}: a heading is an unindented line ending in ':' after the description."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.fullmatch(r"[A-Z][\w -]*:", line):
            current = line[:-1]
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line)
    return sections


def test_audit_help_headings_in_order(capsys):
    assert list(_sections(_help(capsys, "audit"))) == AUDIT_SECTIONS


@pytest.mark.parametrize("name", sorted(cli.main.commands))
def test_each_option_is_listed_in_exactly_one_section(capsys, name):
    command = cli.main.commands[name]
    sections = _sections(_help(capsys, name))
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        assert getattr(param, "section", None) in command.sections, param.name
        opt = max(param.opts, key=len)
        where = [title for title, lines in sections.items() if title not in ("Example", "Exit codes")
                 and any(re.match(rf"\s+(-\w, )?{re.escape(opt)}\b", line) for line in lines)]
        assert where == [param.section], (opt, where)
    assert [t for t, lines in sections.items() if any("-h, --help" in line for line in lines)] == ["Help"]


def test_method_choices_are_listed_in_the_explainer_section_and_keep_the_columns(capsys):
    text = _help(capsys, "audit")
    explainer = " ".join(" ".join(_sections(text)["Explainer"]).split())
    assert all(name in explainer for name in cli.METHOD_CHOICES)
    # the option column is one width for every section: help text starts in the same column everywhere
    starts = {len(m.group(1)) for m in re.finditer(r"^(  -[^\n]*?\s{2,})\S", text, re.M)}
    assert len(starts) == 1, starts
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_mlflow_default_is_stated(capsys):
    mlflow = " ".join(" ".join(_sections(_help(capsys, "audit"))["MLflow"]).split())
    assert "./mlflow.db" in mlflow and "--no-mlflow" in mlflow and "$MLFLOW_TRACKING_URI" in mlflow


@pytest.mark.parametrize("command", ["", "audit", "merge", "explain"])
def test_the_exit_codes_listed_are_the_codes_the_code_uses(capsys, command):
    lines = _sections(_help(capsys, *filter(None, [command])))["Exit codes"]
    listed = {int(m.group(1)) for line in lines if (m := re.match(r"\s+(\d)\s{2,}\S", line))}
    assert listed == set(EXIT_CODES) == {EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_ERROR, EXIT_INCONCLUSIVE}
    from validator.gate import _exit_code

    assert (_exit_code("PASS", "fail"), _exit_code("WARN", "fail"), _exit_code("WARN", "warn"),
            _exit_code("FAIL", "fail"), _exit_code("INCONCLUSIVE", "fail")) == (
        EXIT_PASS, EXIT_PASS, EXIT_FAIL, EXIT_FAIL, EXIT_INCONCLUSIVE)
    assert UsageError.exit_code == PolicyError.exit_code == DataError.exit_code == EXIT_USAGE
    assert CamgateError.exit_code == EXIT_ERROR


@pytest.mark.parametrize("name", sorted(cli.main.commands))
def test_the_example_in_the_help_parses(capsys, name, tmp_path, monkeypatch):
    command = cli.main.commands[name]
    text = _help(capsys, name)
    assert [line.strip() for line in _sections(text)["Example"]] == [line.strip() for line in command.example]
    args = cli.example_args(command)
    monkeypatch.chdir(tmp_path)  # the paths an example names (some must exist to parse), made here
    for word in args:
        if not word.startswith("-") and ":" not in word and ("/" in word or "." in word):
            path = Path(word)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch() if path.suffix else path.mkdir(exist_ok=True)
    ctx = command.make_context(name, list(args))
    assert ctx.params, args


# ---- every verdict line says why ----------------------------------------------------------------------------

SANITY_POLICY = """name: sanity-only
version: 1
sample: {min_samples: 10, min_per_class: 5}
probes:
  sanity: {samples: 32, stages: 1}
checks:
  - {id: explainer-sanity, metric: sanity_spearman, aggregate: mean, bound: lower, max: 0.5,
     severity: inconclusive, min_samples: 10}
  - {id: dead-maps, metric: dead, aggregate: rate, max: 1.0}
"""


def _model_whose_maps_ignore_its_weights(path):
    """Grad-CAM on a weight-free pooling layer is the image itself: randomising the weights changes nothing."""
    from validator._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.AveragePooling2D(2, name="pool")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(2, name="head")(x)).save(path)
    return path


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "quiet"])
def test_an_inconclusive_sanity_check_says_why_without_verbose(capsys, tmp_path, heldout_xray, quiet):
    model = _model_whose_maps_ignore_its_weights(tmp_path / "m.keras")
    policy = tmp_path / "policy.yaml"
    policy.write_text(SANITY_POLICY)
    result = run_cli(capsys, "audit", model, "--data", heldout_xray(n=60).coco_path, "--layer", "pool",
                     "--policy", policy, "--no-mlflow", "--out", tmp_path / "r", *(["-q"] if quiet else []))
    assert result.exit_code == EXIT_INCONCLUSIVE, result.out + result.err
    line = result.out.splitlines()[-1]
    assert line.startswith("camgate: INCONCLUSIVE (exit 4) — ")
    assert "inconclusive: explainer-sanity [overall]" in line and "sanity_spearman" in line, line
    if quiet:
        assert len(result.out.splitlines()) == 1
    else:
        assert any(row.startswith("  INCONCLUSIVE explainer-sanity [overall]:") for row in result.out.splitlines())


def test_an_audit_that_compared_nothing_says_so(capsys, tmp_path, small_set, untrained_model):
    policy = tmp_path / "policy.yaml"
    policy.write_text("name: nothing\nversion: 1\nsample: {min_samples: 10, min_per_class: 5}\n"
                      "checks: [{id: no-regression, metric: lift, change: {absolute: -0.1}}]\n")
    result = run_cli(capsys, "audit", untrained_model, "--data", small_set.coco_path, "--policy", policy,
                     "--no-mlflow", "--out", tmp_path / "r", "-q")
    assert result.exit_code == EXIT_INCONCLUSIVE, result.out + result.err
    line = result.out.splitlines()[-1]
    assert "no policy check compared anything (1 skipped or not judged): no-regression" in line, line


@pytest.mark.parametrize(("status", "checks", "words"), [
    ("PASS", [{"outcome": "PASS"}, {"outcome": "NOT_JUDGED"}], "all 1 judged check(s) passed (1 skipped or not"),
    ("WARN", [{"outcome": "WARN"}], "1 check(s) warned: c [overall]"),
    ("FAIL", [{"outcome": "FAIL"}] * 5, "5 check(s) failed: c [overall], c [overall], c [overall] and 2 more"),
    ("ERROR", [], "model not found: x"),
])
def test_every_status_gives_a_reason(status, checks, words):
    from validator.verdict import Verdict

    verdict = Verdict(out_dir=Path("r"), model="m", data="d", status=status,
                      error="model not found: x" if status == "ERROR" else None,
                      checks=[{"check_id": "c", "slice": "overall", "message": "m", **c} for c in checks])
    assert cli.verdict_reason(verdict).startswith(words)
