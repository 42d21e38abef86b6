"""The gate's MLflow record against a real temporary SQLite tracking store (no mocks)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from validator.errors import TrackingError, UsageError
from validator.tracking import (
    TrackingOptions,
    image_key,
    is_transient,
    log_verdict,
    metric_name,
    resolve_tracking_uri,
    slice_token,
)

PASS_POLICY = """name: tiny-pass
version: 2
sample: {max_samples: 40, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
  - {id: lift-seen, metric: lift, aggregate: mean, bound: lower, min: 0.0, severity: fail}
"""


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    """One audit of a tiny untrained CNN on 40 synthetic images, recorded in a fresh SQLite store."""
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    root = tmp_path_factory.mktemp("tracking")
    data = write_dataset(root / "data", 40, seed=1)
    keras.utils.set_random_seed(0)
    model = root / "tiny.keras"
    build_small_cnn(64, 2).save(model)
    policy = root / "policy.yaml"
    policy.write_text(PASS_POLICY)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    verdict = audit(model, data.coco_path, policy=policy, out=root / "report",
                    tracking=TrackingOptions(uri=uri, experiment="gate-tests"))
    assert verdict.status == "PASS", verdict.error
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    return {"verdict": verdict, "uri": uri, "client": client, "root": root,
            "run": client.get_run(verdict.tracking["run_id"])}


def _all_artifacts(client, run_id, path=None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(_all_artifacts(client, run_id, info.path) if info.is_dir else [info.path])
    return out


def test_run_params_tags_and_status(gate):
    run, v = gate["run"], gate["verdict"]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "camgate-tiny"
    params = run.data.params
    assert params["camgate.model"].endswith("tiny.keras")
    assert params["camgate.method"] == "gradcam" and params["camgate.layer"] == "last_conv"
    assert params["camgate.preprocess"] == "none"
    assert params["camgate.policy_name"] == "tiny-pass" and params["camgate.policy_hash"] == v.policy["hash"]
    assert params["camgate.sample_size"] == "40" and params["camgate.seed"] == "0"
    tags = run.data.tags
    assert tags["camgate.status"] == "PASS"
    assert tags["camgate.policy"] == "tiny-pass v2"
    assert tags["camgate.version"]
    assert "PASS" in tags["mlflow.note.content"]  # the run description is the Markdown summary
    experiment = gate["client"].get_experiment(run.info.experiment_id)
    assert experiment.name == "gate-tests"
    # Artifacts of a SQLite store live next to the database, not in the working folder.
    assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(gate["root"])


def test_metrics_every_aggregate_per_slice(gate):
    metrics, summary = gate["run"].data.metrics, gate["verdict"].summary
    lift = summary["overall"]["lift"]["mean"]
    assert metrics["lift_mean/overall"] == pytest.approx(lift["value"])
    assert metrics["lift_mean/overall_lo"] == pytest.approx(lift["lo"])
    assert metrics["lift_mean/overall_hi"] == pytest.approx(lift["hi"])
    assert metrics["lift_mean/class_disc"] == pytest.approx(summary["class=disc"]["lift"]["mean"]["value"])
    assert "lift_p10/class_disc" in metrics and "correct_rate/class_square" in metrics
    assert metrics["gate/ok"] == 1.0 and metrics["gate/status_code"] == 0.0
    assert metrics["n_samples/overall"] == 40.0
    expected = sum(
        1 for per_metric in summary.values() for per_agg in per_metric.values() for stat in per_agg.values()
        if stat.get("value") is not None and np.isfinite(stat["value"])
    )
    assert sum(1 for k in metrics if "/" in k and not k.endswith(("_lo", "_hi", "_level"))
               and not k.startswith(("gate/", "n_samples/", "sanity/", "discovery/", "hotspot/"))) == expected
    # the hot-spot probe's cost in forward passes per image sits beside its hotspot_drop aggregates
    assert metrics["hotspot/forward_passes_per_image"] == 2.0
    assert "hotspot_drop_mean/overall_lo" in metrics
    # the sanity cascade per stage and the count of flagged clusters are curves of their own
    stages = gate["verdict"].probes["sanity"]["stages"]
    assert {k for k in metrics if k.startswith("sanity/")} == {
        f"sanity/spearman_top_{s['n_top']}" for s in stages if s["mean"] is not None}
    assert metrics["discovery/n_flagged_clusters"] == sum(
        bool(c["off_object"]) for e in gate["verdict"].discovery["clusters"].values() for c in e["clusters"])


def test_artifacts_reports_verdict_policy(gate):
    run_id, client, v = gate["run"].info.run_id, gate["client"], gate["verdict"]
    paths = set(_all_artifacts(client, run_id))
    for name in ("verdict.json", "policy.yaml", "samples.json", "overlays.json"):
        assert f"camgate/{name}" in paths
    for name in ("verdict.json", "report.html", "summary.md", "junit.xml", "samples.csv", "BLESSED"):
        assert f"camgate/report/{name}" in paths
    overlay_files = {f"camgate/report/{o['path']}" for o in v.overlays}
    assert overlay_files <= paths and any("atlas_overall" in p for p in overlay_files)
    keyed = [p for p in paths if p.startswith("images/")]
    assert any(p.startswith("images/overlays~class_disc~worst_0+step+0") and p.endswith(".png") for p in keyed)
    assert any(p.startswith("images/atlas~overall") for p in keyed)
    logged = json.loads(Path(client.download_artifacts(run_id, "camgate/verdict.json", str(gate["root"]))).read_text())
    assert logged["status"] == "PASS" and logged["tracking"]["run_id"] == run_id
    local = json.loads((gate["root"] / "report" / "verdict.json").read_text())
    assert local["tracking"]["run_id"] == run_id  # the local record names the MLflow run


def test_samples_table_loads_back(gate, monkeypatch):
    import mlflow

    # mlflow.load_table searches the current experiment; set it the way monkeypatch undoes after the test.
    monkeypatch.setattr("mlflow.tracking.fluent._active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", gate["run"].info.experiment_id)

    run_id, v = gate["run"].info.run_id, gate["verdict"]
    mlflow.set_tracking_uri(gate["uri"])
    try:
        table = mlflow.load_table("camgate/samples.json", run_ids=[run_id])
        overlays = mlflow.load_table("camgate/overlays.json", run_ids=[run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(table) == v.sample["n_explained"] == 40
    assert {"sample_id", "class_name", "lift", "energy", "correct", "overlay"} <= set(table.columns)
    np.testing.assert_allclose(table["lift"].to_numpy(dtype=float), v.table["lift"], equal_nan=True)
    with_overlay = table[table["overlay"].notna()]
    assert len(with_overlay) == sum(o["kind"] != "atlas" for o in v.overlays)
    assert set(overlays["kind"]) == {"worst", "typical", "atlas"}
    image = overlays["image"].iloc[0]
    assert image["type"] == "image" and image["filepath"].endswith(".png")


def test_image_artifacts_are_valid_pngs(gate):
    from PIL import Image

    run_id, client = gate["run"].info.run_id, gate["client"]
    paths = [p for p in _all_artifacts(client, run_id) if p.endswith(".png")]
    assert len(paths) >= 2 * len(gate["verdict"].overlays)
    dst = gate["root"] / "download"
    for path in paths[:: max(1, len(paths) // 12)] + [p for p in paths if "atlas" in p][:2]:
        local = Path(client.download_artifacts(run_id, path, str(dst)))
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(local) as image:
            image.load()
            assert image.size[0] > 0 and image.mode in ("RGB", "RGBA")


def test_nested_under_parent_run_id_and_active_run(gate):
    import mlflow

    client, v = gate["client"], gate["verdict"]
    training_experiment = client.create_experiment("training", artifact_location=(gate["root"] / "train").as_uri())
    parent = client.create_run(training_experiment, run_name="train")
    log_verdict(v, TrackingOptions(uri=gate["uri"], parent_run_id=parent.info.run_id))
    child = client.get_run(v.tracking["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.info.experiment_id == parent.info.experiment_id  # the UI nests within one experiment

    mlflow.set_tracking_uri(gate["uri"])
    try:
        with mlflow.start_run(experiment_id=parent.info.experiment_id) as active:
            log_verdict(v, TrackingOptions())  # nested under the active run by default
            nested = v.tracking["run_id"]
            log_verdict(v, TrackingOptions(nested_in_active_run=False))  # or into the active run itself
            same = v.tracking["run_id"]
    finally:
        mlflow.set_tracking_uri(None)
    assert client.get_run(nested).data.tags["mlflow.parentRunId"] == active.info.run_id
    assert same == active.info.run_id
    training = client.get_run(same)
    assert training.data.tags["camgate.status"] == "PASS" and "lift_mean/overall" in training.data.metrics
    assert "mlflow.note.content" not in training.data.tags  # a training run's description is left alone


def test_error_verdict_is_recorded_as_failed_run(gate, tmp_path):
    from validator.gate import audit

    v = audit(tmp_path / "missing.keras", gate["verdict"].data, out=tmp_path / "out",
              tracking=TrackingOptions(uri=gate["uri"], experiment="gate-tests"))
    assert v.status == "ERROR" and v.exit_code == 3
    run = gate["client"].get_run(v.tracking["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["camgate.status"] == "ERROR" and "missing.keras" in run.data.tags["camgate.error"]


def test_unusable_store_names_the_uri(gate, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/a-file/mlflow.db"
    with pytest.raises(TrackingError, match="a-file/mlflow.db"):
        log_verdict(gate["verdict"], TrackingOptions(uri=uri, retry_seconds=0.5))


def test_unreachable_server_retries_briefly_then_names_the_uri(gate):
    with socket.socket() as sock:  # a free port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=f"127.0.0.1:{port}.*unreachable") as info:
        log_verdict(gate["verdict"], TrackingOptions(uri=uri, retry_seconds=1.5))
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10, elapsed
    assert "attempts" in str(info.value)


def test_promote_alias_must_be_valid(gate):
    with pytest.raises(UsageError, match="latest"):
        log_verdict(gate["verdict"], TrackingOptions(uri=gate["uri"], promote="latest"))


def test_default_uri_is_sqlite_in_working_folder(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(None)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri() == "http://127.0.0.1:1"
    assert resolve_tracking_uri("sqlite:///x.db") == f"sqlite:///{tmp_path}/x.db"


def test_names_are_valid_for_mlflow():
    from mlflow.utils.validation import _validate_metric_name

    assert slice_token("class=tank") == "class_tank"
    assert metric_name("lift", "mean", "class=tank", "lo") == "lift_mean/class_tank_lo"
    odd = metric_name("lift", "p10", "class=a+b=c (x)")
    _validate_metric_name(odd)
    assert image_key("overlays", "class_é", "worst_0") == "overlays/class__/worst_0"


def test_transient_errors_are_classified():
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, TEMPORARILY_UNAVAILABLE

    assert is_transient(requests.exceptions.ConnectionError("refused"))
    try:  # MLflow's wrapper of a refused connection: transient by its cause's type, not by its text
        try:
            raise requests.exceptions.ConnectionError("refused")
        except requests.exceptions.ConnectionError:
            raise MlflowException("API request to http://x failed with exception boom")  # noqa: B904
    except MlflowException as wrapped:
        assert is_transient(wrapped)
    assert not is_transient(MlflowException("API request to http://x failed with exception boom"))
    assert is_transient(MlflowException("busy", error_code=TEMPORARILY_UNAVAILABLE))
    assert not is_transient(MlflowException("bad name", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(ValueError("nope"))
