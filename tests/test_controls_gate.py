"""Positive and negative controls through the default policy: shortcuts FAIL for the right reason, clean PASSES.

Held-out sets use test seeds (0..9); the default policy was calibrated on other seeds (100+), so these tests
measure whether the calibration generalises.
"""

from __future__ import annotations

import pytest
from cli_helpers import run_cli

HELDOUT_SEED = 1


def audit_cli(capsys, tmp_path, model, data):
    out = tmp_path / "report"
    result = run_cli(capsys, "audit", model.path, "--data", data.coco_path, "--out", out, "--no-mlflow")
    import json

    return result, json.loads((out / "verdict.json").read_text())


def failing(verdict) -> set[str]:
    return {c["check_id"] for c in verdict["checks"] if c["outcome"] == "FAIL"}


@pytest.mark.parametrize("cue", [None, "weather", "watermark", "background"])
def test_clean_model_passes_with_or_without_cues_in_the_data(capsys, tmp_path, clean_model, heldout_coco, cue):
    result, verdict = audit_cli(capsys, tmp_path, clean_model, heldout_coco(cue, n=200, seed=HELDOUT_SEED))
    assert result.exit_code == 0, result.out
    assert verdict["status"] in ("PASS", "WARN")
    lift = verdict["summary"]["overall"]["lift"]["mean"]
    assert lift["lo"] >= 1.5


def test_watermark_model_fails_on_corner_heat(capsys, tmp_path, watermark_model, heldout_coco):
    result, verdict = audit_cli(capsys, tmp_path, watermark_model, heldout_coco("watermark", n=200, seed=HELDOUT_SEED))
    assert result.exit_code == 1
    assert "corner-heat" in failing(verdict), result.out
    assert "corner-heat" in result.out  # the CLI names the failing check


@pytest.mark.parametrize("fixture", ["weather_model", "background_model"])
def test_global_shortcut_models_fail_on_object_heat(capsys, tmp_path, heldout_coco, request, fixture):
    model = request.getfixturevalue(fixture)
    result, verdict = audit_cli(capsys, tmp_path, model, heldout_coco(model.cue, n=200, seed=HELDOUT_SEED))
    assert result.exit_code == 1
    assert {"object-heat", "object-heat-share"} & failing(verdict), result.out
    # The model is accurate on this data: it is right for the wrong reason, which the gate catches.
    assert verdict["summary"]["overall"]["correct"]["rate"]["value"] >= 0.9
