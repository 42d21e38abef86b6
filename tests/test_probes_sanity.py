"""Explainer sanity (cascading randomisation): the caller's model is untouched, the right layers are re-drawn,
the maps of a trained model decorrelate, a model-independent map does not, and Spearman matches scipy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import build_gap_model
from scipy.stats import spearmanr

from validator._tf import keras
from validator.errors import ModelUsageError, UsageError
from validator.explain.engine import Explainer
from validator.probes import sanity


def build_nested_model(seed=0):
    """Input -> Functional base (c1, bn, feat) -> Sequential block (top_conv) -> GAP -> Dense head."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(base_in)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="feat")(x)
    base = keras.Model(base_in, x, name="base")
    block = keras.Sequential([keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="top_conv")],
                             name="block")
    inputs = keras.Input((32, 32, 3))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(block(base(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(h), name="nested")
    rng = np.random.default_rng(seed)  # non-default BN statistics and biases, so "unchanged" means something
    for variable in model.weights:
        if "kernel" not in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, tuple(variable.shape)).astype(np.float32))
    return model


def layer_by_name(model, name):
    from validator.model import iter_layers

    return next(layer for layer in iter_layers(model) if layer.name == name)


def snapshot(model):
    return [np.array(v.numpy(), copy=True) for v in model.weights]


def same_layer_weights(a, b, name) -> bool:
    wa, wb = layer_by_name(a, name).weights, layer_by_name(b, name).weights
    return all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(wa, wb, strict=True))


def block_mean(maps, factor):
    """Area downsampling by an integer factor, by hand: the oracle for sanity.downsample."""
    n, h, w = maps.shape
    return maps.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


# ------------------------------------------------------------------------------------------ layers, copies


@pytest.fixture(scope="module")
def nested():
    return build_nested_model()


def test_weighted_layers_walk_nested_models_top_down_without_batchnorm(nested):
    assert sanity.weighted_layers(nested) == ["head", "top_conv", "feat", "c1"]


def test_frozen_layers_still_count_as_weighted():
    model = build_nested_model()
    model.get_layer("base").trainable = False
    assert sanity.weighted_layers(model) == ["head", "top_conv", "feat", "c1"]
    copy = sanity.randomised_copy(model, 4)
    assert not same_layer_weights(model, copy, "c1")


@pytest.mark.parametrize("n_top", [0, 1, 3, 4])
def test_randomised_copy_changes_exactly_the_top_layers_and_never_the_original(nested, n_top):
    before = snapshot(nested)
    copy = sanity.randomised_copy(nested, n_top, seed=3)
    after = snapshot(nested)
    assert len(before) == len(after)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(before, after, strict=True))
    assert copy is not nested and all(c is not o for c, o in zip(copy.weights, nested.weights, strict=True))
    names = sanity.weighted_layers(nested)
    for rank, name in enumerate(names):
        assert same_layer_weights(nested, copy, name) == (rank >= n_top), name
        if rank < n_top:  # biases re-drawn from their zeros initialiser
            assert not np.any(layer_by_name(copy, name).bias.numpy())
    assert same_layer_weights(nested, copy, "bn")  # BatchNormalization is left as it is


def test_randomised_copy_is_deterministic_and_nests_over_n_top(nested):
    first = sanity.randomised_copy(nested, 2, seed=5)
    again = sanity.randomised_copy(nested, 2, seed=5)
    other = sanity.randomised_copy(nested, 2, seed=6)
    deeper = sanity.randomised_copy(nested, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(first), snapshot(again), strict=True))
    assert not same_layer_weights(first, other, "head")
    assert same_layer_weights(first, deeper, "head") and same_layer_weights(first, deeper, "top_conv")
    kernel = layer_by_name(first, "top_conv").kernel.numpy()  # drawn from glorot_uniform: |w| <= limit
    limit = np.sqrt(6.0 / (3 * 3 * 6 + 3 * 3 * 5))
    assert np.abs(kernel).max() <= limit + 1e-6 and kernel.std() > limit / 4


def test_randomised_copy_rejects_bad_n_top_and_uncloneable_models(nested):
    with pytest.raises(UsageError, match="between 0 and"):
        sanity.randomised_copy(nested, 5)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(2, 3)
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(self.pool(self.conv(x)))

    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))
    with pytest.raises(ModelUsageError, match="cloneable model"):
        sanity.randomised_copy(model, 1)


def test_plan_stages_caps_and_keeps_top_and_all():
    assert sanity.plan_stages(3) == [1, 2, 3]
    spread = sanity.plan_stages(20)
    assert len(spread) == sanity.MAX_STAGES and spread[0] == 1 and spread[-1] == 20
    assert sanity.plan_stages(20, 3) == [1, 10, 20]  # np.linspace(1, 20, 3) rounded: 1, 10.5 -> 10, 20
    assert sanity.plan_stages(20, 1) == [20]
    assert sanity.plan_stages(5, [3, 1, 3]) == [1, 3]
    with pytest.raises(UsageError):
        sanity.plan_stages(5, [6])
    with pytest.raises(UsageError):
        sanity.plan_stages(5, 0)
    with pytest.raises(ModelUsageError):
        sanity.plan_stages(0)


def test_spearman_rows_matches_scipy_with_ties_and_is_nan_for_constant_maps():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (3, 50)).astype(float)  # many ties
    b = a + rng.integers(0, 3, (3, 50))
    b[2] = 7.0  # constant: no ranking
    got = sanity.spearman_rows(a, b)
    for i in range(2):
        np.testing.assert_allclose(got[i], spearmanr(a[i], b[i]).statistic, rtol=1e-12)
    assert np.isnan(got[2])
    maps = rng.random((2, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(sanity.downsample(maps, (16, 16)), block_mean(maps, 2), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ cascade


def test_cascade_stages_equal_fresh_explainers_on_randomised_copies(random_images):
    """The cascade re-draws one clone in place (one traced graph); each stage must still be exactly the
    maps of randomised_copy(model, k) explained from scratch, at the clone's own target layer."""
    model = build_gap_model()
    class_ids = np.array([0, 1, 2, 2, 1, 0])
    for method in ("gradcam", "cam"):
        result = sanity.cascade(model, random_images, class_ids, method=method, seed=1)
        assert result.n_top == [1, 2, 3] and result.layers[-1] == ["head", "feat", "c1"]
        assert result.grid == (16, 16) and result.spearman.shape == (3, 6)
        expected = Explainer(model, method=method).explain(random_images, class_ids).maps
        np.testing.assert_allclose(result.original, expected, rtol=1e-5, atol=1e-6)
        for j, n_top in enumerate(result.n_top):
            fresh = Explainer(sanity.randomised_copy(model, n_top, seed=1), method=method)
            maps = block_mean(fresh.explain(random_images, class_ids).maps, 2)
            np.testing.assert_allclose(result.randomised[j], maps, rtol=1e-5, atol=1e-6)
            for i in range(2):  # oracle: scipy on the flattened, hand-downsampled maps
                rho = result.spearman[j, i]
                oracle = spearmanr(block_mean(expected, 2)[i].ravel(), maps[i].ravel()).statistic
                if result.dead[j, i] or result.original_dead[i]:
                    assert np.isnan(rho)
                else:
                    np.testing.assert_allclose(rho, oracle, rtol=1e-6, atol=1e-9)
    json.dumps(result.summary(), allow_nan=False)


def test_model_independent_map_survives_every_stage(nested, random_images):
    seen = []

    def brightness(model, images, class_ids):
        seen.append(model)
        return images.mean(axis=-1)

    before = snapshot(nested)
    result = sanity.cascade(nested, random_images, np.zeros(6, int), explain=brightness)
    assert result.n_top == [1, 2, 3, 4] and result.grid == (16, 16)  # top_conv's 16x16 output
    assert np.all(result.spearman > 0.99)
    assert len(seen) == 5 and all(m is seen[0] for m in seen) and seen[0] is not nested
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(nested), strict=True))
    summary = result.summary()
    assert [s["n"] for s in summary["stages"]] == [6, 6, 6, 6]
    assert summary["final"]["mean"] > 0.99


def square_images(n, seed):
    """Noise in [0, 0.3] with an 8x8 bright square: red for class 0, green for class 1. Returns the corners."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.0, 0.3, (n, 32, 32, 3)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    corners = rng.integers(0, 32 - 8, (n, 2))
    for image, label, (r, c) in zip(images, labels, corners, strict=True):
        image[r : r + 8, c : c + 8] = 0.1
        image[r : r + 8, c : c + 8, label] = 1.0
    return images, labels, corners


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained for a couple of seconds: the square's colour is the class."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="feat")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="head")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    images, labels, _ = square_images(256, 0)
    model.fit(images, labels, epochs=4, batch_size=32, verbose=0)
    return model


def test_trained_model_maps_decorrelate_after_full_randomisation(trained):
    images, labels, corners = square_images(sanity.DEFAULT_SUBSET, 100)
    assert (trained.predict(images, verbose=0).argmax(axis=1) == labels).mean() >= 0.9
    result = sanity.cascade(trained, images, labels, seed=0)
    inside = [m[r : r + 8, c : c + 8].sum() / m.sum() for m, (r, c) in zip(result.original, corners, strict=True)]
    assert not result.original_dead.any() and np.mean(inside) > 3 * 64 / 1024  # the maps find the square
    summary = result.summary()
    print("sanity stages:", [(s["n_top"], s["mean"], s["dead"], s["seconds"]) for s in summary["stages"]])
    final = summary["final"]
    assert final["n"] >= 24 and final["mean"] < 0.5
    np.testing.assert_array_equal(result.per_sample_final, result.spearman[-1])
    assert np.all(np.isnan(result.per_sample_max) | (result.per_sample_max >= np.nanmin(result.spearman, axis=0)))
    for i in np.flatnonzero(np.isfinite(result.per_sample_final))[:2]:  # oracle on two samples
        oracle = spearmanr(block_mean(result.original[i : i + 1], 2).ravel(), result.randomised[-1, i].ravel())
        np.testing.assert_allclose(result.per_sample_final[i], oracle.statistic, rtol=1e-6)
