"""Scoring on the device (``--score-on device``): the verdict and every score of the host path.

The device path keeps the maps in TensorFlow and brings back only scores, grid maps and the maps the
faithfulness probe picks; its float columns may differ from NumPy's by summation order only.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from validator.errors import UsageError
from validator.gate import audit

TODAY = date(2026, 12, 3)
DISCRETE = ("dead", "pointing_hit", "center_hit", "cam_box_iou", "cam_box_hit", "rank_accuracy", "correct",
            "predicted", "class_id", "spray_cluster", "area")


def assert_same_audit(host, device, rtol=1e-9):
    assert host.status == device.status
    assert host.explainer["score_on"] == "host" and device.explainer["score_on"] == "device"
    assert [(c["check_id"], c["slice"], c["outcome"]) for c in host.checks] == \
        [(c["check_id"], c["slice"], c["outcome"]) for c in device.checks]
    for a, b in zip(host.checks, device.checks, strict=True):
        if a.get("observed") is not None:
            assert b["observed"] == pytest.approx(a["observed"], rel=rtol, abs=1e-12), (a["check_id"], a["slice"])
        # The BCa interval is discontinuous in the data: its bias correction counts resamples below the
        # observed value, so a 1e-16 change can flip a tie and move a bound by ~1e-4 (measured 1.5e-4).
        for key in ("lo", "hi"):
            if a.get(key) is not None:
                assert b[key] == pytest.approx(a[key], abs=1e-3), (a["check_id"], a["slice"], key)
    assert list(host.table) == list(device.table)
    for key, values in host.table.items():
        other = device.table[key]
        if values.dtype == object:
            assert values.tolist() == other.tolist(), key
        elif key in DISCRETE:
            assert np.array_equal(values, other, equal_nan=True), key
        else:
            assert np.array_equal(np.isnan(values), np.isnan(other)), key
            assert np.allclose(values, other, rtol=rtol, atol=1e-12, equal_nan=True), key
    for key in host.atlas:
        assert np.allclose(host.atlas[key], device.atlas[key], rtol=1e-6, atol=1e-9), key


def test_device_scoring_gives_the_host_verdict(tmp_path, watermark_model, heldout_coco):
    data = heldout_coco("watermark", n=60, seed=6)
    common = {"today": TODAY, "batch_size": 16}
    host = audit(str(watermark_model.path), str(data.coco_path), out=tmp_path / "host", score_on="host", **common)
    device = audit(str(watermark_model.path), str(data.coco_path), out=tmp_path / "dev", score_on="device", **common)
    assert host.status == "FAIL", host.error
    assert_same_audit(host, device)
    assert np.isfinite(device.table["faithfulness_gap"]).sum() > 0  # the probe got its maps from the device


def test_grid_that_does_not_divide_the_map_falls_back_to_host_downsampling(tmp_path):
    """60 px maps, 16 x 16 grid: the maps come back and the host's INTER_AREA path makes the grid maps."""
    import keras

    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset

    keras.utils.set_random_seed(1)
    model = tmp_path / "m60.keras"
    build_small_cnn(60, 2).save(model)
    data = write_dataset(tmp_path / "data", 24, seed=2, image_size=60)
    policy = tmp_path / "p.yaml"
    policy.write_text("name: t\nversion: 1\nchecks:\n  - {id: e, metric: energy, aggregate: mean, min: 0.0}\n")
    common = {"today": TODAY, "batch_size": 8, "policy": policy}
    host = audit(str(model), str(data.coco_path), out=tmp_path / "h", score_on="host", **common)
    device = audit(str(model), str(data.coco_path), out=tmp_path / "d", score_on="device", **common)
    assert host.status != "ERROR", host.error
    assert_same_audit(host, device)


def test_device_maps_bring_back_only_the_rows_asked_for():
    import tensorflow as tf

    from validator.scoring_device import DeviceMaps, resolve

    values = np.arange(4 * 3 * 2, dtype=np.float32).reshape(4, 3, 2)
    maps = DeviceMaps(tf.constant(values))
    assert len(maps) == 4 and maps.shape == (4, 3, 2)
    assert np.array_equal(maps[np.array([3, 1])], values[[3, 1]])
    assert np.array_equal(maps[np.array([True, False, True, False])], values[[0, 2]])
    assert np.array_equal(maps[np.array([], dtype=int)], values[:0])
    expected = "device" if tf.config.list_physical_devices("GPU") else "host"
    assert resolve("auto") == expected and resolve("device") == "device"
    with pytest.raises(UsageError, match="--score-on"):
        resolve("gpu")


@pytest.mark.parametrize("size", [60, 100, 227, 299])
def test_grid_box_shares_stay_within_0_and_1_when_the_grid_does_not_divide_the_map(size):
    """Regression: cv2's INTER_AREA gave 1.0000002 at 60 px, and the SpRAy description refused the whole audit."""
    from validator.discovery.discover import _small_masks

    box = np.array([[7.0, 3.0, size - 2.0, size - 5.0]])
    shares = _small_masks([box], size, size, 16)[0]
    assert shares.max() <= 1.0 and shares.min() >= 0.0
    assert shares[8, 8] == pytest.approx(1.0, abs=1e-6)  # an interior cell is fully covered
