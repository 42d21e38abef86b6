"""The gate end to end through the CLI: exit codes, fail-closed behaviour, and every output parsing."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
from cli_helpers import run_cli

from validator.verdict import VERDICT_SCHEMA


def lenient_policy(tmp_path, **extra) -> Path:
    """A policy whose only check cannot fail (dead-map rate <= 1): any readable model passes it."""
    text = ("name: lenient\nversion: 1\nsample: {min_samples: 10, min_per_class: 5}\n"
            "checks: [{id: any, metric: dead, aggregate: rate, max: 1.0}]\n")
    for key, value in extra.items():
        text += f"{key}: {value}\n"
    path = tmp_path / "lenient.yaml"
    path.write_text(text)
    return path


def assert_outputs_parse(out: Path, status: str, exit_code: int) -> dict:
    verdict = json.loads((out / "verdict.json").read_text())
    jsonschema.validate(verdict, VERDICT_SCHEMA)
    assert verdict["status"] == status and verdict["exit_code"] == exit_code
    marker = "BLESSED" if exit_code == 0 else "NOT_BLESSED"
    assert (out / marker).read_text().strip() == status
    assert not (out / ("NOT_BLESSED" if marker == "BLESSED" else "BLESSED")).exists()
    suite = ET.parse(out / "junit.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == max(len(verdict["checks"]), 1) + (1 if verdict["error"] else 0) - (0 if verdict["checks"] else 0) or cases
    assert int(suite.get("failures")) == sum(c["outcome"] in ("FAIL", "INCONCLUSIVE") for c in verdict["checks"])
    summary = (out / "summary.md").read_text()
    assert f"**{status}**" in summary and len(summary.encode()) < 1024 * 1024
    html = (out / "report.html").read_text()
    assert "camgate verdict: " + status in html
    return verdict


def test_lenient_policy_passes_and_writes_every_output(tmp_path, capsys, small_set, untrained_model):
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", untrained_model, "--data", small_set.coco_path, "--policy",
                     lenient_policy(tmp_path), "--out", out, "--no-mlflow")
    assert result.exit_code == 0, result.out + result.err
    assert "PASS" in result.out
    verdict = assert_outputs_parse(out, "PASS", 0)
    assert verdict["sample"]["n_explained"] == 40
    rows = list(csv.DictReader((out / "samples.csv").open()))
    assert len(rows) == 40 and {"lift", "energy", "corner_heat_max", "correct", "sample_id"} <= set(rows[0])
    # The per-sample energy in the CSV is the in-box share of the heat: between 0 and 1 where defined.
    energies = [float(r["energy"]) for r in rows if r["energy"]]
    assert energies and all(0 <= e <= 1 for e in energies)
    assert any(o["kind"] == "worst" for o in verdict["overlays"])
    for overlay in verdict["overlays"]:
        assert (out / overlay["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_policy_typo_exits_2_naming_line_and_key(tmp_path, capsys, small_set, untrained_model):
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: t\nversion: 1\nchecks:\n  - id: heat\n    metirc: lift\n    aggregate: mean\n    min: 1.5\n")
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", untrained_model, "--data", small_set.coco_path, "--policy", bad, "--out", out,
                     "--no-mlflow")
    assert result.exit_code == 2
    assert "line 5" in result.err and "metirc" in result.err and "did you mean 'metric'" in result.err
    verdict = assert_outputs_parse(out, "ERROR", 2)
    assert "metirc" in verdict["error"]
    check = run_cli(capsys, "check-policy", bad)
    assert check.exit_code == 2 and "line 5" in check.err


def test_unreadable_model_exits_3_with_outputs(tmp_path, capsys, small_set):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"\x00garbage")
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", broken, "--data", small_set.coco_path, "--out", out, "--no-mlflow")
    assert result.exit_code == 3
    assert "broken.keras" in result.err
    assert_outputs_parse(out, "ERROR", 3)


def test_class_count_mismatch_is_a_data_error_before_any_work(tmp_path, capsys, small_set):
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn

    path = tmp_path / "three.keras"
    build_small_cnn(64, 3).save(path)
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", path, "--data", small_set.coco_path, "--out", out, "--no-mlflow")
    assert result.exit_code == 2 and "3 outputs" in result.err
    verdict = assert_outputs_parse(out, "ERROR", 2)
    assert verdict["sample"] == {}  # nothing was explained
    del keras


def test_corrupt_images_are_skipped_counted_and_warned(tmp_path, capsys, untrained_model):
    from validator.datasets.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", 30, seed=4)
    data.image_paths[0].write_bytes(b"not a png")
    (data.root / data.image_paths[1]).unlink() if not data.image_paths[1].is_absolute() else data.image_paths[1].unlink()
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", untrained_model, "--data", data.coco_path, "--policy", lenient_policy(tmp_path),
                     "--out", out, "--no-mlflow")
    verdict = json.loads((out / "verdict.json").read_text())
    skipped = [i for i in verdict["data_issues"] if i["action"] == "skipped_sample"]
    assert len(skipped) == 2
    assert verdict["sample"]["n_explained"] == 28
    # 2 of 30 skipped = 6.7% > the 5% tolerance: the built-in data check fails the gate (fail closed).
    data_check = next(c for c in verdict["checks"] if c["check_id"] == "data.skipped")
    assert data_check["outcome"] == "FAIL"
    assert result.exit_code == 1


def test_fail_on_warn_turns_a_warning_into_exit_1(tmp_path, capsys, small_set, untrained_model):
    policy = tmp_path / "warn.yaml"
    policy.write_text(
        "name: w\nversion: 1\nsample: {min_samples: 10, min_per_class: 5}\n"
        "checks:\n  - {id: impossible, metric: lift, aggregate: mean, min: 50, severity: warn}\n"
    )
    base = ["audit", untrained_model, "--data", small_set.coco_path, "--policy", policy, "--no-mlflow"]
    assert run_cli(capsys, *base, "--out", tmp_path / "a").exit_code == 0
    assert_outputs_parse(tmp_path / "a", "WARN", 0)
    assert run_cli(capsys, *base, "--out", tmp_path / "b", "--fail-on", "warn").exit_code == 1
    assert_outputs_parse(tmp_path / "b", "WARN", 1)


def test_python_api_returns_verdict_and_never_exits(tmp_path, small_set, untrained_model):
    from validator import audit

    verdict = audit(str(untrained_model), str(small_set.coco_path), policy=str(lenient_policy(tmp_path)), out=tmp_path / "r")
    assert verdict.status == "PASS" and verdict.exit_code == 0
    assert Path(verdict.outputs["verdict"]).exists()
    broken = audit(str(tmp_path / "missing.keras"), str(small_set.coco_path), out=tmp_path / "r2")
    assert broken.status == "ERROR" and broken.exit_code == 3 and "model not found" in broken.error
    table = verdict.table
    assert np.isfinite(table["lift"]).sum() > 0


def test_explain_command_writes_overlay_and_scores(tmp_path, capsys, clean_model, heldout_coco):
    data = heldout_coco(None, n=20, seed=2)
    image = data.root / data.image_paths[0] if not data.image_paths[0].is_absolute() else data.image_paths[0]
    x0, y0, x1, y1 = data.arrays.boxes[0]
    label = data.class_names[data.arrays.labels[0]]
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(data.class_names))
    out = tmp_path / "one.png"
    result = run_cli(capsys, "explain", clean_model.path, image, "--classes", classes, "--class", label,
                     "--box", x0, y0, x1, y1, "--out", out)
    assert result.exit_code == 0, result.err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"class {label} (predicted {label}" in result.out  # the clean model gets it right
    lift = float(next(line for line in result.out.splitlines() if line.strip().startswith("lift:")).split(":")[1])
    assert lift > 1.5  # and looks at the object
    bad = run_cli(capsys, "explain", clean_model.path, image, "--classes", classes, "--class", "zebra")
    assert bad.exit_code == 2 and "unknown class 'zebra'" in bad.err
    again = run_cli(capsys, "explain", clean_model.path, image, "--classes", classes, "--out", out)
    assert again.exit_code == 0, again.err  # its own overlay: replaced
    before = image.read_bytes()  # the image itself as --out: refused, untouched
    onto_image = run_cli(capsys, "explain", clean_model.path, image, "--classes", classes, "--out", image)
    assert onto_image.exit_code == 2 and "camgate did not write it" in onto_image.err
    assert image.read_bytes() == before


def test_version(capsys):
    result = run_cli(capsys, "--version")
    assert result.exit_code == 0 and "camgate" in result.out
