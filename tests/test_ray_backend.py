"""`--backend ray` on a real local Ray cluster (127.0.0.1, 2 CPUs): the same verdict as one process."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from cli_helpers import run_cli
from test_shard import assert_same_tables, comparable

from validator.gate import audit

# Deselected where the ray extra is not installed (make test-min: -m "not ray"); imported lazily so that
# collecting this module there does not need Ray, and a missing Ray fails loudly where the tests run.
pytestmark = pytest.mark.ray

TODAY = date(2026, 12, 3)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_backend_gives_the_single_process_verdict(local_ray, tmp_path, watermark_model, heldout_coco):
    data = heldout_coco("watermark", n=40, seed=5)
    common = {"today": TODAY, "batch_size": 8}
    single = audit(str(watermark_model.path), str(data.coco_path), out=tmp_path / "single", **common)
    on_ray = audit(str(watermark_model.path), str(data.coco_path), out=tmp_path / "ray", backend="ray", workers=2,
                   **common)
    assert single.status == on_ray.status == "FAIL", on_ray.error
    assert on_ray.shards["backend"] == "ray" and on_ray.shards["count"] == 2 and sum(on_ray.shards["rows"]) == 40
    assert comparable(on_ray) == comparable(single)
    assert_same_tables(on_ray.table, single.table)
    for key in single.atlas:
        assert np.array_equal(on_ray.atlas[key], single.atlas[key])
    assert (tmp_path / "ray" / "NOT_BLESSED").exists()


def test_ray_options_need_the_ray_backend(capsys, tmp_path, watermark_model, heldout_coco):
    data = heldout_coco("watermark", n=40, seed=5)
    result = run_cli(capsys, "audit", watermark_model.path, "--data", data.coco_path, "--workers", "2",
                     "--no-mlflow", "--out", tmp_path)
    assert result.exit_code == 2 and "--backend ray" in result.err
    result = run_cli(capsys, "audit", watermark_model.path, "--data", data.coco_path, "--backend", "ray",
                     "--shard", "1/2", "--out", tmp_path)
    assert result.exit_code == 2 and "choose one" in result.err


def test_an_in_memory_model_is_refused_on_ray(local_ray, tmp_path, watermark_model, heldout_coco):
    from validator.model import load_model

    data = heldout_coco("watermark", n=40, seed=5)
    verdict = audit(load_model(watermark_model.path).model, str(data.coco_path), out=tmp_path, backend="ray",
                    today=TODAY)
    assert verdict.status == "ERROR" and verdict.exit_code == 2
    assert "pass a model path" in verdict.error
