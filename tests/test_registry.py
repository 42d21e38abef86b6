"""Models from the MLflow registry: load by URI (safe mode), tag the audited version, move an alias only on PASS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import run_cli

from validator.errors import ModelUsageError
from validator.mlflow_models import RegistryNotFoundError, load_mlflow_model, parse_model_uri

PASS_POLICY = """name: registry-pass
version: 1
sample: {max_samples: 30, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
"""
# The same checks plus one no model can meet: the version audited under it FAILs.
FAIL_POLICY = PASS_POLICY.replace("registry-pass", "registry-strict") + (
    "  - {id: impossible-heat, metric: lift, aggregate: mean, bound: lower, min: 1000, severity: fail}\n"
)


pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A SQLite store with registered model `shapes`: versions 1 and 2 (different weights)."""
    import mlflow
    import mlflow.keras

    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    data = write_dataset(root / "data", 30, seed=4, formats=("coco", "csv"))
    (root / "pass.yaml").write_text(PASS_POLICY)
    (root / "fail.yaml").write_text(FAIL_POLICY)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("training", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_tracking_uri(uri)
    runs, weights = [], []
    try:
        for seed in (1, 2):
            keras.utils.set_random_seed(seed)
            model = build_small_cnn(64, 2)
            weights.append(model.get_weights())
            with mlflow.start_run(experiment_id=experiment) as run:
                mlflow.keras.log_model(model, name="model", registered_model_name="shapes",
                                       pip_requirements=["keras"])  # skips the slow requirement inference
            runs.append(run.info.run_id)
    finally:
        mlflow.set_tracking_uri(None)
    return {"root": root, "uri": uri, "client": client, "data": data.coco_path, "runs": runs, "weights": weights}


def test_parse_model_uris():
    assert parse_model_uri("models:/shapes/3").version == "3"
    ref = parse_model_uri("models:/shapes@champion")
    assert (ref.name, ref.alias, ref.version) == ("shapes", "champion", None)
    assert parse_model_uri("models:/m-0123456789abcdef").model_id == "m-0123456789abcdef"
    assert parse_model_uri("runs:/abc/model") is None and parse_model_uri("model.keras") is None


def test_load_by_version_and_run_uri_keeps_weights(registry, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    by_version = load_mlflow_model("models:/shapes/2")
    by_run = load_mlflow_model(f"runs:/{registry['runs'][0]}/model")
    for got, want in ((by_version, registry["weights"][1]), (by_run, registry["weights"][0])):
        for a, b in zip(got.get_weights(), want, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(RegistryNotFoundError, match="no alias @nobody"):
        load_mlflow_model("models:/shapes@nobody")


def test_lambda_model_refused_without_trust(registry, monkeypatch):
    import mlflow
    import mlflow.keras

    from validator._tf import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Conv2D(2, 3)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    with mlflow.start_run(experiment_id=registry["client"].get_experiment_by_name("training").experiment_id) as run:
        mlflow.keras.log_model(keras.Model(inputs, outputs), name="model", pip_requirements=["keras"])
    with pytest.raises(ModelUsageError, match="--trust-model"):
        load_mlflow_model(f"runs:/{run.info.run_id}/model")


def test_alias_moves_only_for_the_passing_version(registry, capsys, monkeypatch):
    root, client = registry["root"], registry["client"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])

    def audit(version, policy, *extra):
        out = root / f"report-v{version}-{policy}"
        result = run_cli(capsys, "audit", f"models:/shapes/{version}", "--data", registry["data"],
                         "--policy", root / f"{policy}.yaml", "--promote", "champion", "--out", out, "-q", *extra)
        return result, json.loads((out / "verdict.json").read_text())

    result, v1 = audit(1, "pass")
    assert result.exit_code == 0, result.err
    assert str(client.get_model_version_by_alias("shapes", "champion").version) == "1"
    assert v1["tracking"]["promotion"]["result"] == "champion moved to version 1"

    # Version 2 fails its gate: the alias stays; the baseline resolves through the same alias.
    result, v2 = audit(2, "fail", "--baseline", "models:/shapes@champion")
    assert result.exit_code == 1, result.err
    assert str(client.get_model_version_by_alias("shapes", "champion").version) == "1"
    assert v2["tracking"]["promotion"]["moved"] is False
    assert "stays at version 1" in v2["tracking"]["promotion"]["result"]
    assert v2["tracking"]["baseline_version"] == {"name": "shapes", "version": "1"}

    for version, status, verdict in (("1", "PASS", v1), ("2", "FAIL", v2)):
        model_version = client.get_model_version("shapes", version)
        tags = model_version.tags
        assert tags["camgate.status"] == status
        assert tags["camgate.run_id"] == verdict["tracking"]["run_id"]
        assert tags["camgate.policy_hash"] == verdict["policy"]["hash"]
        run = client.get_run(verdict["tracking"]["run_id"])
        assert run.data.tags["camgate.model_version"] == f"shapes/{version}"
        policy = "registry-pass" if status == "PASS" else "registry-strict"
        assert run.info.run_name == f"{status} · shapes-v{version} · {policy} v1"
        # the version's MLflow 3 logged model: an input of the gate run, tagged like the version
        model_id = parse_model_uri(model_version.source).model_id  # MLflow 3.17 leaves .model_id empty
        assert model_id and verdict["tracking"]["model_id"] == model_id
        assert [m.model_id for m in run.inputs.model_inputs] == [model_id]
        assert len(run.inputs.dataset_inputs) == 1
    # several gate runs link the same logged model: it carries the latest verdict
    logged = client.get_logged_model(v2["tracking"]["model_id"])
    assert logged.tags["camgate.status"] == "FAIL" and logged.tags["camgate.run_id"] == v2["tracking"]["run_id"]
    assert "impossible-heat" in logged.tags["camgate.failed_checks"]

    # Audited by alias under the passing policy: version 2 passes now and takes the alias.
    client.set_registered_model_alias("shapes", "candidate", "2")
    out = root / "report-candidate"
    result = run_cli(capsys, "audit", "models:/shapes@candidate", "--data", registry["data"], "--policy",
                     root / "pass.yaml", "--promote", "champion", "--out", out, "-q")
    assert result.exit_code == 0, result.err
    promotion = json.loads((out / "verdict.json").read_text())["tracking"]["promotion"]
    assert promotion == {"alias": "champion", "moved": True, "model": "shapes", "version": "2",
                         "previous_version": "1", "result": "champion moved to version 2 (was 1)"}
    assert str(client.get_model_version_by_alias("shapes", "champion").version) == "2"


def test_the_version_recorded_is_the_version_audited_even_if_the_alias_moves(registry, monkeypatch):
    """The alias is resolved once, when the model loads; moving it during the audit changes nothing recorded."""
    from validator import audit
    from validator.tracking import TrackingOptions

    root, client = registry["root"], registry["client"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    client.set_registered_model_alias("shapes", "moving", "1")

    def move_alias(done, total):
        client.set_registered_model_alias("shapes", "moving", "2")

    verdict = audit("models:/shapes@moving", str(registry["data"]), policy=str(root / "pass.yaml"),
                    out=root / "report-moving", progress=move_alias,
                    tracking=TrackingOptions(uri=registry["uri"]))
    assert verdict.status == "PASS", verdict.error
    assert str(client.get_model_version_by_alias("shapes", "moving").version) == "2"  # it did move
    assert verdict.tracking["model_version"] == {"name": "shapes", "version": "1"}
    assert client.get_model_version("shapes", "1").tags.get("camgate.run_id") == verdict.tracking["run_id"]
    assert client.get_model_version("shapes", "2").tags.get("camgate.run_id") != verdict.tracking["run_id"]


@pytest.mark.filterwarnings("ignore:Hint. Inferred schema contains integer:UserWarning")
def test_mlflow_evaluate_runs_the_gate(registry, monkeypatch):
    """The `camgate` evaluator plugin (entry point mlflow.model_evaluator) behind mlflow.models.evaluate."""
    import mlflow
    import pandas as pd

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    manifest = pd.read_csv(registry["data"].parent / "manifest.csv")
    manifest["image"] = [str(registry["data"].parent / p) for p in manifest["image"]]
    experiment = registry["client"].get_experiment_by_name("training").experiment_id
    with mlflow.start_run(experiment_id=experiment) as run:
        result = mlflow.models.evaluate(
            "models:/shapes/1", data=manifest, targets="label", model_type="classifier", evaluators="camgate",
            evaluator_config={"policy": str(registry["root"] / "pass.yaml"), "out": str(registry["root"] / "eval")},
        )
    assert result.metrics["gate/ok"] == 1.0 and "lift_mean/overall" in result.metrics
    logged = registry["client"].get_run(run.info.run_id)
    assert logged.data.tags["camgate.status"] == "PASS"
    assert logged.data.tags["camgate.source"] == "mlflow.evaluate"
    assert logged.data.metrics["lift_mean/overall"] == pytest.approx(result.metrics["lift_mean/overall"])
    assert set(result.metrics) <= set(logged.data.metrics) and len(logged.data.metrics) <= 53
    assert (registry["root"] / "eval" / "verdict.json").exists()
