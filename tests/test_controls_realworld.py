"""Controls shaped like users' data through the default policy: many classes, grayscale (8- and 16-bit),
large objects, a small mark in a random corner, a class too small to judge. Clean models PASS; shortcut
models FAIL for the named reason.

Held-out sets use test seeds (0..9); the default policy was calibrated on seeds 100+ (docs/calibration.md).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from validator import audit

pytestmark = pytest.mark.slow
SEED = 2


def failing(verdict) -> set[str]:
    return {c["check_id"] for c in verdict.checks if c["outcome"] == "FAIL"}


def _audit(model, data, out, **options):
    return audit(str(model.path), str(data.coco_path), out=out, **options)


@pytest.mark.parametrize("n_classes", [10, 20])
def test_clean_many_class_models_pass_with_every_class_judged(tmp_path, heldout_digits, request, n_classes):
    model = request.getfixturevalue(f"digits{n_classes}_clean_model")
    data = heldout_digits(n_classes=n_classes, cue=None, n=40 * n_classes, seed=SEED)
    verdict = _audit(model, data, tmp_path / "r")
    assert verdict.status in ("PASS", "WARN") and verdict.exit_code == 0, [c["message"] for c in verdict.failed_checks]
    per_class = verdict.sample["per_class"]
    assert len(per_class) == n_classes and not verdict.sample["not_judged_classes"]
    # the 200-sample budget alone would give 200 / C per class; the quota tops every class up to 30
    assert all(c["selected"] >= 30 for c in per_class.values())
    assert not [c for c in verdict.checks if c["outcome"] == "WARN" and c["check_id"] == "class-object-heat"]
    class_checks = [c for c in verdict.checks if c["check_id"] == "class-object-heat"]
    assert len(class_checks) == n_classes
    assert all(c["confidence"] == pytest.approx(1 - 0.05 / n_classes) for c in class_checks)


def test_decoy_corner_mark_fails_on_the_corner_check_naming_the_corners(tmp_path, heldout_digits,
                                                                        digits10_corner_model):
    data = heldout_digits(n_classes=10, cue="corner_mark", n=400, seed=SEED)
    verdict = _audit(digits10_corner_model, data, tmp_path / "r")
    assert verdict.status == "FAIL" and verdict.exit_code == 1
    assert "corner-heat" in failing(verdict)
    corner = next(c for c in verdict.failed_checks if c["check_id"] == "corner-heat")
    # the swatch sits in a random corner per image: no single corner holds the evidence
    assert "the evidence sits in the corners" in corner["message"]


def test_clean_digits_model_passes_on_data_that_carries_the_corner_mark(tmp_path, heldout_digits,
                                                                        digits10_clean_model):
    data = heldout_digits(n_classes=10, cue="corner_mark", n=400, seed=SEED)
    verdict = _audit(digits10_clean_model, data, tmp_path / "r")
    assert verdict.exit_code == 0, [c["message"] for c in verdict.failed_checks]


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_grayscale_clean_model_passes(tmp_path, heldout_xray, xray_clean_model, bit_depth):
    data = heldout_xray(cue="marker", n=200, seed=SEED, bit_depth=bit_depth)
    verdict = _audit(xray_clean_model, data, tmp_path / "r")
    assert verdict.exit_code == 0, [c["message"] for c in verdict.failed_checks]
    conversions = {i["reason"] for i in verdict.data_issues if i["action"] == "converted_image"}
    if bit_depth == 16:
        assert any("16-bit" in r for r in conversions)  # the intensity scaling is recorded


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_grayscale_marker_shortcut_fails_on_the_corner_check(tmp_path, heldout_xray, xray_marker_model, bit_depth):
    data = heldout_xray(cue="marker", n=200, seed=SEED, bit_depth=bit_depth)
    verdict = _audit(xray_marker_model, data, tmp_path / "r")
    assert verdict.status == "FAIL"
    assert "corner-heat" in failing(verdict)
    corner = next(c for c in verdict.failed_checks if c["check_id"] == "corner-heat")
    assert "the evidence sits in the" in corner["message"]


def test_large_objects_clean_passes_where_mean_lift_would_have_failed(tmp_path, heldout_coco, large_clean_model):
    data = heldout_coco(None, n=200, seed=SEED, area_range=(0.25, 0.5))
    verdict = _audit(large_clean_model, data, tmp_path / "r")
    assert verdict.exit_code == 0, [c["message"] for c in verdict.failed_checks]
    lift = verdict.summary["overall"]["lift"]["mean"]
    assert lift["lo"] < 2.0  # lift is bounded by 1/A <= 4 here: the old 1.5 floor was a hair away
    assert "area=large" in verdict.summary and verdict.summary["area=large"]["relative_lift"]["mean"]["n"] > 100


def test_large_objects_weather_shortcut_fails_on_object_heat(tmp_path, heldout_coco, large_weather_model):
    data = heldout_coco("weather", n=200, seed=SEED, area_range=(0.25, 0.5))
    verdict = _audit(large_weather_model, data, tmp_path / "r")
    assert verdict.status == "FAIL" and "object-heat" in failing(verdict)
    assert verdict.summary["overall"]["correct"]["rate"]["value"] >= 0.9  # right for the wrong reason


def test_a_class_too_small_to_judge_is_not_judged_and_listed(tmp_path, heldout_digits, digits10_clean_model):
    """Class 7 keeps only 12 of its records: the gate judges the other nine and says so for the tenth."""
    data = heldout_digits(n_classes=10, cue=None, n=400, seed=SEED)
    rows = list(csv.DictReader(data.manifest_path.open()))
    names = data.class_names
    kept, seen = [], 0
    for row in rows:
        if row["label"] == names[7]:
            seen += 1
            if seen > 12:
                continue
        kept.append(row)
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    # paths in the manifest are relative to the data root
    target = data.root / "small-class.csv"
    target.write_text(manifest.read_text())
    verdict = audit(str(digits10_clean_model.path), str(target), out=tmp_path / "r",
                    classes=list(names))
    assert verdict.exit_code == 0, [c["message"] for c in verdict.failed_checks]
    assert verdict.sample["not_judged_classes"] == [names[7]]
    assert verdict.sample["per_class"][names[7]] == {"available": 12, "selected": 12, "explained": 12,
                                                     "judged": False}
    small = [c for c in verdict.checks if c["slice"] == f"class={names[7]}"]
    assert small and all(c["outcome"] == "NOT_JUDGED" for c in small)
    assert any("only 12 samples (min 30; 12 available in the data): not judged" in c["message"] for c in small)
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "Not judged" in summary and names[7] in summary
    on_disk = json.loads((tmp_path / "r" / "verdict.json").read_text())
    assert on_disk["status"] in ("PASS", "WARN")
    assert np.isfinite(on_disk["summary"]["overall"]["relative_lift"]["mean"]["value"])
