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
    record_metrics,
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


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def _all_artifacts(client, run_id, path=None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(_all_artifacts(client, run_id, info.path) if info.is_dir else [info.path])
    return out


def test_run_params_tags_and_status(gate):
    run, v = gate["run"], gate["verdict"]
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "PASS · tiny · tiny-pass v2"  # the verdict leads the one column always shown
    assert run.data.tags["camgate.run_label"] == "tiny · tiny-pass v2"
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


def test_metrics_are_the_checks_and_a_few_headline_numbers(gate):
    metrics, v = gate["run"].data.metrics, gate["verdict"]
    assert set(metrics) == {
        "check/dead-maps/value", "check/dead-maps/threshold", "check/dead-maps/pass",
        "check/lift-seen/value", "check/lift-seen/threshold", "check/lift-seen/pass",
        "check/data.min_samples/value", "check/data.min_samples/threshold", "check/data.min_samples/pass",
        "check/data.min_per_class/value", "check/data.min_per_class/threshold", "check/data.min_per_class/pass",
        "check/data.min_per_class/failing_slices",
        "check/data.skipped/value", "check/data.skipped/threshold", "check/data.skipped/pass",
        "gate/ok", "gate/status_code", "lift_mean/overall"}
    lift = next(c for c in v.checks if c["check_id"] == "lift-seen")
    assert metrics["check/lift-seen/value"] == pytest.approx(lift["compared"])  # the lower bound compared
    assert metrics["check/lift-seen/threshold"] == 0.0 and metrics["check/lift-seen/pass"] == 1.0
    assert metrics["check/dead-maps/threshold"] == 1.0
    # a check over several slices reports its worst slice and how many failed
    per_class = [c for c in v.checks if c["check_id"] == "data.min_per_class"]
    assert len(per_class) == 2 and metrics["check/data.min_per_class/failing_slices"] == 0.0
    assert metrics["check/data.min_per_class/value"] == min(c["compared"] for c in per_class)
    assert metrics["gate/ok"] == 1.0 and metrics["gate/status_code"] == 0.0
    assert metrics["lift_mean/overall"] == pytest.approx(v.summary["overall"]["lift"]["mean"]["value"])


def test_artifacts_reports_verdict_policy(gate):
    run_id, client, v = gate["run"].info.run_id, gate["client"], gate["verdict"]
    paths = set(_all_artifacts(client, run_id))
    for name in ("verdict.json", "policy.yaml", "checks.json", "slices.json", "samples.json", "overlays.json"):
        assert f"camgate/{name}" in paths
    for name in ("report.html", "summary.md", "junit.xml", "samples.csv", "BLESSED"):
        assert f"camgate/report/{name}" in paths
    assert "camgate/report/verdict.json" not in paths  # the verdict once, as camgate/verdict.json
    assert not [p for p in paths if p.startswith(("images/", "table_images/"))]  # no second copy of an overlay
    stored = {f"camgate/report/{o['path']}" for o in v.overlays} - {
        f"camgate/report/{local}" for local in v.tracking.get("overlay_artifacts", {})}
    assert {p for p in paths if p.endswith(".png")} == stored and any("atlas_overall" in p for p in stored)
    logged = json.loads(Path(client.download_artifacts(run_id, "camgate/verdict.json", str(gate["root"]))).read_text())
    assert logged["status"] == "PASS" and logged["tracking"]["run_id"] == run_id
    local = json.loads((gate["root"] / "report" / "verdict.json").read_text())
    assert local["tracking"]["run_id"] == run_id  # the local record names the MLflow run


def test_each_overlay_is_stored_once(gate):
    """The report writes some images under two names (a cluster's example is a worst offender too): the run
    holds the bytes once, and the verdict maps the other name to the stored file."""
    import hashlib

    run = gate["run"]
    root = Path(run.info.artifact_uri.removeprefix("file://"))
    from PIL import Image

    paths = _all_artifacts(gate["client"], run.info.run_id)
    files = [p for p in paths if p.endswith(".png")]
    digests = [hashlib.sha256((root / p).read_bytes()).hexdigest() for p in files]
    assert len(files) >= 3 and len(set(digests)) == len(digests)
    previews = [p for p in paths if p.startswith("camgate/previews/")]  # what the overlays table shows
    assert len(previews) == len(files)
    for preview in previews:
        with Image.open(root / preview) as image:
            assert max(image.size) <= 128
    for local, stored in gate["verdict"].tracking.get("overlay_artifacts", {}).items():
        assert stored in files and (gate["root"] / "report" / local).read_bytes() == (root / stored).read_bytes()


def test_dataset_input_and_audited_model_are_linked(gate):
    run, client, v = gate["run"], gate["client"], gate["verdict"]
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "data/annotations.json" and len(dataset.dataset.digest) == 16
    assert json.loads(dataset.dataset.source)["uri"].endswith("data/annotations.json")
    assert {t.key: t.value for t in dataset.tags} == {"mlflow.data.context": "eval"}
    assert json.loads(dataset.dataset.profile)["num_samples"] == 40
    (model_input,) = run.inputs.model_inputs
    model = client.get_logged_model(model_input.model_id)
    assert model.model_id == v.tracking["model_id"] and model.name == "tiny"
    assert model.source_run_id == run.info.run_id  # the runs table's "Models" column lists it
    assert model.tags["camgate.status"] == "PASS" and model.tags["camgate.run_id"] == run.info.run_id
    assert model.tags["camgate.model_path"].endswith("tiny.keras") and len(model.tags["camgate.model_sha256"]) == 64
    assert model.metrics and {m.key for m in model.metrics} <= set(run.data.metrics)  # linked metrics


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
    assert len(with_overlay) == len({o["sample_id"] for o in v.overlays if o.get("sample_id") is not None})
    assert {"worst", "typical", "atlas"} <= set(overlays["kind"])
    assert list(overlays.columns)[0] == "image"  # the image first, with few columns beside it
    paths = set(_all_artifacts(gate["client"], run_id))
    for image in overlays["image"]:  # pointing at the one stored overlay file, shown as a 128-px preview
        assert image["type"] == "image" and image["filepath"].startswith("camgate/report/overlays/")
        assert image["filepath"] in paths and image["compressed_filepath"] in paths
        assert image["compressed_filepath"] == f"camgate/previews/{Path(image['filepath']).stem}.webp"
    assert set(table["overlay"].dropna()) <= paths

    mlflow.set_tracking_uri(gate["uri"])
    try:
        checks = mlflow.load_table("camgate/checks.json", run_ids=[run_id])
        slices = mlflow.load_table("camgate/slices.json", run_ids=[run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(checks) == len(v.checks)
    per_class = checks[checks["check_id"] == "data.min_per_class"]
    assert set(per_class["slice"]) == {"class=disc", "class=square"} and set(per_class["outcome"]) == {"PASS"}
    assert {"overall", "class=disc", "class=square"} <= set(slices["slice"])
    row = slices[(slices["slice"] == "class=disc") & (slices["metric"] == "lift")].iloc[0]
    assert row["aggregate"] == "mean" and row["value"] == pytest.approx(v.summary["class=disc"]["lift"]["mean"]["value"])
    binary = slices[(slices["slice"] == "overall") & (slices["metric"] == "correct")].iloc[0]
    assert binary["aggregate"] == "rate" and pd_isna(binary["median"])  # no median of 0/1 values


def test_image_artifacts_are_valid_pngs(gate):
    from PIL import Image

    run_id, client = gate["run"].info.run_id, gate["client"]
    paths = [p for p in _all_artifacts(client, run_id) if p.endswith(".png")]
    overlays = gate["verdict"].overlays
    assert len(paths) == len(overlays) - len(gate["verdict"].tracking.get("overlay_artifacts", {}))
    dst = gate["root"] / "download"
    for path in paths[:: max(1, len(paths) // 12)] + [p for p in paths if "atlas" in p][:2]:
        local = Path(client.download_artifacts(run_id, path, str(dst)))
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(local) as image:
            image.load()
            assert image.size[0] > 0 and image.mode in ("RGB", "RGBA")


def test_full_detail_logs_every_aggregate_per_slice(gate):
    v, client = gate["verdict"], gate["client"]
    log_verdict(v, TrackingOptions(uri=gate["uri"], experiment="gate-tests-full", detail="full"))
    metrics, summary = client.get_run(v.tracking["run_id"]).data.metrics, v.summary
    assert metrics == pytest.approx(record_metrics(v, "full"))
    assert "check/lift-seen/value" in metrics  # the check metrics too
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
               and not k.startswith(("gate/", "n_samples/", "sanity/", "discovery/", "hotspot/", "check/"))) == expected
    # the hot-spot probe's cost in forward passes per image sits beside its hotspot_drop aggregates
    assert metrics["hotspot/forward_passes_per_image"] == 2.0
    assert "hotspot_drop_mean/overall_lo" in metrics
    # the sanity cascade per stage and the count of flagged clusters are curves of their own
    stages = v.probes["sanity"]["stages"]
    assert {k for k in metrics if k.startswith("sanity/")} == {
        f"sanity/spearman_top_{s['n_top']}" for s in stages if s["mean"] is not None}
    assert metrics["discovery/n_flagged_clusters"] == sum(
        bool(c["off_object"]) for e in v.discovery["clusters"].values() for c in e["clusters"])
    with pytest.raises(UsageError, match="summary.*full"):
        log_verdict(v, TrackingOptions(uri=gate["uri"], detail="everything"))


def test_cli_mlflow_detail(gate, capsys):
    from cli_helpers import run_cli

    v, client = gate["verdict"], gate["client"]
    counts = {}
    for detail in ("summary", "full"):
        out = gate["root"] / f"cli-{detail}"
        result = run_cli(capsys, "audit", v.model, "--data", v.data, "--policy", gate["root"] / "policy.yaml",
                         "--out", out, "--tracking-uri", gate["uri"], "--experiment", "cli-detail",
                         "--mlflow-detail", detail, "-q")
        assert result.exit_code == 0, result.err
        run_id = json.loads((out / "verdict.json").read_text())["tracking"]["run_id"]
        counts[detail] = set(client.get_run(run_id).data.metrics)
    assert counts["summary"] < counts["full"] and len(counts["summary"]) <= 53
    assert "lift_mean/class_disc_lo" in counts["full"] - counts["summary"]
    assert run_cli(capsys, "audit", v.model, "--data", v.data, "--mlflow-detail", "all").exit_code == 2


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
    assert training.data.tags["camgate.status"] == "PASS" and "check/lift-seen/pass" in training.data.metrics
    assert "mlflow.note.content" not in training.data.tags  # a training run's description is left alone
    assert training.info.run_name == active.info.run_name  # camgate renames only the runs it created


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


# ---- bounded whatever the number of classes -------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_audit(tmp_path_factory):
    """A real audit under the shipped default policy (probes on; sample minimums lowered for 40 images), no MLflow."""
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    root = tmp_path_factory.mktemp("default_audit")
    data = write_dataset(root / "data", 40, seed=3)
    keras.utils.set_random_seed(0)
    build_small_cnn(64, 2).save(root / "tiny.keras")
    text = (Path(__file__).resolve().parent.parent / "validator/policies/default.yaml").read_text()
    (root / "policy.yaml").write_text(text.replace("min_samples: 100", "min_samples: 10")
                                      .replace("min_per_class: 30", "min_per_class: 5"))
    verdict = audit(root / "tiny.keras", data.coco_path, policy=root / "policy.yaml", out=root / "report")
    assert verdict.status != "ERROR", verdict.error
    return {"root": root, "verdict": verdict, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _with_classes(verdict, n_classes: int, per_class: int = 30, small: int = 0):
    """``verdict`` re-judged under its policy on its rows resampled into ``n_classes`` classes of ``per_class``
    (the last one of ``small`` rows when given: below min_per_class, NOT_JUDGED). Cheap: the summary holds
    the policy's metrics only, 50 resamples."""
    import dataclasses

    from validator.policy import evaluate, gate_status, load_policy
    from validator.stats import summarize

    policy = load_policy(verdict.policy["content"])
    names = [f"k{i:03d}" for i in range(n_classes)]
    sizes = dict.fromkeys(names, per_class) | ({names[-1]: small} if small else {})
    n = sum(sizes.values())
    rows = np.random.default_rng(n_classes).integers(0, len(verdict.table["class_name"]), n)
    table = {k: np.asarray(col)[rows] for k, col in verdict.table.items()}
    table["class_name"] = np.array([c for c in names for _ in range(sizes[c])], dtype=object)
    table["sample_id"] = np.array([f"s{i:05d}" for i in range(n)], dtype=object)
    data = {"n_read": n, "n_skipped_read": 0, "n_selected": n, "n_skipped_selected": 0, "n_out_of_scope": 0,
            "n_with_box": n, "available_per_class": sizes}
    results = evaluate(policy, table, data_summary=data, seed=0)
    slices = {"overall": np.ones(n, bool)} | {f"class={c}": table["class_name"] == c for c in names}
    metrics = sorted({c.metric for c in policy.checks if c.metric in table} | {"lift", "correct"})
    summary = summarize(table, metrics=metrics, slices=slices, seed=0, n_resamples=50)
    status = gate_status(results)
    not_judged = [c for c in names if sizes[c] < policy.sample.min_per_class]
    return dataclasses.replace(verdict, checks=[r.to_dict() for r in results], summary=summary, table=table,
                               status=status, exit_code={"PASS": 0, "WARN": 0, "FAIL": 1}.get(status, 4),
                               sample={**verdict.sample, "class_names": names, "n_explained": n,
                                       "not_judged_classes": not_judged}, tracking={})


@pytest.mark.parametrize("n_classes", [3, 80])
def test_metric_count_is_bounded_whatever_the_number_of_classes(default_audit, n_classes, monkeypatch):
    import mlflow

    verdict = _with_classes(default_audit["verdict"], n_classes, small=3 if n_classes == 80 else 0)  # min_per_class: 5
    log_verdict(verdict, TrackingOptions(uri=default_audit["uri"], experiment=f"classes-{n_classes}"))
    client = mlflow.MlflowClient(default_audit["uri"])
    run = client.get_run(verdict.tracking["run_id"])
    metrics = run.data.metrics
    ids = {c["check_id"] for c in verdict.checks}
    assert len(ids) == 16  # 13 policy checks and 3 data checks
    # bounded by the policy, not the classes: value, threshold and pass per check, failing_slices for the
    # two per-class checks (class-object-heat, data.min_per_class), 3 headline numbers: 53 for the default
    # policy (issue 23's "~50")
    assert len(metrics) <= 3 * len(ids) + 2 + 3 == 53, (n_classes, len(metrics))
    assert {k.split("/")[1] for k in metrics if k.startswith("check/")} == ids
    assert set(metrics) - {k for k in metrics if k.startswith("check/")} <= {"gate/ok", "gate/status_code",
                                                                              "lift_mean/overall"}
    class_rows = [c for c in verdict.checks if c["check_id"] == "class-object-heat"]
    assert len(class_rows) == n_classes
    if n_classes == 80:  # the small class: NOT_JUDGED, named in a tag, not counted as failing
        assert run.data.tags["camgate.not_judged_classes"] == "k079"
        assert [c["outcome"] for c in class_rows if c["slice"] == "class=k079"] == ["NOT_JUDGED"]
    assert metrics["check/class-object-heat/failing_slices"] == sum(
        c["outcome"] in ("WARN", "FAIL", "INCONCLUSIVE") for c in class_rows)
    assert run.info.run_name.startswith(f"{verdict.status} · tiny · default v")
    # the per-class statistics are a table, not metrics
    monkeypatch.setattr("mlflow.tracking.fluent._active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", run.info.experiment_id)
    mlflow.set_tracking_uri(default_audit["uri"])
    try:
        slices = mlflow.load_table("camgate/slices.json", run_ids=[run.info.run_id])
        checks = mlflow.load_table("camgate/checks.json", run_ids=[run.info.run_id])
    finally:
        mlflow.set_tracking_uri(None)
    assert len({s for s in slices["slice"] if s.startswith("class=")}) == n_classes
    assert (checks["check_id"] == "class-object-heat").sum() == n_classes
