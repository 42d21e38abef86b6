"""Augmented Grad-CAM: the forward operator, the solver's fixed point, determinism, batching and the public API."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model

from validator._tf import keras, tf
from validator.errors import UsageError
from validator.explain import Explainer, augmented
from validator.explain.methods import METHODS
from validator.explain.names import METHOD_OPTIONS


@pytest.fixture(scope="module")
def model():
    return build_gap_model(seed=2)  # 32 px input, target "feat" at 16 x 16


@pytest.fixture(scope="module")
def images():
    return (np.random.default_rng(1).random((4, 32, 32, 3)) * 8).astype(np.float32)


CLASSES = np.array([0, 1, 2, 1])
QUICK = {"views": 8, "steps": 50}


def identity_taps(views, grid):
    zeros = np.zeros(views)
    return augmented.sampling_taps(zeros, np.zeros((views, 2)), grid, (32, 32))


def pool(h, upscale):
    return tf.nn.avg_pool2d(tf.constant(h)[..., None], upscale, upscale, "VALID").numpy()[..., 0]


@pytest.mark.parametrize("grid", [(16, 16), (7, 9), (56, 40)])
def test_identity_taps_are_exact_on_any_grid(grid):
    indices, weights = augmented.sampling_taps(np.zeros(2), np.zeros((2, 2)), grid, (224, 224))
    np.testing.assert_array_equal(weights[..., 0], 1.0)
    np.testing.assert_array_equal(weights[..., 1:], 0.0)
    np.testing.assert_array_equal(indices[..., 0], np.broadcast_to(np.arange(grid[0] * grid[1]), (2, grid[0] * grid[1])))


def test_forward_operator_with_identity_views_is_average_pooling():
    indices, weights = identity_taps(3, (16, 16))
    constant = np.full((2, 16, 16), 0.7, np.float32)
    out = augmented.forward_model(tf.constant(constant), indices, weights, 4).numpy()
    assert out.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(out, 0.7, rtol=1e-6)  # float32 pooling round-off only
    h = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    out = augmented.forward_model(tf.constant(h), indices, weights, 4).numpy()
    np.testing.assert_allclose(out, np.repeat(pool(h, 4)[:, None], 3, axis=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("fill", augmented.FILLS)
def test_sparse_operator_is_warp_then_average_pool(fill):
    theta, shift = augmented.view_transforms(5, 0.5, 0.134)
    indices, weights = augmented.sampling_taps(theta, shift, (24, 16), (48, 32), fill)
    h = np.random.default_rng(4).random((3, 24, 16)).astype(np.float32)
    warped = augmented.warp(tf.constant(h.reshape(3, -1, 1)), indices, weights).numpy().reshape(15, 24, 16)
    expected = pool(warped, 4).reshape(3, 5, 6, 4)
    np.testing.assert_allclose(augmented.forward_model(tf.constant(h), indices, weights, 4).numpy(), expected,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grid", [(32, 32), (64, 64), (16, 16)])
def test_one_transform_moves_every_grid_alike(grid):
    """The image (input grid) and the map (layer or high-res grid) must move together, or D(A h) != g."""
    gh, gw = grid
    pattern = np.zeros((1, gh, gw), np.float32)
    pattern[0, : gh // 4, : gw // 2] = 1.0  # top-left block: asymmetric
    # a quarter turn maps a square grid onto itself; a quarter of the width is a whole number of cells
    for theta, shift, expected in (
        (np.pi / 2, (0.0, 0.0), None),
        (0.0, (0.25, 0.0), np.roll(pattern, gw // 4, axis=2)),  # +x shift: content moves right
        (0.0, (0.0, 0.25), np.roll(pattern, gh // 4, axis=1)),  # +y shift: content moves down
    ):
        indices, weights = augmented.sampling_taps(np.array([theta]), np.array([shift]), grid, (32, 32), "zeros")
        moved = augmented.warp(tf.constant(pattern.reshape(1, -1, 1)), indices, weights).numpy().reshape(1, gh, gw)
        if expected is None:  # theta > 0 turns clockwise on screen (rows down), the same at every resolution
            expected = np.rot90(pattern, k=-1, axes=(1, 2)).copy()
        np.testing.assert_allclose(moved, expected, atol=1e-5)


def test_reflect_fill_continues_the_picture_without_black_bands():
    theta, shift = np.array([0.0, 0.4, -0.5]), np.array([[0.0, 0.0], [0.134, -0.1], [-0.134, 0.134]])
    constant = np.full((1, 16 * 16, 1), 3.0, np.float32)
    ramp = np.tile(np.arange(16, dtype=np.float32), 16).reshape(1, -1, 1)  # value = column
    zeros = augmented.warp(tf.constant(constant), *augmented.sampling_taps(theta, shift, (16, 16), (32, 32), "zeros"))
    assert zeros.numpy()[0, 1:].min() == 0.0  # zero padding: black where a view looks past the frame
    taps = augmented.sampling_taps(theta, shift, (16, 16), (32, 32))
    np.testing.assert_allclose(augmented.warp(tf.constant(constant), *taps).numpy(), 3.0, rtol=1e-6)
    # a pure shift by 2 cells to the right: the first two columns mirror columns 1, 0 of the source
    indices, weights = augmented.sampling_taps(np.zeros(1), np.array([[2 / 16, 0.0]]), (16, 16), (32, 32))
    moved = augmented.warp(tf.constant(ramp), indices, weights).numpy().reshape(16, 16)
    np.testing.assert_allclose(moved[0], [1, 0, *range(14)], atol=1e-6)


def test_solver_reaches_the_data_with_identity_views_and_no_regulariser():
    g = np.random.default_rng(3).random((2, 5, 4, 4)).astype(np.float32)
    g[:, 1:] = g[:, :1]  # identity views see the same map
    solve = augmented.make_solver(*identity_taps(5, (16, 16)), (16, 16), upscale=4, steps=400, learning_rate=0.02,
                                  tv=0.0, l2=0.0)
    h, residual = solve(tf.constant(g), tf.zeros((2, 16, 16)))
    assert h.numpy().min() >= 0
    np.testing.assert_allclose(pool(h.numpy(), 4), g[:, 0], atol=1e-3)
    assert residual.numpy().max() < 1e-3


def test_explainer_with_identity_views_reconstructs_gradcam(model, images):
    options = {"views": 4, "rotation": 0.0, "translation": 0.0, "tv": 0.0, "l2": 0.0, "upscale": 2,
               "steps": 400, "learning_rate": 0.01}
    result = Explainer(model, "augmented_gradcam", options=options).explain(images, CLASSES)
    gradcam = Explainer(model, "gradcam").explain(images, CLASSES).layer_maps
    assert result.layer_maps.shape == (4, 32, 32)
    scale = gradcam.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(pool(result.layer_maps, 2) / scale, gradcam / scale, atol=2e-3)
    assert result.extra["residual"].max() < 5e-3
    start = Explainer(model, "augmented_gradcam", options={**options, "steps": 0}).explain(images, CLASSES)
    assert (start.extra["residual"] > 10 * result.extra["residual"]).all()  # the solver did the work


def test_no_steps_gives_the_upsampled_gradcam_at_its_own_scale(model, images):
    """The per-image normalisation is undone exactly: no min-max, no change of scale or mass."""
    result = Explainer(model, "augmented_gradcam", options={"views": 3, "steps": 0}).explain(images, CLASSES)
    gradcam = Explainer(model, "gradcam").explain(images, CLASSES).layer_maps
    expected = tf.image.resize(gradcam[..., None], (64, 64), method="bilinear").numpy()[..., 0]
    np.testing.assert_allclose(result.layer_maps, np.maximum(expected, 0), rtol=1e-5, atol=1e-6 * gradcam.max())


def test_same_call_twice_gives_the_same_maps(model, images):
    first = Explainer(model, "augmented_gradcam", options=QUICK)
    a = first.explain(images, CLASSES)
    b = first.explain(images, CLASSES)
    c = Explainer(model, "augmented_gradcam", options=QUICK).explain(images, CLASSES)
    np.testing.assert_array_equal(a.maps, b.maps)
    np.testing.assert_array_equal(a.maps, c.maps)


def test_batched_equals_per_image(model, images):
    explainer = Explainer(model, "augmented_gradcam", options=QUICK)
    batched = explainer.explain(images, CLASSES)
    single = [explainer.explain(images[i : i + 1], CLASSES[i : i + 1]) for i in range(len(images))]
    for i, one in enumerate(single):
        scale = batched.layer_maps[i].max()
        np.testing.assert_allclose(one.layer_maps[0], batched.layer_maps[i], rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(one.maps[0], batched.maps[i], rtol=1e-4, atol=1e-5 * scale)


def test_public_api_maps_and_probabilities(model, images):
    result = Explainer(model, method="augmented_gradcam", options=QUICK).explain(images, CLASSES)
    gradcam = Explainer(model, method="gradcam").explain(images, CLASSES)
    assert result.maps.shape == (4, 32, 32) and result.maps.dtype == np.float32
    assert result.layer_maps.shape == (4, 64, 64)  # 16 x 16 layer, upscale 4
    assert (result.maps >= 0).all() and np.isfinite(result.maps).all()
    assert not result.dead.any()
    np.testing.assert_allclose(result.probabilities, gradcam.probabilities, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(result.predicted, gradcam.predicted)
    assert result.extra["residual"].shape == (4,)
    # the augmented map is not the plain one (the views do add information) but agrees with it on the whole
    plain = gradcam.maps.reshape(4, -1)
    mine = result.maps.reshape(4, -1)
    assert not np.allclose(mine, plain)
    correlation = [np.corrcoef(a, b)[0, 1] for a, b in zip(mine, plain, strict=True)]
    assert min(correlation) > 0.5


def test_dead_gradcam_gives_a_dead_augmented_map(images):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="feat",
                            bias_initializer=keras.initializers.Constant(-1e6))(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    result = Explainer(keras.Model(inputs, outputs), "augmented_gradcam", options={"views": 3, "steps": 5}).explain(
        images, np.zeros(4, int)
    )
    assert result.dead.all()
    assert np.isfinite(result.maps).all() and (result.maps == 0).all()


@pytest.mark.parametrize(
    ("options", "match"),
    [({"views": 0}, "'views' must be > 0"), ({"views": 2.5}, "integer"), ({"tv": -1.0}, "'tv' must be >= 0"),
     ({"learning_rate": 0}, "'learning_rate' must be > 0"), ({"rotation": "big"}, "finite number"),
     ({"fill": "wrap"}, "'fill' must be one of"),
     ({"smoothing": 1}, "has no option")],
)
def test_bad_options_are_refused(model, options, match):
    with pytest.raises(UsageError, match=match):
        Explainer(model, "augmented_gradcam", options=options)


def test_views_are_seeded_and_view_zero_is_the_image():
    theta, shift = augmented.view_transforms(6, 0.5, 0.134)
    again, shift_again = augmented.view_transforms(6, 0.5, 0.134)
    np.testing.assert_array_equal(theta, again)
    np.testing.assert_array_equal(shift, shift_again)
    assert theta[0] == 0 and (shift[0] == 0).all()
    assert (np.abs(theta) <= 0.5).all() and (np.abs(shift) <= 0.134).all() and np.abs(theta[1:]).min() > 0


def test_non_square_input_and_nested_backbone():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((24, 40, 3))
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="backbone_out")(inputs)
    backbone = keras.Model(inputs, x, name="backbone")
    model = keras.Sequential([keras.Input((24, 40, 3)), backbone, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, name="head")])
    x = (np.random.default_rng(2).random((3, 24, 40, 3)) * 4).astype(np.float32)
    result = Explainer(model, "augmented_gradcam", options={"views": 4, "steps": 10, "upscale": 2}).explain(x, [0, 1, 0])
    assert result.layer_maps.shape == (3, 24, 40) and result.maps.shape == (3, 24, 40)
    assert (result.maps >= 0).all() and not result.dead.any()


def test_the_method_table_lists_it_with_its_defaults(model):
    method = METHODS["augmented_gradcam"]
    assert method.family == "augmented" and method.needs_layer and method.needs_gradient
    assert method.defaults == METHOD_OPTIONS["augmented_gradcam"]
    assert method.defaults["views"] == 16 and method.defaults["fill"] == "reflect"
    settings = Explainer(model, "augmented_gradcam", options=QUICK).settings
    assert settings["options"] == {**METHOD_OPTIONS["augmented_gradcam"], **QUICK}
    assert "views forward + views backward" in settings["cost"]
