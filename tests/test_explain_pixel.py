"""Pixel attributions: identities on linear and half-blind models, IG completeness, batching, options."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model

from validator._tf import keras
from validator.errors import UsageError
from validator.explain import Explainer
from validator.explain.pixel import gaussian_blur, occlusion_geometry

CLASS_IDS = np.array([0, 1, 2, 2, 1, 0])


def linear_model(size=32, classes=3, seed=0):
    """y = W . flatten(x) + b: dy_c/dx is column c of W, whatever x."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.Dense(classes, name="head")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def biased_cnn(seed=1):
    """The GAP CNN with logits and random biases: not positively homogeneous, so IG's path matters (with
    zero biases a ReLU net has a constant gradient on the ray from 0 and IG from black is exact at 1 step)."""
    model = build_gap_model(activation=None)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.5, layer.bias.shape).astype(np.float32))
    return model


def left_half_model(size=32, classes=3, seed=0):
    """Reads only columns [0, size/2): the right half can change nothing."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


@pytest.fixture(scope="module")
def centred_images():
    return (np.random.default_rng(2).random((6, 32, 32, 3)) * 2 - 1).astype(np.float32)


def test_saliency_of_a_linear_model_is_its_weights(random_images):
    model = linear_model()
    result = Explainer(model, "saliency").explain(random_images, CLASS_IDS)
    kernel = model.get_layer("head").kernel.numpy()  # [H*W*C, classes]
    expected = np.abs(kernel[:, CLASS_IDS].T.reshape(6, 32, 32, 3)).max(axis=-1)
    np.testing.assert_array_equal(result.maps, expected)
    np.testing.assert_array_equal(result.layer_maps, result.maps)


def test_integrated_gradients_is_complete_on_a_linear_model(random_images):
    for steps in (1, 3):
        for baseline in ("black", "blur"):
            extra = Explainer(linear_model(), "integrated_gradients",
                              options={"steps": steps, "baseline": baseline}).explain(random_images, CLASS_IDS).extra
            assert np.abs(extra["completeness_relative"]).max() < 1e-4


def test_integrated_gradients_completeness_gap_shrinks_with_steps(centred_images):
    model = biased_cnn()
    relative = {
        steps: np.abs(Explainer(model, "integrated_gradients", options={"steps": steps})
                      .explain(centred_images, CLASS_IDS).extra["completeness_relative"])
        for steps in (4, 16, 64)
    }
    assert relative[64].max() < 0.05
    assert relative[4].mean() > relative[16].mean() > relative[64].mean()


def test_integrated_gradients_extras_are_consistent(centred_images):
    model = biased_cnn()
    result = Explainer(model, "integrated_gradients", options={"steps": 8}).explain(centred_images, CLASS_IDS)
    gap, relative = result.extra["completeness_gap"], result.extra["completeness_relative"]
    assert gap.shape == relative.shape == (6,)
    logits = model(centred_images).numpy()[np.arange(6), CLASS_IDS]
    base = model(np.zeros_like(centred_images)).numpy()[np.arange(6), CLASS_IDS]
    np.testing.assert_allclose(relative, gap / np.abs(logits - base), rtol=1e-4)


def test_public_api_reports_the_completeness_gap(gap_model, random_images):
    result = Explainer(gap_model, method="integrated_gradients", options={"steps": 8}).explain(random_images, CLASS_IDS)
    assert result.extra["completeness_gap"].shape == (6,)
    assert (result.maps >= 0).all() and not result.dead.any()


def test_occlusion_of_an_ignored_region_is_zero(random_images):
    geometry = occlusion_geometry((32, 32), 0.125, 0.0625)
    patch, stride = 4, 2  # round(0.125 * 32), round(0.0625 * 32)
    assert geometry["patch"] == (patch, patch) and geometry["stride"] == stride
    starts = list(range(0, 32 - patch + 1, stride))
    # right-half columns that some patch reaching into the left half also covers
    straddled = {c for x0 in starts if x0 < 16 for c in range(x0, x0 + patch) if c >= 16}
    assert straddled == {16, 17}
    maps = Explainer(left_half_model(), "occlusion").explain(random_images, CLASS_IDS).maps
    untouched = [c for c in range(16, 32) if c not in straddled]
    assert (maps[:, :, untouched] == 0).all()
    assert maps[:, :, :16].max() > 0 and maps[:, :, sorted(straddled)].max() > 0


def test_occlusion_patch_geometry_covers_every_pixel():
    geometry = occlusion_geometry((30, 20), 0.3, 0.2)  # 9 px patches every 6 px; last ones flush with the edge
    assert geometry["patch"] == (9, 9) and geometry["stride"] == 6
    assert geometry["starts_y"] == [0, 6, 12, 18, 21] and geometry["starts_x"] == [0, 6, 11]
    assert geometry["coverage"].min() >= 1


def test_smoothgrad_without_noise_is_saliency_and_is_deterministic(gap_model, random_images):
    saliency = Explainer(gap_model, "saliency").explain(random_images, CLASS_IDS).maps
    quiet = Explainer(gap_model, "smoothgrad", options={"samples": 3, "noise": 0.0}).explain(random_images, CLASS_IDS)
    np.testing.assert_allclose(quiet.maps, saliency, rtol=1e-5, atol=1e-7)
    noisy = Explainer(gap_model, "smoothgrad", options={"samples": 5})
    first = noisy.explain(random_images, CLASS_IDS).maps
    np.testing.assert_array_equal(first, noisy.explain(random_images, CLASS_IDS).maps)
    again = Explainer(gap_model, "smoothgrad", options={"samples": 5}).explain(random_images, CLASS_IDS).maps
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - saliency).max() > 0  # the noise does something


@pytest.mark.parametrize(
    ("method", "options"),
    [("saliency", {}), ("smoothgrad", {"samples": 4}), ("integrated_gradients", {"steps": 5, "baseline": "blur"}),
     ("occlusion", {"patch": 0.25, "stride": 0.125})],
)
def test_batched_equals_one_by_one_and_probabilities_are_gradcams(gap_model, random_images, method, options):
    explainer = Explainer(gap_model, method, options=options, batch_size=4)  # 6 images: two step calls
    batched = explainer.explain(random_images, CLASS_IDS)
    single = [explainer.explain(random_images[i : i + 1], CLASS_IDS[i : i + 1]) for i in range(6)]
    scale = np.abs(batched.maps).max()
    np.testing.assert_allclose(batched.maps, np.concatenate([s.maps for s in single]), rtol=1e-4, atol=1e-5 * scale)
    for key, values in batched.extra.items():
        np.testing.assert_allclose(values, np.concatenate([s.extra[key] for s in single]), rtol=1e-3, atol=1e-5)
    gradcam = Explainer(gap_model).explain(random_images, CLASS_IDS)
    np.testing.assert_allclose(batched.probabilities, gradcam.probabilities, atol=1e-5)
    assert (batched.maps >= 0).all() and batched.maps.shape == (6, 32, 32)


def test_blur_baseline_keeps_constants_and_mass():
    constant = np.full((2, 32, 32, 3), 7.0, np.float32)
    np.testing.assert_allclose(gaussian_blur(constant, 1.6).numpy(), constant, rtol=1e-6)
    image = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    blurred = gaussian_blur(image, 1.6).numpy()
    assert blurred.shape == image.shape and blurred.std() < image.std()


@pytest.mark.parametrize(
    ("method", "options"),
    [("smoothgrad", {"samples": 0}), ("smoothgrad", {"samples": 2.5}), ("smoothgrad", {"noise": -0.1}),
     ("integrated_gradients", {"steps": 0}), ("integrated_gradients", {"baseline": "white"}),
     ("occlusion", {"patch": 0}), ("occlusion", {"patch": 1.5}), ("occlusion", {"stride": 0}),
     ("occlusion", {"patch": 0.1, "stride": 0.2})],
)
def test_bad_options_are_usage_errors(gap_model, method, options):
    with pytest.raises(UsageError):
        Explainer(gap_model, method, options=options)
