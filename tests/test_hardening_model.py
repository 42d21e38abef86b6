"""Hardening of model loading and explaining: hook hygiene, head detection from outputs, safe loading of every
source (files, folders, MLflow), and the import layering of the model modules. Real tiny Keras models only."""

from __future__ import annotations

import ast
import contextlib
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from validator._tf import keras
from validator.errors import ModelError, ModelUsageError
from validator.explain import Explainer
from validator.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def images(n=6, size=16, seed=0):
    return (np.random.default_rng(seed).random((n, size, size, 3)) * 255).astype(np.float32)


def conv_trunk(inputs):
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c1")(x)
    return keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu", name="feat")(x)


# ------------------------------------------------------------------------------------------- 1. engine hooks


class Tripwire(keras.layers.Layer):
    """Identity; raises while ``armed`` (an error inside the traced model call)."""

    armed = False

    def call(self, x):
        if type(self).armed:
            raise RuntimeError("tripwire")
        return x


class Rendezvous(keras.layers.Layer):
    """Identity; while armed, the first tracer waits (at most 1 s) for a second one to be inside the model."""

    barrier: threading.Barrier | None = None

    def call(self, x):
        barrier = type(self).barrier
        if barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        return x


class StubbornDense(keras.layers.Dense):
    """A Dense head whose ``activation`` cannot be replaced while armed (a patch that fails half-way)."""

    armed = False

    def __setattr__(self, name, value):
        if name == "activation" and type(self).armed:
            raise RuntimeError("activation is read-only")
        super().__setattr__(name, value)


def hooked_model(extra_layer, head=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = extra_layer(conv_trunk(inputs))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = (head or keras.layers.Dense(3, activation="softmax", name="head"))(x)
    return keras.Model(inputs, outputs)


def assert_unhooked(model):
    for layer in model.layers:
        assert "call" not in layer.__dict__, f"hook left on {layer.name}.call"
    assert model.get_layer("head").activation.__name__ == "softmax"


def test_hooks_are_removed_after_an_error_inside_the_traced_call(monkeypatch):
    model = hooked_model(Tripwire(name="trip"))
    explainer = Explainer(model, "gradcam")
    monkeypatch.setattr(Tripwire, "armed", True)
    with pytest.raises(RuntimeError, match="tripwire"):
        explainer.explain(images(), np.zeros(6, int))
    assert_unhooked(model)
    monkeypatch.setattr(Tripwire, "armed", False)
    assert Explainer(model, "gradcam").explain(images(), np.zeros(6, int)).maps.shape == (6, 16, 16)


def test_hooks_are_removed_when_a_patch_fails_half_way(monkeypatch):
    model = hooked_model(keras.layers.Identity(name="same"),
                         head=StubbornDense(3, activation="softmax", name="head"))
    explainer = Explainer(model, "gradcam")
    monkeypatch.setattr(StubbornDense, "armed", True)
    with pytest.raises(RuntimeError, match="read-only"):
        explainer.explain(images(), np.zeros(6, int))
    assert explainer.target.name == "same"
    assert_unhooked(model)  # the target's hook, applied first, was undone too


def test_two_explainers_tracing_one_model_at_once_leave_no_hook(monkeypatch):
    model = hooked_model(Rendezvous(name="meet"), seed=4)
    batch, class_ids = images(seed=1), np.array([0, 1, 2, 0, 1, 2])
    reference = Explainer(model, "gradcam").explain(batch, class_ids)
    first, second = Explainer(model, "gradcam"), Explainer(model, "hirescam")
    expected_hires = Explainer(model, "hirescam").explain(batch, class_ids)
    monkeypatch.setattr(Rendezvous, "barrier", threading.Barrier(2, timeout=1.0))
    results, errors = {}, []

    def work(name, explainer):
        try:
            results[name] = explainer.explain(batch, class_ids)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=("gradcam", first)),
               threading.Thread(target=work, args=("hirescam", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert_unhooked(model)
    np.testing.assert_allclose(results["gradcam"].layer_maps, reference.layer_maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(results["hirescam"].layer_maps, expected_hires.layer_maps, rtol=1e-5, atol=1e-7)
    # The model still predicts probabilities after the explainers are done (the head is restored).
    np.testing.assert_allclose(model.predict(batch, verbose=0).sum(axis=1), 1.0, rtol=1e-5)


# -------------------------------------------------------------------------------------- 2. head detection


class SoftmaxInside(keras.layers.Layer):
    """A custom layer that applies softmax in its call: no ``activation`` attribute to switch off."""

    def call(self, x):
        return keras.ops.softmax(x, axis=-1)


def functional_head(units, after, seed=0, bias=None):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv_trunk(inputs))
    dense = keras.layers.Dense(units, name="head")
    logits = dense(x)
    if bias is not None:
        dense.bias.assign(np.full(units, bias, np.float32))
    return keras.Model(inputs, after(logits)), keras.Model(inputs, logits)


def hand_gradcam(logit_model, batch, class_ids, score):
    """Grad-CAM of ``score(logits)[n, class]`` on layer feat, computed independently of the engine."""
    from validator._tf import tf

    both = keras.Model(logit_model.inputs, [logit_model.get_layer("feat").output, logit_model.output])
    with tf.GradientTape() as tape:
        feat, logits = both(batch)
        chosen = tf.gather(score(logits), class_ids, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, feat).numpy()
    return np.maximum(np.einsum("nhwk,nk->nhw", feat.numpy(), grads.mean(axis=(1, 2))), 0)


@pytest.mark.parametrize("after", [lambda t: keras.ops.softmax(t), SoftmaxInside(name="probs")],
                         ids=["keras.ops.softmax", "custom-layer"])
def test_softmax_outside_a_layer_is_not_softmaxed_twice(after):
    from validator._tf import tf

    model, logit_model = functional_head(3, after, seed=2)
    batch, class_ids = images(seed=3), np.array([0, 1, 2, 2, 1, 0])
    explainer = Explainer(model, "gradcam")
    result = explainer.explain(batch, class_ids)
    predicted = model.predict(batch, verbose=0)
    np.testing.assert_allclose(result.probabilities, predicted, rtol=1e-5, atol=1e-6)  # not softmaxed again
    np.testing.assert_array_equal(result.predicted, predicted.argmax(axis=1))
    expected = hand_gradcam(logit_model, batch, class_ids, lambda z: tf.nn.log_softmax(z, axis=1))
    np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-4, atol=1e-6)
    loaded = explainer.loaded
    assert (loaded.head_activation, loaded.head_bypass, loaded.explained_score) == ("softmax", False, "log-probability")
    assert explainer.settings["score"] == "log-probability"


def test_one_unit_sigmoid_from_keras_ops_predicts_both_classes():
    model, logit_model = functional_head(1, lambda t: keras.ops.sigmoid(t), seed=5)
    batch = images(n=12, seed=7)
    # Centre the logits so that the images fall on both sides of 0.5.
    model.get_layer("head").bias.assign([-float(np.median(logit_model.predict(batch, verbose=0)))])
    p = model.predict(batch, verbose=0)[:, 0]
    truth = (p > 0.5).astype(int)
    assert 0 < truth.sum() < len(truth)
    explainer = Explainer(model, "gradcam")
    result = explainer.explain(batch, truth)
    np.testing.assert_array_equal(result.predicted, truth)  # both classes, not always class 1
    np.testing.assert_allclose(result.probabilities[:, 1], p, rtol=1e-5, atol=1e-6)
    # The explained score is the logit recovered from p: the same maps as the bare logit model's.
    bare = Explainer(logit_model, "gradcam").explain(batch, truth)
    np.testing.assert_allclose(result.layer_maps, bare.layer_maps, rtol=2e-3, atol=1e-6)
    loaded = explainer.loaded
    assert (loaded.head_activation, loaded.head_bypass, loaded.num_classes) == ("sigmoid", False, 2)


def test_layer_softmax_is_still_bypassed_and_a_second_softmax_is_detected():
    batch = images(seed=9)
    twice, _ = functional_head(3, lambda t: keras.ops.softmax(keras.layers.Softmax(name="soft")(t)))
    result = Explainer(twice, "gradcam").explain(batch, np.zeros(6, int))
    np.testing.assert_allclose(result.probabilities, twice.predict(batch, verbose=0), rtol=1e-5, atol=1e-6)
    loaded = load_model(twice)
    assert loaded.head_activation == "softmax" and not loaded.head_bypass
    fused = load_model(functional_head(3, lambda t: t)[0])
    assert fused.head_activation is None and fused.explained_score == "model output"
    model, _ = functional_head(3, keras.layers.Softmax(name="soft"))
    loaded = load_model(model)
    assert loaded.head_bypass and loaded.head_activation == "softmax" and loaded.explained_score == "logit"


# --------------------------------------------------------------------------------------- 3. safe loading


def lambda_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="lam")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="feat")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x)))


@keras.saving.register_keras_serializable(package="camgate_hardening")
class Doubler(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


DOUBLER_KEY = "camgate_hardening>Doubler"


def custom_layer_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = Doubler(name="doubler")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="feat")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_file_is_refused_naming_file_layer_and_flag(tmp_path, suffix):
    path = tmp_path / f"lam{suffix}"
    lambda_model().save(path)
    with pytest.raises(ModelUsageError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message and "layer 'lam'" in message and "Lambda" in message
    assert "--trust-model" in message
    assert load_model(path, trust=True).num_classes == 2


def test_custom_layer_unknown_to_this_process_is_refused_with_its_name(tmp_path, monkeypatch):
    path = tmp_path / "custom.keras"
    custom_layer_model().save(path)
    assert load_model(path).num_classes == 2  # registered here: Keras knows its code, nothing from the file
    monkeypatch.delitem(keras.saving.get_custom_objects(), DOUBLER_KEY)  # as in a gate that never imported it
    with pytest.raises(ModelUsageError, match=r"layer 'doubler' \(Doubler\).*not registered.*--trust-model"):
        load_model(path)
    with pytest.raises(ModelError):  # trusted, but Keras still cannot find the class
        load_model(path, trust=True)
    with keras.saving.custom_object_scope({DOUBLER_KEY: Doubler}):
        assert load_model(path).num_classes == 2


def test_configs_carrying_code_are_found():
    from validator.safe_load import find_unsafe

    def layer(name, **extra):
        return {"module": "keras.layers", "class_name": "Dense", "config": {"name": name, **extra}}

    assert find_unsafe({"class_name": "Functional", "config": {"name": "m", "layers": [layer("ok")]}}) == []
    found = find_unsafe({"config": {"layers": [
        layer("act", activation={"class_name": "__lambda__", "config": {"code": "..."}}),
        {"class_name": "Lambda", "config": {"name": "old", "function": ["...", None, None],
                                            "function_type": "lambda"}},
        {"module": "evil.payload", "class_name": "Boom", "config": {"name": "boom"}, "registered_name": "x>Boom"},
        layer("fn", activation={"module": "evil", "class_name": "function", "config": "run",
                                "registered_name": "function"}),
        {"class_name": "Conv2D", "config": {"name": "legacy_builtin"}},  # legacy .h5: no module, built in
    ]}})
    assert [(f.layer, f.class_name) for f in found] == [
        ("act", "__lambda__"), ("old", "Lambda"), ("boom", "Boom"), ("fn", "function")]


def save_mlflow_dir(model, path, data_name="data/net.v1"):
    """The MLflow Keras flavour's layout, with the model file not called model.keras (data: data/net.v1)."""
    import mlflow.keras
    import yaml

    mlflow.keras.save_model(model, str(path), pip_requirements=["keras"])
    (path / "data" / "model.keras").rename(path / f"{data_name}.keras")
    mlmodel = yaml.safe_load((path / "MLmodel").read_text())
    mlmodel["flavors"]["keras"]["data"] = data_name
    (path / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite MLflow store with one run whose artifact "model" is an MLflow model dir (file data/net.v1.keras)
    holding a custom layer, registered as model "hardening" version 1 with alias "champ"."""
    import mlflow

    root = tmp_path_factory.mktemp("hardening-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("hardening", artifact_location=(root / "artifacts").as_uri())
    local = save_mlflow_dir(custom_layer_model(), root / "local-model")
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("hardening")
    version = client.create_model_version("hardening", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("hardening", "champ", version.version)
    return {"uri": uri, "client": client, "run_id": run.info.run_id, "local": local, "version": version.version}


def test_mlflow_model_whose_file_is_not_model_keras_is_scanned(store, monkeypatch, isolated_cwd):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    monkeypatch.delitem(keras.saving.get_custom_objects(), DOUBLER_KEY)
    run_uri = f"runs:/{store['run_id']}/model"
    for source in (run_uri, "models:/hardening@champ", store["local"]):
        with pytest.raises(ModelUsageError) as caught:
            load_model(source)
        message = str(caught.value)
        assert "net.v1.keras" in message and "layer 'doubler'" in message and "--trust-model" in message
        assert str(source) in message


def test_registry_version_is_carried_on_the_loaded_model(store, monkeypatch, isolated_cwd):
    from validator import mlflow_models
    from validator.model_uri import registered_version

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    loaded = load_model("models:/hardening@champ")
    assert loaded.registry_version == {"name": "hardening", "version": str(store["version"])}
    assert loaded.num_classes == 2 and loaded.name == "hardening-champ"
    assert load_model(f"runs:/{store['run_id']}/model").registry_version is None
    assert not hasattr(mlflow_models, "_RESOLVED")  # no module-level cache of resolutions
    ref = registered_version("models:/hardening@champ", store["client"], resolved=loaded.registry_version)
    assert (ref.name, ref.version) == ("hardening", str(store["version"]))
    # Without the loaded version the URI is resolved now, as before (the same function tracking.py calls).
    again = mlflow_models.registered_version("models:/hardening@champ", store["client"])
    assert (again.name, again.version) == ("hardening", str(store["version"]))
    model = mlflow_models.load_mlflow_model("models:/hardening/1")
    assert isinstance(model, keras.Model)


# --------------------------------------------------------------------------------------------- 4. layering


def validator_imports(module: str) -> set[str]:
    """Every ``validator.*`` module a source file imports, at top level or inside functions."""
    tree = ast.parse((ROOT / "validator" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("validator"):
            found.add(node.module)
            if node.module == "validator":
                found.update(f"validator.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("validator"))
    return found


def test_model_modules_import_no_circle():
    assert validator_imports("safe_load") == {"validator.errors", "validator.limits"}
    assert validator_imports("limits") == {"validator.errors"}  # a leaf too: the bounds on hostile inputs
    assert validator_imports("layer_patch") == set()
    assert validator_imports("model_uri") == {"validator.errors", "validator.mlflow_plumbing"}  # both leaves
    model = validator_imports("model")
    assert not model & {"validator.mlflow_models", "validator.tracking", "validator.gate"}
    assert validator_imports("mlflow_models") <= {"validator.model_uri", "validator.model"}


def test_unreachable_tracking_server_is_retried_briefly_then_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("CAMGATE_MLFLOW_RETRY_SECONDS", "0.5")
    with pytest.raises(ModelError, match=r"models:/shapes/1.*http://127\.0\.0\.1:9 unreachable"):
        load_model("models:/shapes/1")


def test_keras_zip_with_lambda_under_another_name_in_a_folder_is_refused(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    custom_layer_model().save(folder / "model.keras")
    lambda_model().save(tmp_path / "lam.keras")
    (tmp_path / "lam.keras").rename(folder / "weights.bin")  # a .keras zip, whatever its name
    with zipfile.ZipFile(folder / "weights.bin") as archive:
        assert "Lambda" in json.dumps(json.loads(archive.read("config.json")))
    with pytest.raises(ModelUsageError, match=r"weights\.bin.*layer 'lam'"):
        load_model(folder)
    assert load_model(folder, trust=True).num_classes == 2
