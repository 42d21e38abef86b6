"""Score-CAM: a per-channel eager oracle, batching, the channel cap, the public API and a trained known answer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model

from validator._tf import keras, tf
from validator.errors import UsageError
from validator.explain import Explainer
from validator.explain.scorecam import max_channels_option

HEADS = {"softmax": {}, "logits": {"activation": "linear"}, "binary_sigmoid": {"activation": "sigmoid", "classes": 1}}


@pytest.fixture(scope="module")
def images():
    # 0..8: probabilities well away from 0 and 1, so the masked scores differ from channel to channel
    return (np.random.default_rng(1).random((6, 32, 32, 3)) * 8).astype(np.float32)


@pytest.fixture(scope="module")
def models():
    return {name: build_gap_model(seed=2, **kwargs) for name, kwargs in HEADS.items()}


def class_probabilities(model, x, head):
    """The class probabilities the paper scores: softmax of the outputs (logit head), [1 - p, p] (one sigmoid)."""
    out = model(x, training=False).numpy().astype(np.float64)
    if head == "logits":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        return out / out.sum(axis=1, keepdims=True)
    if head == "binary_sigmoid":
        return np.concatenate([1.0 - out, out], axis=1)
    return out


def oracle_scorecam(model, head, image, class_id, channels=None):
    """Score-CAM by the paper, one image and one channel at a time, eager: (layer map, map at input size)."""
    size = image.shape[:2]
    activations = keras.Model(model.inputs, model.get_layer("feat").output)(image[None]).numpy()[0]
    if channels is None:
        channels = range(activations.shape[-1])
    baseline = class_probabilities(model, np.zeros_like(image)[None], head)[0, class_id]
    layer_map = np.zeros(activations.shape[:2])
    for k in channels:
        up = tf.image.resize(activations[None, :, :, k, None], size, method="bilinear").numpy()[0]
        span = up.max() - up.min()
        mask = (up - up.min()) / span if span > 0 else np.zeros_like(up)
        weight = class_probabilities(model, (image * mask)[None], head)[0, class_id] - baseline
        layer_map += weight * activations[:, :, k]
    layer_map = np.maximum(layer_map, 0.0).astype(np.float32)
    full = tf.image.resize(layer_map[None, :, :, None], size, method="bilinear").numpy()[0, :, :, 0]
    return layer_map, np.maximum(full, 0.0)


def top_channels(model, image, count):
    """The ``count`` channels of the image's target activations with the largest spatial maximum."""
    activations = keras.Model(model.inputs, model.get_layer("feat").output)(image[None]).numpy()[0]
    return np.argsort(-activations.max(axis=(0, 1)), kind="stable")[:count]


@pytest.mark.parametrize("head", list(HEADS))
def test_batched_step_matches_per_channel_oracle(models, images, head):
    model = models[head]
    class_ids = np.array([0, 1, 0, 1, 1, 0]) if head == "binary_sigmoid" else np.array([0, 1, 2, 2, 1, 0])
    result = Explainer(model, "scorecam", batch_size=4).explain(images, class_ids)  # 2 batches, several chunks
    for i, (image, class_id) in enumerate(zip(images, class_ids, strict=True)):
        layer_map, full = oracle_scorecam(model, head, image, class_id)
        np.testing.assert_allclose(result.layer_maps[i], layer_map, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(result.maps[i], full, atol=1e-5, rtol=1e-4)
    assert result.maps.max() > 1e-3  # the oracle comparison is not between two zero maps
    assert (result.maps >= 0).all() and result.maps.dtype == np.float32


def test_batched_equals_one_at_a_time_and_traces_once(models, images):
    class_ids = np.array([2, 0, 1, 1, 2, 0])
    explainer = Explainer(models["softmax"], "scorecam", batch_size=32)
    together = explainer.explain(images, class_ids)
    alone = [explainer.explain(images[i : i + 1], class_ids[i : i + 1]) for i in range(len(images))]
    np.testing.assert_allclose(together.maps, np.concatenate([a.maps for a in alone]), atol=1e-6)
    np.testing.assert_allclose(together.probabilities, np.concatenate([a.probabilities for a in alone]), atol=1e-6)
    assert explainer._step.masked_scores.experimental_get_tracing_count() == 1
    assert explainer._step.record.experimental_get_tracing_count() == 1


def test_cap_at_or_above_k_is_uncapped_and_small_cap_keeps_top_channels(models, images):
    model, class_ids = models["softmax"], np.array([0, 1, 2, 0, 1, 2])
    uncapped = Explainer(model, "scorecam", options={"max_channels": None}).explain(images, class_ids).maps
    for cap in (0, 6, 100):  # feat has K = 6 channels
        capped = Explainer(model, "scorecam", options={"max_channels": cap}).explain(images, class_ids).maps
        np.testing.assert_array_equal(capped, uncapped)
    small = Explainer(model, "scorecam", options={"max_channels": 2}).explain(images, class_ids)
    for i, (image, class_id) in enumerate(zip(images, class_ids, strict=True)):
        layer_map, _ = oracle_scorecam(model, "softmax", image, class_id, top_channels(model, image, 2))
        np.testing.assert_allclose(small.layer_maps[i], layer_map, atol=1e-5, rtol=1e-4)
    assert not np.allclose(small.maps, uncapped)  # the cap did drop channels that mattered


@pytest.mark.parametrize("bad", [-1, 2.5, "8", True])
def test_max_channels_is_validated(gap_model, bad):
    with pytest.raises(UsageError, match="max_channels"):
        Explainer(gap_model, "scorecam", options={"max_channels": bad})
    assert max_channels_option(None) is None and max_channels_option(0) is None and max_channels_option(3) == 3


def test_public_api_maps_and_probabilities_match_gradcam(gap_model, random_images):
    class_ids = np.array([0, 1, 2, 0, 1, 2])
    result = Explainer(gap_model, method="scorecam").explain(random_images, class_ids)
    reference = Explainer(gap_model, method="gradcam").explain(random_images, class_ids)
    assert result.maps.shape == (6, 32, 32) and result.layer_maps.shape == (6, 16, 16)
    assert (result.maps >= 0).all()
    np.testing.assert_allclose(result.probabilities, reference.probabilities, atol=1e-5)
    np.testing.assert_array_equal(result.predicted, reference.predicted)
    assert Explainer(gap_model, method="scorecam").settings["options"] == {"max_channels": 64}


def square_images(count, seed):
    """Dark images with one bright 8x8 square in the left (class 0) or right (class 1) half, and its box."""
    rng = np.random.default_rng(seed)
    x = (rng.random((count, 32, 32, 3)) * 0.1).astype(np.float32)
    labels, boxes = rng.integers(0, 2, count), []
    for i, label in enumerate(labels):
        top, left = rng.integers(0, 25), rng.integers(0, 9) + 16 * label
        x[i, top : top + 8, left : left + 8] = 1.0
        boxes.append((top, left))
    return x, labels.astype(np.int32), boxes


def test_trained_left_right_model_puts_the_heat_on_the_square():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    train, labels, _ = square_images(256, seed=0)
    model.fit(train, labels, epochs=4, batch_size=32, verbose=0)

    test, test_labels, boxes = square_images(16, seed=1)
    result = Explainer(model, "scorecam", layer="feat").explain(test, test_labels)
    assert (result.predicted == test_labels).mean() >= 0.9 and not result.dead.any()
    inside_share = []
    for heat, (top, left) in zip(result.maps, boxes, strict=True):
        box = np.zeros(heat.shape, bool)
        box[top : top + 8, left : left + 8] = True
        inside_share.append(heat[box].mean() / max(heat[~box].mean(), 1e-12))
    # per pixel, the square holds several times the heat of the background (about 13x when written)
    assert np.median(inside_share) > 5.0
