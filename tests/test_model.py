"""Model loading and introspection: formats, safe mode, target layer search, head detection."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model

from validator._tf import keras
from validator.errors import ModelError, ModelUsageError
from validator.model import candidate_layers, find_target_layer, load_model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_saved_model_file_round_trips_with_same_predictions(tmp_path, gap_model, random_images, suffix):
    path = tmp_path / f"clf{suffix}"
    gap_model.save(path)
    loaded = load_model(path)
    assert loaded.input_size == (32, 32) and loaded.num_classes == 3 and loaded.head_activation == "softmax"
    assert loaded.name == "clf"
    np.testing.assert_allclose(loaded.model.predict(random_images, verbose=0), gap_model.predict(random_images, verbose=0), rtol=1e-5)


def test_directory_holding_a_keras_file_is_loaded(tmp_path, gap_model):
    (tmp_path / "m").mkdir()
    gap_model.save(tmp_path / "m" / "model.keras")
    assert load_model(tmp_path / "m").num_classes == 3


def test_tf_savedmodel_export_gets_an_actionable_error(tmp_path, gap_model):
    gap_model.export(tmp_path / "exported", verbose=False)
    with pytest.raises(ModelUsageError, match=r"SavedModel export.*model.save\('model.keras'\)"):
        load_model(tmp_path / "exported")


def lambda_model():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_model_refused_without_opt_in(tmp_path, suffix):
    path = tmp_path / f"lam{suffix}"
    lambda_model().save(path)
    with pytest.raises(ModelUsageError, match="Lambda.*--trust-model"):
        load_model(path)


def test_lambda_model_loads_with_trust(tmp_path):
    path = tmp_path / "lam.keras"
    lambda_model().save(path)
    assert load_model(path, trust=True).num_classes == 2


def test_missing_corrupt_and_unsupported_files(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        load_model(tmp_path / "nope.keras")
    corrupt = tmp_path / "bad.keras"
    corrupt.write_bytes(b"not a zip at all")
    with pytest.raises(ModelError, match="bad.keras"):
        load_model(corrupt)
    other = tmp_path / "m.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelUsageError, match="unsupported model file"):
        load_model(other)


def test_no_conv_layer_is_a_clear_error():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ModelUsageError, match="no convolutional feature map"):
        find_target_layer(model)


def test_one_by_one_logits_conv_is_not_chosen():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="feat")(inputs)
    x = keras.layers.MaxPooling2D(16, name="pool")(x)  # 1x1 spatial
    x = keras.layers.Conv2D(2, 1, name="logits_conv")(x)
    model = keras.Model(inputs, keras.layers.Flatten()(x))
    assert "logits_conv" not in [layer.name for layer in candidate_layers(model)]
    assert find_target_layer(model).name == "feat"


def test_wrong_layer_name_lists_candidates(gap_model):
    with pytest.raises(ModelUsageError, match=r"no layer named 'conv5'.*candidates: c1, feat"):
        find_target_layer(gap_model, "conv5")
    with pytest.raises(ModelUsageError, match="not a spatial feature map"):
        find_target_layer(gap_model, "head")
    assert find_target_layer(gap_model, "c1").name == "c1"


def test_sigmoid_head_is_binary():
    loaded = load_model(build_gap_model(classes=1, activation="sigmoid"))
    assert loaded.binary_sigmoid and loaded.num_classes == 2 and loaded.head_activation == "sigmoid"


def test_separate_activation_layer_detected():
    loaded = load_model(build_gap_model(separate_activation=True))
    assert loaded.head_activation == "softmax" and loaded.extra["head_layer"] == "prob"


def test_variable_input_size_is_refused():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(ModelUsageError, match="any image size"):
        load_model(model)
