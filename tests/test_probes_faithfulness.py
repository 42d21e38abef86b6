"""Deletion / insertion AUC and the gain over a random order: numpy oracle models whose curves are known by hand,
batching and cost, one Keras run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from validator.errors import UsageError
from validator.probes.faithfulness import (
    BASELINES,
    DEFAULT_SAMPLES,
    DEFAULT_STEPS,
    FLAT_TOLERANCE,
    baseline_images,
    deletion_insertion,
    forward_passes,
    random_shift,
)

H = W = 8
HW = H * W


def region(rows=slice(2, 5), cols=slice(3, 7)):
    """The oracle's evidence R: a 3 x 4 block (12 of 64 pixels), away from the top-left corner."""
    r = np.zeros((H, W), dtype=bool)
    r[rows, cols] = True
    return r


def oracle(r):
    """Model whose class-0 probability is the mean image value over R (1.0 intact, 0.0 with R zeroed)."""

    def predict(images):
        p = images[:, r, 0].mean(axis=1).astype(np.float32)
        return np.stack([p, 1.0 - p], axis=1)

    return predict


def ones(n=1):
    return np.ones((n, H, W, 1), dtype=np.float32)


def trapezoid(values):
    """Trapezoid area of values sampled at steps + 1 equal points on [0, 1], written out longhand."""
    steps = len(values) - 1
    return sum((values[k] + values[k + 1]) / 2 / steps for k in range(steps))


def expected_curves(r, order, steps):
    """Oracle curves from first principles: after n pixels (in `order`) change, R keeps the rest."""
    position = {p: i for i, p in enumerate(order)}
    in_r = [position[p] for p in np.flatnonzero(r.ravel())]
    deletion, insertion = [], []
    for k in range(steps + 1):
        n_changed = math.floor(k * HW / steps + 0.5)
        hit = sum(1 for i in in_r if i < n_changed) / len(in_r)
        deletion.append(1.0 - hit)
        insertion.append(hit)
    return deletion, insertion


def run(predict, maps, steps=16, n=1, **kw):
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = np.broadcast_to(maps, (n, H, W))
    return deletion_insertion(predict, ones(n), maps, np.zeros(n, int), steps=steps, baseline="zero", **kw)


# ---------------------------------------------------------------- known answers


def test_faithful_map_matches_the_closed_form():
    r = region()
    out = run(oracle(r), r, steps=16, return_curves=True)  # 64 / 16 = 4 pixels a step: R gone at step 3
    frac = r.sum() / HW  # 12 / 64: the curve is linear from 1 to 0 over [0, frac], a triangle
    assert out["deletion_auc"][0] == pytest.approx(frac / 2, abs=1e-6)
    assert out["insertion_auc"][0] == pytest.approx(1 - frac / 2, abs=1e-6)
    assert out["faithfulness_gap"][0] == pytest.approx(1 - frac, abs=1e-6)
    np.testing.assert_allclose(out["deletion_curve"][0, :5], [1, 2 / 3, 1 / 3, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out["insertion_curve"][0, :5], [0, 1 / 3, 2 / 3, 1, 1], atol=1e-6)


@pytest.mark.parametrize("steps", [20, 7, 1, 100])
def test_faithful_and_inverse_maps_match_hand_computed_curves(steps):
    r = region()
    raster = np.arange(HW)
    hot_first = list(raster[r.ravel()]) + list(raster[~r.ravel()])
    cold_first = list(raster[~r.ravel()]) + list(raster[r.ravel()])
    for heat, order in ((r, hot_first), (~r, cold_first)):
        out = run(oracle(r), heat, steps=steps, return_curves=True)
        deletion, insertion = expected_curves(r, order, steps)
        np.testing.assert_allclose(out["deletion_curve"][0], deletion, atol=1e-6)
        np.testing.assert_allclose(out["insertion_curve"][0], insertion, atol=1e-6)
        assert out["deletion_auc"][0] == pytest.approx(trapezoid(deletion), abs=1e-6)
        assert out["insertion_auc"][0] == pytest.approx(trapezoid(insertion), abs=1e-6)


def test_steps_one_is_the_mean_of_the_end_points():
    r = region()
    out = run(oracle(r), r, steps=1, return_curves=True)
    np.testing.assert_allclose(out["deletion_curve"][0], [1, 0], atol=1e-6)
    np.testing.assert_allclose(out["insertion_curve"][0], [0, 1], atol=1e-6)
    assert out["deletion_auc"][0] == pytest.approx(0.5)
    assert out["insertion_auc"][0] == pytest.approx(0.5)
    assert out["faithfulness_gap"][0] == pytest.approx(0.0)


def test_gap_sign_faithful_inverse_and_flat():
    r = region()
    faithful, inverse, flat = (run(oracle(r), m) for m in (r, ~r, np.ones((H, W))))
    assert faithful["faithfulness_gap"][0] > 0.5
    assert inverse["faithfulness_gap"][0] < -0.5
    assert inverse["deletion_auc"][0] > inverse["insertion_auc"][0]
    # a flat map deletes in raster order: R (rows 2-4) goes in the middle, so both AUCs lie in between
    for key in ("deletion_auc", "insertion_auc", "faithfulness_gap"):
        lo, hi = sorted((faithful[key][0], inverse[key][0]))
        assert lo < flat[key][0] < hi, key
    deletion, insertion = expected_curves(r, list(range(HW)), 16)
    assert flat["deletion_auc"][0] == pytest.approx(trapezoid(deletion), abs=1e-6)
    assert flat["insertion_auc"][0] == pytest.approx(trapezoid(insertion), abs=1e-6)


def test_ties_break_in_raster_order_whatever_the_scale():
    r = region()
    a = run(oracle(r), r.astype(float), return_curves=True)
    b = run(oracle(r), 7.0 * r + 0.5, return_curves=True)  # same order: hot R first, raster within ties
    np.testing.assert_array_equal(a["deletion_curve"], b["deletion_curve"])


@pytest.mark.parametrize("dead", [np.zeros((H, W)), np.full((H, W), np.nan), np.where(region(), np.inf, 0.0)])
def test_dead_map_is_nan_and_costs_no_forward_pass(dead):
    r = region()
    rows = []

    def predict(images):
        rows.append(len(images))
        return oracle(r)(images)

    maps = np.stack([r.astype(float), dead])
    out = deletion_insertion(predict, ones(2), maps, [0, 0], steps=4, baseline="zero", return_curves=True)
    for key in ("deletion_auc", "insertion_auc", "faithfulness_gap"):
        assert math.isfinite(out[key][0]) and math.isnan(out[key][1]), key
    assert np.isnan(out["deletion_curve"][1]).all() and np.isnan(out["faithfulness_gain"][1])
    assert sum(rows) == forward_passes(4, original_known=False) == 14  # only the live map was perturbed


def test_constant_image_with_blur_baseline_is_flat():
    # blurring a constant image changes nothing, so no step can move the prediction: gap exactly 0
    r = region()
    out = deletion_insertion(oracle(r), ones(1), r[None].astype(float), [0], baseline="blur")
    assert out["deletion_auc"][0] == pytest.approx(1.0, abs=1e-5)
    assert out["faithfulness_gap"][0] == pytest.approx(0.0, abs=1e-5)
    assert math.isnan(out["faithfulness_gain"][0])  # the probe learnt nothing: no gain, not a gain of 0


# ---------------------------------------------------------------- the gain over a random order


def sample_with_shift(shift, height=H, width=W, seed=0):
    """A sample id whose random order is the map shifted by ``shift`` (the draw is seeded, so search for it)."""
    return next(i for i in range(10_000) if random_shift(height, width, seed, i) == shift)


def test_gain_of_a_faithful_map_by_hand():
    # R = rows 2-4 x cols 3-6. Two steps: one inner point, 32 of 64 pixels changed.
    # Map order: R first, so at 50 % R is all gone (deletion 0) or all back (insertion 1):
    #   deletion [1, 0, 0] -> AUC (1/2 + 0 + 0) / 2 = 1/4; insertion [0, 1, 1] -> (0 + 1 + 1/2) / 2 = 3/4; gap 1/2.
    # Random order: the map shifted by (4, 4), R' = rows {6, 7, 0} x cols {7, 0, 1, 2}, then raster order:
    #   the first 32 are R' (12) + row 0 cols 3-6 (4) + rows 1 and 2 (16), which hold R's row 2: 4 of 12.
    #   deletion [1, 2/3, 0] -> 7/12; insertion [0, 1/3, 1] -> 5/12; gap -1/6.
    # Gain: 1/2 - (-1/6) = 2/3.
    r = region()
    sid = sample_with_shift((4, 4))
    out = run(oracle(r), r, steps=2, sample_ids=[sid], return_curves=True)
    np.testing.assert_allclose(out["random_deletion_curve"][0], [1, 2 / 3, 0], atol=1e-6)
    np.testing.assert_allclose(out["random_insertion_curve"][0], [0, 1 / 3, 1], atol=1e-6)
    assert out["faithfulness_gap"][0] == pytest.approx(0.5, abs=1e-6)
    assert out["random_gap"][0] == pytest.approx(-1 / 6, abs=1e-6)
    assert out["faithfulness_gain"][0] == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize("steps", [2, 5, 16])
def test_gain_matches_curves_from_first_principles(steps):
    r = region()
    raster = np.arange(HW)
    for sid in range(6):
        heat = r.astype(float)
        shifted = np.roll(heat, random_shift(H, W, 3, sid), axis=(0, 1))
        order = list(raster[shifted.ravel() > 0]) + list(raster[shifted.ravel() == 0])
        deletion, insertion = expected_curves(r, order, steps)
        out = run(oracle(r), heat, steps=steps, seed=3, sample_ids=[sid])
        random_gap = trapezoid(insertion) - trapezoid(deletion)
        assert out["random_gap"][0] == pytest.approx(random_gap, abs=1e-6)
        assert out["faithfulness_gain"][0] == pytest.approx(out["faithfulness_gap"][0] - random_gap, abs=1e-6)


def test_a_map_unrelated_to_the_model_gains_nothing_on_average():
    # the oracle is linear in the pixels of R, so a map independent of the image has a gain of exactly 0 in
    # expectation; the faithful map gains on every image, the inverse map loses on every image
    r = region()
    n = 400
    noise = np.random.default_rng(7).random((n, H, W))
    gain = run(oracle(r), noise, steps=4, n=n)["faithfulness_gain"]
    assert np.isfinite(gain).all()
    assert abs(gain.mean()) < 3 * gain.std() / math.sqrt(n)
    assert (run(oracle(r), r, steps=4, n=50)["faithfulness_gain"] > 0.2).all()
    assert (run(oracle(r), ~r, steps=4, n=50)["faithfulness_gain"] < -0.2).all()


def test_a_uniform_map_gains_exactly_nothing():
    # its shifted copy orders the pixels the same way (raster order): a policy must ask for more than 0
    out = run(oracle(region()), np.ones((H, W)), steps=4, n=5)
    np.testing.assert_array_equal(out["faithfulness_gain"], 0.0)


def constant(p):
    """A model that does not look at the image: class 0 at probability p whatever the input."""
    return lambda images: np.tile(np.array([[p, 1 - p]], np.float32), (len(images), 1))


def test_a_model_that_does_not_react_to_deletion_has_no_gain():
    r = region()
    out = run(constant(0.99), r, steps=4)
    assert out["deletion_auc"][0] == pytest.approx(0.99) and out["faithfulness_gap"][0] == pytest.approx(0.0)
    assert math.isnan(out["faithfulness_gain"][0])

    def barely(images):  # the oracle squeezed into a range just under the tolerance
        p = 0.9 + (FLAT_TOLERANCE - 1e-3) * oracle(r)(images)[:, 0]
        return np.stack([p, 1 - p], axis=1)

    assert math.isnan(run(barely, r, steps=4)["faithfulness_gain"][0])
    assert run(barely, r, steps=4)["faithfulness_gap"][0] > 0  # the AUCs are kept: the gain is what is judged


def test_steps_one_has_no_gain():
    # no inner point: both orders share the two end points, so there is nothing to compare
    assert math.isnan(run(oracle(region()), region(), steps=1)["faithfulness_gain"][0])


def test_random_shift_is_a_quarter_to_three_quarters_and_seeded_per_sample():
    shifts = {random_shift(64, 40, 0, i) for i in range(500)}
    assert {dy for dy, _ in shifts} == set(range(16, 49)) and {dx for _, dx in shifts} == set(range(10, 31))
    assert random_shift(64, 40, 0, 7) == random_shift(64, 40, 0, 7)
    assert len({random_shift(64, 40, seed, 7) for seed in range(20)}) > 10
    assert random_shift(1, 1, 0, 0) == (0, 0)


def test_known_original_probabilities_save_one_pass_and_change_nothing():
    images, maps, ids = random_case(4)
    calls = []

    def predict(batch):
        calls.append(len(batch))
        return smooth_model(batch)

    without = deletion_insertion(predict, images, maps, ids, steps=3, return_curves=True)
    assert sum(calls) == 4 * forward_passes(3, original_known=False)
    calls.clear()
    known = deletion_insertion(predict, images, maps, ids, steps=3, original_probabilities=smooth_model(images),
                               return_curves=True)
    assert sum(calls) == 4 * forward_passes(3) == 4 * 9
    for key in without:
        np.testing.assert_allclose(known[key], without[key], rtol=1e-6, err_msg=key)


# ---------------------------------------------------------------- baselines


def test_baselines():
    rng = np.random.default_rng(1)
    images = rng.random((2, 20, 40, 3)).astype(np.float32)
    assert set(BASELINES) == {"blur", "zero", "mean"}
    np.testing.assert_array_equal(baseline_images(images, "zero"), 0)
    mean = baseline_images(images, "mean")
    np.testing.assert_allclose(mean[1, 7, 9], images[1].mean(axis=(0, 1)), rtol=1e-6)
    assert mean.shape == images.shape and mean.dtype == np.float32
    delta = np.zeros((1, 41, 41, 1), np.float32)
    delta[0, 20, 20, 0] = 1.0
    blurred = baseline_images(delta, "blur")[0, :, :, 0]
    assert blurred.sum() == pytest.approx(1.0, abs=1e-3)  # mass kept, spread over ~5 % of the side
    sigma = np.sqrt((blurred * (np.arange(41) - 20.0) ** 2).sum(axis=0).sum())
    assert sigma == pytest.approx(0.05 * 41, rel=0.1)
    assert baseline_images(images, "blur").std() < images.std()


# ---------------------------------------------------------------- batching and cost


def smooth_model(images):
    """A deterministic row-wise nonlinear 3-class model (each row reduced alone, so batching is exact)."""
    n = len(images)
    w = np.linspace(-1.0, 1.0, images[0].size, dtype=np.float32)
    s = (images.reshape(n, -1) * w).sum(axis=1) / 10.0
    logits = np.stack([s, s**2, np.cos(s)], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def random_case(n=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((n, 6, 10, 3)).astype(np.float32)
    maps = rng.random((n, 6, 10)).astype(np.float32)
    maps[:, :, :3] = 0.25  # ties
    return images, maps, rng.integers(0, 3, n)


@pytest.mark.parametrize("baseline", sorted(BASELINES))
def test_batched_equals_per_image(baseline):
    images, maps, ids = random_case()
    kw = dict(steps=6, baseline=baseline, return_curves=True)
    big = deletion_insertion(smooth_model, images, maps, ids, batch_size=64, **kw)
    one = deletion_insertion(smooth_model, images, maps, ids, batch_size=1, **kw)
    odd = deletion_insertion(smooth_model, images, maps, ids, batch_size=5, **kw)
    for i in range(len(images)):
        # the random order follows the sample's id, not its place in the call
        alone = deletion_insertion(smooth_model, images[i:i + 1], maps[i:i + 1], ids[i:i + 1], sample_ids=[i], **kw)
        for key in alone:
            np.testing.assert_array_equal(alone[key][0], big[key][i], err_msg=key)  # NaN == NaN here
    for key in big:
        np.testing.assert_array_equal(big[key], one[key])
        np.testing.assert_array_equal(big[key], odd[key])


@pytest.mark.parametrize(("n", "steps", "batch_size"), [(5, 4, 64), (5, 4, 7), (3, 20, 64), (1, 1, 1)])
def test_predict_rows_and_batch_bound(n, steps, batch_size):
    images, maps, ids = random_case(n)
    calls = []

    def predict(batch):
        assert batch.dtype == np.float32 and batch.shape[1:] == images.shape[1:]
        calls.append(len(batch))
        return smooth_model(batch)

    deletion_insertion(predict, images, maps, ids, steps=steps, batch_size=batch_size)
    per_image = forward_passes(steps, original_known=False)
    assert per_image == 4 * steps - 2  # original, baseline, and 2 orders x 2 curves at each inner point
    assert sum(calls) == n * per_image
    assert max(calls) <= batch_size
    assert len(calls) == math.ceil(n * per_image / batch_size)  # full batches across image boundaries


def test_defaults_and_empty_input():
    assert DEFAULT_SAMPLES == 32 and DEFAULT_STEPS == 2
    assert DEFAULT_SAMPLES * forward_passes(DEFAULT_STEPS) == 160  # the 21-point map-only design: 50 x 42 = 2100
    out = deletion_insertion(smooth_model, np.zeros((0, 4, 4, 3)), np.zeros((0, 4, 4)), np.zeros(0, int),
                             return_curves=True)
    assert out["deletion_auc"].shape == (0,) and out["deletion_curve"].shape == (0, 3)
    assert out["faithfulness_gain"].shape == (0,) and out["random_insertion_curve"].shape == (0, 3)


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize(("change", "message"), [
    (dict(maps=np.zeros((2, 6, 9))), "maps must be"),
    (dict(images=np.zeros((2, 6, 10))), "images must be"),
    (dict(class_ids=[0, 1, 2]), "class_ids must be"),
    (dict(class_ids=[0, -1]), "non-negative"),
    (dict(class_ids=[0.0, 1.0]), "non-negative integers"),
    (dict(class_ids=[0, 3]), "out of range"),
    (dict(steps=0), "steps must be"),
    (dict(steps=2.5), "steps must be"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(baseline="noise"), "blur, zero, mean"),
    (dict(predict=lambda x: smooth_model(x)[:1]), "predict must return"),
    (dict(predict="model"), "callable"),
    (dict(sample_ids=[0]), "sample_ids must be"),
    (dict(original_probabilities=np.ones((2,))), "original_probabilities must be"),
    (dict(original_probabilities=np.ones((2, 1)), class_ids=[0, 1]), "out of range"),
])
def test_usage_errors(change, message):
    images, maps, ids = random_case(2)
    args = dict(predict=smooth_model, images=images, maps=maps, class_ids=ids[:2] * 0)
    args.update(change)
    predict = args.pop("predict")
    with pytest.raises(UsageError, match=message):
        deletion_insertion(predict, **args)


# ---------------------------------------------------------------- a real model


def test_tiny_keras_model():
    from validator._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    rng = np.random.default_rng(0)
    images = rng.random((3, 16, 16, 3)).astype(np.float32)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    out = deletion_insertion(lambda b: model(b, training=False).numpy(), images, maps, [0, 1, 2], steps=5,
                             batch_size=8)
    for key in ("deletion_auc", "insertion_auc"):
        assert np.isfinite(out[key]).all() and (out[key] >= 0).all() and (out[key] <= 1).all(), key
    np.testing.assert_allclose(out["faithfulness_gap"], out["insertion_auc"] - out["deletion_auc"])
    learnt = np.isfinite(out["faithfulness_gain"])
    np.testing.assert_allclose(out["faithfulness_gain"][learnt], (out["faithfulness_gap"] - out["random_gap"])[learnt])
