"""Heatmap engine: oracle identities on GAP->Dense models, batching, nested models, logits, a trained model."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model

from validator._tf import keras
from validator.errors import ModelUsageError, UsageError
from validator.explain import DeadMapWarning, Explainer, heatmaps


def hand_cam(model, images, class_ids, layer="feat", head="head"):
    """CAM by hand: sum_k w_k^c A^k from the layer activations and the Dense kernel."""
    activations = keras.Model(model.inputs, model.get_layer(layer).output)(images).numpy()
    kernel = model.get_layer(head).kernel.numpy()
    return np.einsum("nhwk,kn->nhw", activations, kernel[:, class_ids])


def test_cam_equals_hand_computed_sum(gap_model, random_images):
    class_ids = np.array([0, 1, 2, 2, 1, 0])
    result = Explainer(gap_model, "cam").explain(random_images, class_ids)
    expected = np.maximum(hand_cam(gap_model, random_images, class_ids), 0)
    np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-4, atol=1e-4)


def test_gradcam_on_gap_head_is_cam_times_positive_constant(gap_model, random_images):
    # For GAP->Dense, dy/dA^k_xy = w_k / (h w): Grad-CAM = ReLU(CAM) / (h w), a positive scale of CAM.
    class_ids = np.array([2, 0, 1, 0, 2, 1])
    cam = np.maximum(hand_cam(gap_model, random_images, class_ids), 0)
    gradcam = Explainer(gap_model, "gradcam").explain(random_images, class_ids).layer_maps
    hw = cam.shape[1] * cam.shape[2]
    assert cam.max() > 0
    np.testing.assert_allclose(gradcam * hw, cam, rtol=1e-4, atol=1e-3)


def test_hirescam_on_gap_head_is_cam_over_hw(gap_model, random_images):
    class_ids = np.array([1, 1, 0, 2, 2, 0])
    cam = np.maximum(hand_cam(gap_model, random_images, class_ids), 0)
    hires = Explainer(gap_model, "hirescam").explain(random_images, class_ids).layer_maps
    np.testing.assert_allclose(hires, cam / (16 * 16), rtol=1e-4, atol=1e-5)


def per_image_gradcam(model, image, class_id):
    """Independent per-image Grad-CAM (the seed thesis' loop): pre-softmax logit, numpy weighting."""
    from validator._tf import tf

    feature_model = keras.Model(model.inputs, [model.get_layer("feat").output, model.get_layer("head").output])
    head = model.get_layer("head")
    saved = head.activation
    head.activation = keras.activations.linear
    try:
        with tf.GradientTape() as tape:
            activations, logits = feature_model(image[None])
            score = logits[0, class_id]
        grads = tape.gradient(score, activations).numpy()[0]
    finally:
        head.activation = saved
    weights = grads.mean(axis=(0, 1))
    return np.maximum((activations.numpy()[0] * weights).sum(-1), 0)


@pytest.mark.parametrize("batch_size", [1, 4, 32])
def test_batched_gradcam_with_mixed_classes_equals_per_image_loop(random_images, batch_size):
    model = build_gap_model(seed=3)
    class_ids = np.array([0, 2, 1, 0, 1, 2])
    batched = Explainer(model, "gradcam", batch_size=batch_size).explain(random_images, class_ids).layer_maps
    for i, (image, class_id) in enumerate(zip(random_images, class_ids, strict=True)):
        np.testing.assert_allclose(batched[i], per_image_gradcam(model, image, class_id), atol=1e-5)


def test_maps_are_at_input_resolution_nonnegative_and_not_normalised(gap_model, random_images):
    result = Explainer(gap_model, "gradcam").explain(random_images, np.zeros(6, int))
    assert result.maps.shape == (6, 32, 32) and result.maps.dtype == np.float32
    assert (result.maps >= 0).all()
    # Not min-max normalised: the maximum is the layer map's scale, not 1.
    assert not np.allclose(result.maps.reshape(6, -1).max(axis=1), 1.0)
    # Bilinear upsampling of the layer map: the mean is preserved to within edge effects.
    np.testing.assert_allclose(result.maps.mean(axis=(1, 2)), result.layer_maps.mean(axis=(1, 2)), rtol=0.1)


def test_gradcampp_is_a_nonnegative_combination_of_channels(gap_model, random_images):
    # For GAP->Dense, gradients are constant per channel (w_k/hw): Grad-CAM++ weights reduce to
    # relu(w_k) * alpha with alpha = g^2 / (2 g^2 + sum_A g^3), computed here by hand.
    class_ids = np.array([0, 1, 2, 0, 1, 2])
    activations = keras.Model(gap_model.inputs, gap_model.get_layer("feat").output)(random_images).numpy()
    kernel = gap_model.get_layer("head").kernel.numpy()
    g = kernel[:, class_ids].T[:, None, None, :] / 256.0 * np.ones_like(activations)
    alpha = g**2 / (2 * g**2 + activations.sum(axis=(1, 2), keepdims=True) * g**3 + 1e-7)
    alpha = np.where(g != 0, alpha, 0)
    weights = (np.maximum(g, 0) * alpha).sum(axis=(1, 2))
    expected = np.maximum(np.einsum("nhwk,nk->nhw", activations, weights), 0)
    result = Explainer(gap_model, "gradcampp").explain(random_images, class_ids)
    np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-3, atol=1e-6)


def test_separate_softmax_layer_is_bypassed(random_images):
    fused = build_gap_model(seed=5)
    split = build_gap_model(seed=5, separate_activation=True)
    class_ids = np.array([0, 1, 2, 0, 1, 2])
    a = Explainer(fused, "gradcam").explain(random_images, class_ids)
    b = Explainer(split, "gradcam").explain(random_images, class_ids)
    np.testing.assert_allclose(a.layer_maps, b.layer_maps, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(a.probabilities, b.probabilities, rtol=1e-5)
    assert fused.get_layer("head").activation.__name__ == "softmax"  # restored after tracing


def test_sigmoid_head_explains_plus_and_minus_logit(random_images):
    model = build_gap_model(classes=1, activation="sigmoid", seed=2)
    activations = keras.Model(model.inputs, model.get_layer("feat").output)(random_images).numpy()
    w = model.get_layer("head").kernel.numpy()[:, 0]
    explainer = Explainer(model, "cam")
    assert explainer.loaded.num_classes == 2
    positive = explainer.explain(random_images, np.ones(6, int)).layer_maps
    negative = explainer.explain(random_images, np.zeros(6, int)).layer_maps
    np.testing.assert_allclose(positive, np.maximum(activations @ w, 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(negative, np.maximum(-(activations @ w), 0), rtol=1e-4, atol=1e-4)
    gradcam_negative = Explainer(model, "gradcam").explain(random_images, np.zeros(6, int)).layer_maps
    np.testing.assert_allclose(gradcam_negative * 256, np.maximum(-(activations @ w), 0), rtol=1e-3, atol=1e-3)


def test_nested_backbone_inside_sequential(random_images):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="backbone_out")(x)
    backbone = keras.Model(inputs, x, name="backbone")
    model = keras.Sequential(
        [keras.Input((32, 32, 3)), backbone, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="head")]
    )
    explainer = Explainer(model, "cam")
    assert explainer.target.name == "backbone_out"
    class_ids = np.array([0, 1, 1, 0, 1, 0])
    activations = backbone(random_images).numpy()
    kernel = model.get_layer("head").kernel.numpy()
    expected = np.maximum(np.einsum("nhwk,kn->nhw", activations, kernel[:, class_ids]), 0)
    np.testing.assert_allclose(explainer.explain(random_images, class_ids).layer_maps, expected, rtol=1e-4, atol=1e-4)
    gradcam = Explainer(model, "gradcam").explain(random_images, class_ids).layer_maps
    np.testing.assert_allclose(gradcam * 256, expected, rtol=1e-3, atol=1e-3)


def test_cam_refused_without_gap_dense_head(random_images):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu", name="feat")(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    with pytest.raises(ModelUsageError, match="GlobalAveragePooling2D -> Dense.*Flatten"):
        Explainer(model, "cam")
    maps = heatmaps(model, random_images, np.zeros(6, int), method="gradcam")
    assert maps.shape == (6, 32, 32)


def test_dead_maps_are_flagged(random_images):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    # A ReLU layer with a large negative bias: activations are all 0, so every map is dead.
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="feat", bias_initializer=keras.initializers.Constant(-1e6))(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    result = Explainer(model, "gradcam").explain(random_images, np.zeros(6, int))
    assert result.dead.all()
    with pytest.warns(DeadMapWarning, match="6 dead heatmap"):
        heatmaps(model, random_images, np.zeros(6, int))


def test_input_validation_errors(gap_model, random_images):
    explainer = Explainer(gap_model, "gradcam")
    with pytest.raises(UsageError, match="expects"):
        explainer.explain(random_images[:, :16], np.zeros(6, int))
    with pytest.raises(UsageError, match="class id 7"):
        explainer.explain(random_images, np.full(6, 7))
    with pytest.raises(UsageError, match="unknown method 'gradcamm'"):
        Explainer(gap_model, "gradcamm")


def make_object_images(n, seed):
    """32x32 noise; a 10x10 square whose colour (red/blue) is the class. Returns images, labels, boxes."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n, 32, 32, 3)) * 120).astype(np.float32)
    labels = rng.integers(0, 2, n)
    boxes = np.zeros((n, 4))
    for i in range(n):
        x, y = rng.integers(0, 22, 2)
        images[i, y : y + 10, x : x + 10] = [230, 40, 40] if labels[i] else [40, 40, 230]
        boxes[i] = (x, y, x + 10, y + 10)
    return images, labels, boxes


def test_trained_model_puts_heat_on_the_object():
    model = build_gap_model(classes=2, seed=0)
    images, labels, _ = make_object_images(800, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images / 1.0, labels, epochs=4, batch_size=32, verbose=0)
    test_images, test_labels, boxes = make_object_images(64, seed=1)
    result = Explainer(model, "gradcam").explain(test_images, test_labels)
    assert (result.predicted == test_labels).mean() >= 0.9
    inside = np.zeros_like(result.maps, dtype=bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        inside[i, y0:y1, x0:x1] = True
    energy = (result.maps * inside).sum(axis=(1, 2)) / result.maps.sum(axis=(1, 2))
    area = 100 / 1024
    assert np.median(energy) > 3 * area, f"in-box heat {np.median(energy):.2f} vs area {area:.2f}"
