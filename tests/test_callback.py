"""CamGateCallback: the gate runs on the in-memory model during training and logs into the training run."""

from __future__ import annotations

import pytest

from validator.callback import CamGateCallback, GateFailedError
from validator.tracking import TrackingOptions

POLICY = """name: callback-pass
version: 1
sample: {max_samples: 24, seed: 0, min_samples: 10, min_per_class: 5}
checks:
  - {id: dead-maps, metric: dead, aggregate: rate, bound: point, max: 1.0, severity: fail}
"""
FAIL_POLICY = POLICY.replace("callback-pass", "callback-strict") + (
    "  - {id: impossible-heat, metric: lift, aggregate: mean, bound: lower, min: 1000, severity: fail}\n"
)

# Decided by the weights audited: an untrained 2-class model is at chance, the trained clean control is not.
ACCURACY_POLICY = POLICY.replace("callback-pass", "callback-accuracy") + (
    "  - {id: accuracy, metric: correct, aggregate: rate, bound: point, min: 0.8, severity: fail}\n"
)


pytestmark = pytest.mark.usefixtures("isolated_cwd")


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    from validator.datasets.synthetic import make_arrays, write_dataset

    root = tmp_path_factory.mktemp("callback")
    arrays = make_arrays(32, seed=7)
    (root / "pass.yaml").write_text(POLICY)
    (root / "fail.yaml").write_text(FAIL_POLICY)
    (root / "accuracy.yaml").write_text(ACCURACY_POLICY)
    return {"root": root, "x": arrays.images.astype("float32"), "y": arrays.labels,
            "heldout": write_dataset(root / "heldout", 24, seed=8).coco_path,
            "uri": f"sqlite:///{root / 'mlflow.db'}"}


def _model():
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn

    keras.utils.set_random_seed(0)
    model = build_small_cnn(64, 2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def tracking_uri(training):
    import mlflow

    mlflow.set_tracking_uri(training["uri"])
    yield training["uri"]
    mlflow.set_tracking_uri(None)


def test_gate_metrics_logged_into_the_training_run_with_steps(training, tracking_uri):
    import mlflow

    gate = CamGateCallback(data=training["heldout"], policy=training["root"] / "pass.yaml", every_n_epochs=1,
                           out=training["root"] / "final")
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_param("seed", 0)  # the training's own params are not disturbed by the gate's
        _model().fit(training["x"], training["y"], epochs=2, batch_size=16, verbose=0, callbacks=[gate])
    assert gate.verdict.status == "PASS" and gate.verdict.tracking["run_id"] == run.info.run_id
    assert [(h["epoch"], h["final"]) for h in gate.history] == [(0, False), (1, True)]
    assert all("lift_mean/overall" in h["metrics"] for h in gate.history)

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    history = client.get_metric_history(run.info.run_id, "lift_mean/overall")
    assert [m.step for m in history] == [0, 1]
    assert [m.value for m in history] == pytest.approx([h["metrics"]["lift_mean/overall"] for h in gate.history])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "gate/ok")] == [0, 1]
    logged = client.get_run(run.info.run_id)
    assert logged.data.tags["camgate.status"] == "PASS"
    assert logged.data.params["seed"] == "0" and logged.data.params["camgate.seed"] == "0"
    assert logged.info.status == "FINISHED" and logged.info.run_name == "train"  # the training run keeps its name
    assert all(h["metrics"]["check/dead-maps/pass"] == 1.0 for h in gate.history)
    assert len(logged.data.metrics) <= 53 + 2  # the gate's bounded set beside the training's loss and accuracy
    paths = [f.path for f in client.list_artifacts(run.info.run_id, "camgate")]
    assert "camgate/verdict.json" in paths
    assert client.search_runs([logged.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'") == []
    assert (training["root"] / "final" / "verdict.json").exists()


def test_nested_gate_run_and_fail_training(training, tracking_uri):
    import mlflow

    gate = CamGateCallback(data=training["heldout"], policy=training["root"] / "fail.yaml", every_n_epochs=1,
                           fail_training=True, out=training["root"] / "nested",
                           tracking=TrackingOptions(nested_in_active_run=True))
    with mlflow.start_run(run_name="train-nested") as run, pytest.raises(GateFailedError, match="FAIL") as info:
        _model().fit(training["x"], training["y"], epochs=2, batch_size=16, verbose=0, callbacks=[gate])
    assert info.value.verdict is gate.verdict and gate.verdict.status == "FAIL"
    child_id = gate.verdict.tracking["run_id"]
    assert child_id != run.info.run_id
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert child.data.tags["camgate.status"] == "FAIL" and child.info.status == "FINISHED"
    assert child.info.run_name.startswith("FAIL · ")  # named after the final verdict
    assert [m.step for m in client.get_metric_history(child_id, "lift_mean/overall")] == [0, 1]


def test_no_tracking_audits_the_in_memory_model(training):
    gate = CamGateCallback(data=training["heldout"], policy=training["root"] / "pass.yaml", tracking=None,
                           out=training["root"] / "untracked")
    _model().fit(training["x"], training["y"], epochs=1, batch_size=16, verbose=0, callbacks=[gate])
    assert gate.verdict.status == "PASS" and gate.verdict.tracking == {}
    assert gate.verdict.model == "small_cnn" and len(gate.history) == 1


def test_each_audit_judges_the_weights_the_model_has_then(training, clean_model):
    """Epoch 0 audits freshly initialised weights (accuracy FAIL); the last epoch ends with the trained clean
    control's weights (PASS). A callback that audited a copy taken before training, or an explainer that kept
    the first weights it saw, would judge both audits alike."""
    from validator._tf import keras
    from validator.model import load_model

    trained = load_model(clean_model.path).model
    keras.utils.set_random_seed(0)
    model = keras.models.clone_model(trained)  # the same layers, freshly initialised
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="sparse_categorical_crossentropy")

    class Learn(keras.callbacks.Callback):
        """fit itself changes nothing (learning rate 0); the last epoch ends with the trained weights."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == self.params["epochs"] - 1:
                self.model.set_weights(trained.get_weights())

    gate = CamGateCallback(data=training["heldout"], policy=training["root"] / "accuracy.yaml", every_n_epochs=1,
                           tracking=None, out=training["root"] / "learned")
    model.fit(training["x"], training["y"], epochs=2, batch_size=16, verbose=0, callbacks=[Learn(), gate])
    assert [(h["epoch"], h["status"]) for h in gate.history] == [(0, "FAIL"), (1, "PASS")]
    (accuracy,) = [c for c in gate.verdict.checks if c["check_id"] == "accuracy"]
    assert accuracy["outcome"] == "PASS" and accuracy["observed"] >= 0.8
