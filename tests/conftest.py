"""Shared fixtures. Tiny Keras models are built or trained once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from controls_fixtures import *  # noqa: E402,F403  (control models and held-out sets)


def build_gap_model(input_size=32, classes=3, activation="softmax", seed=0, separate_activation=False):
    """Conv -> Conv(feat, stride 2) -> GAP -> Dense: CAM applies, feature map 16x16 at 32 px."""
    from validator._tf import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    if separate_activation:
        x = keras.layers.Dense(classes, name="head")(x)
        outputs = keras.layers.Activation(activation, name="prob")(x)
    else:
        outputs = keras.layers.Dense(classes, activation=activation, name="head")(x)
    return keras.Model(inputs, outputs, name="gap_model")


@pytest.fixture(scope="session")
def gap_model():
    return build_gap_model()


@pytest.fixture(scope="session")
def random_images():
    rng = np.random.default_rng(0)
    return (rng.random((6, 32, 32, 3)) * 255).astype(np.float32)


@pytest.fixture()
def isolated_cwd(tmp_path, monkeypatch):
    """Run in a temporary folder: nothing MLflow writes by default (./mlflow.db, ./mlruns) lands in the repo."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def small_set(tmp_path_factory):
    """40 annotated shapes (seed 3) shared by the gate tests."""
    from validator.datasets.synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("gate_data"), 40, seed=3)


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory):
    """The small control CNN, untrained: any readable model for tests of the gate's plumbing."""
    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("gate_model") / "untrained.keras"
    build_small_cnn(64, 2).save(path)
    return path
