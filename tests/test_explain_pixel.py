"""Pixel attributions: identities where they hold (saliency of a linear model, IG completeness, occlusion of an
ignored region), batched = per image, and the same probabilities as Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model


def _linear(seed=0):
    """y = W . flatten(x) + b: dy_c/dx = W[:, c] exactly."""
    from validator._tf import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(3, name="head")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def _left_half_reader():
    """Reads only columns 0..15 of a 32 px image: occluding the right half cannot change its score."""
    from validator._tf import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Cropping2D(((0, 0), (0, 16)))(inputs)
    x = keras.layers.Conv2D(4, 3, activation="tanh")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_saliency_of_a_linear_model_is_the_absolute_weights():
    from validator.explain import Explainer

    model = _linear()
    images = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    ids = np.array([0, 1, 2, 1])
    maps = Explainer(model, method="saliency").explain(images, ids).maps
    kernel = np.asarray(model.get_layer("head").kernel).reshape(8, 8, 3, 3)
    expected = np.abs(kernel[..., ids]).max(axis=2).transpose(2, 0, 1)
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)


def test_integrated_gradients_complete_exactly_on_a_linear_model_and_nearly_on_a_cnn(random_images):
    from validator.explain import Explainer

    images = np.random.default_rng(1).random((3, 8, 8, 3)).astype(np.float32)
    linear = Explainer(_linear(), method="integrated_gradients", options={"steps": 3}).explain(images, [0, 1, 2])
    np.testing.assert_allclose(linear.extra["completeness_gap"], 0.0, atol=1e-4)
    cnn = build_gap_model(activation=None)
    ids = np.arange(len(random_images)) % 3
    gaps = []
    for steps in (4, 64):
        result = Explainer(cnn, method="integrated_gradients", options={"steps": steps}).explain(random_images, ids)
        assert result.extra["completeness_gap"].shape == (len(random_images),)
        gaps.append(np.abs(result.extra["completeness_relative"]).mean())
    assert gaps[1] < 0.05 and gaps[1] <= gaps[0] + 1e-6, gaps


def test_occlusion_of_a_region_the_model_ignores_is_zero():
    from validator.explain import Explainer
    from validator.explain.pixel import occlusion_geometry

    images = np.random.default_rng(2).random((2, 32, 32, 3)).astype(np.float32) * 255
    options = {"patch": 0.25, "stride": 0.125}
    maps = Explainer(_left_half_reader(), method="occlusion", options=options).explain(images, [0, 1]).maps
    geometry = occlusion_geometry((32, 32), 0.25, 0.125)
    patch_w = geometry["patch"][1]
    # a column is untouched by any patch reaching the left half when every patch covering it starts at >= 16
    right = [c for c in range(32) if all(x0 >= 16 for x0 in geometry["starts_x"] if x0 <= c < x0 + patch_w)]
    assert right and min(right) >= 16
    assert np.all(maps[:, :, right] == 0.0)
    assert maps[:, :, :16].sum() > 0


def test_smoothgrad_without_noise_is_saliency_and_is_deterministic(random_images):
    from validator.explain import Explainer

    model = build_gap_model(activation=None)
    ids = np.arange(len(random_images)) % 3
    saliency = Explainer(model, method="saliency").explain(random_images, ids).maps
    quiet = Explainer(model, method="smoothgrad", options={"samples": 3, "noise": 0.0}).explain(random_images, ids)
    np.testing.assert_allclose(quiet.maps, saliency, rtol=1e-5, atol=1e-8)
    noisy = Explainer(model, method="smoothgrad", options={"samples": 4})
    np.testing.assert_array_equal(noisy.explain(random_images, ids).maps, noisy.explain(random_images, ids).maps)


@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "integrated_gradients", "occlusion"])
def test_batched_equals_per_image_and_probabilities_match_grad_cam(method, random_images):
    from validator.explain import Explainer

    model = build_gap_model()
    ids = np.arange(len(random_images)) % 3
    options = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}}.get(method, {})
    explainer = Explainer(model, method=method, options=options, batch_size=8)
    together = explainer.explain(random_images, ids)
    alone = np.concatenate([explainer.explain(random_images[i:i + 1], ids[i:i + 1]).maps for i in range(6)])
    np.testing.assert_allclose(together.maps, alone, rtol=1e-4, atol=1e-6)
    assert together.maps.shape == (6, 32, 32) and (together.maps >= 0).all()
    np.testing.assert_allclose(together.probabilities, Explainer(model).explain(random_images, ids).probabilities,
                               atol=1e-5)
    assert explainer.settings["layer"] is None  # pixel methods explain the input


def test_bad_options_are_refused_with_the_name():
    from validator.errors import UsageError
    from validator.explain import Explainer

    with pytest.raises(UsageError, match="steps"):
        Explainer(build_gap_model(), method="integrated_gradients", options={"steps": 0})
    with pytest.raises(UsageError, match="no option 'sigma'"):
        Explainer(build_gap_model(), method="smoothgrad", options={"sigma": 0.1})
