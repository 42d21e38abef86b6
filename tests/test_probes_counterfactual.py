"""Counterfactual probes: known-answer fills and hand-written numpy "models" whose probe columns are known."""

from __future__ import annotations

import numpy as np
import pytest

from validator.errors import UsageError
from validator.metrics.geometry import box_mask
from validator.probes.counterfactual import COLUMNS, background_only, object_only, probe_scores

NO_BOX = np.zeros((0, 4))


def two_images(channels=3):
    """Image 0: background 0 / 4 (mean 1 outside the box), a 7 in the box; image 1: no box, random."""
    a = np.zeros((8, 8, channels), dtype=np.float32)
    a[0, :] = 4.0  # 8 pixels of 4 among the 48 outside the 4x4 box
    a[2:6, 2:6] = 7.0
    a[..., -1] += 1.0  # last channel: a different outside mean (offset by exactly 1)
    b = np.random.default_rng(1).random((8, 8, channels)).astype(np.float32)
    return np.stack([a, b]), [np.array([[2.0, 2.0, 6.0, 6.0]]), NO_BOX]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_background_only_mean_fill_known_answer(channels):
    images, boxes = two_images(channels)
    before = images.copy()
    out = background_only(images, boxes, fill="mean")
    np.testing.assert_array_equal(images, before)  # input not mutated
    assert out.dtype == np.float32 and out.shape == images.shape
    inside = box_mask(boxes[0], 8, 8)
    assert inside.sum() == 16
    # outside: 8 pixels of 4 and 40 of 0 -> mean 32 / 48 = 2/3 (+1 on the last channel), by hand
    expected = np.full(channels, 2.0 / 3.0)
    expected[-1] += 1.0
    np.testing.assert_allclose(out[0][inside], np.broadcast_to(expected, (16, channels)), rtol=1e-6)
    np.testing.assert_array_equal(out[0][~inside], images[0][~inside])
    np.testing.assert_array_equal(out[1], images[1])  # k = 0: unchanged


def test_background_only_mean_is_the_exact_outside_mean():
    images = np.zeros((1, 4, 4, 3), dtype=np.float32)
    images[0, 0, :, 0] = 3.0  # outside the 2x2 box: 4 threes among 12 pixels -> exactly 1.0
    images[0, 1:3, 1:3] = 9.0
    out = background_only(images, [np.array([[1.0, 1.0, 3.0, 3.0]])], fill="mean")
    np.testing.assert_array_equal(out[0, 1:3, 1:3, 0], 1.0)
    np.testing.assert_array_equal(out[0, 1:3, 1:3, 1:], 0.0)


def test_box_rounding_matches_the_metrics():
    # a fractional box: membership by pixel centre, exactly as the localisation scores count it
    images = np.zeros((1, 6, 6, 3), dtype=np.float32)
    images[0, 0, 0] = 6.0
    box = np.array([[0.6, 0.4, 3.5, 2.6]])
    out = background_only(images + 1.0, [box], fill="mean")
    changed = np.any(out[0] != images[0] + 1.0, axis=-1)
    np.testing.assert_array_equal(changed, box_mask(box, 6, 6))


def white_square(channels=3):
    """A white (1.0) square on a dark textured background (<= 0.3), box exactly on the square."""
    rng = np.random.default_rng(2)
    images = (rng.random((2, 32, 32, channels)) * 0.3).astype(np.float32)
    images[:, 10:22, 8:20] = 1.0
    return images, [np.array([[8.0, 10.0, 20.0, 22.0]])] * 2


@pytest.mark.parametrize("fill", ["blur", "inpaint"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_blur_and_inpaint_remove_the_object(fill, channels):
    images, boxes = white_square(channels)
    before = images.copy()
    out = background_only(images, boxes, fill=fill)
    np.testing.assert_array_equal(images, before)
    inside = box_mask(boxes[0], 32, 32)
    assert out[:, inside].max() < 0.5  # nothing near the object's 1.0 survives
    assert out[:, inside].min() >= -0.01  # inpaint maps back to the input range (up to quantisation)
    np.testing.assert_array_equal(out[:, ~inside], images[:, ~inside])


def test_unknown_fill_names_the_choices():
    images, boxes = two_images()
    with pytest.raises(UsageError, match="mean, blur, inpaint"):
        background_only(images, boxes, fill="zeros")


# ---------------------------------------------------------------- object-only (Mixed-Rand)


def striped_batch(n=6, size=16):
    """Sample i: the whole image at value i (its background), a box at (4, 4, 12, 12) at value 100 + i."""
    images = np.zeros((n, size, size, 3), dtype=np.float32)
    for i in range(n):
        images[i] = i
        images[i, 4:12, 4:12] = 100 + i
    return images, [np.array([[4.0, 4.0, 12.0, 12.0]])] * n


def test_object_only_pastes_onto_another_class_background():
    images, boxes = striped_batch()
    classes = np.array([0, 0, 1, 1, 2, 2])
    before = images.copy()
    out, donor = object_only(images, boxes, classes, seed=3)
    np.testing.assert_array_equal(images, before)
    bg = background_only(images, boxes)
    inside = box_mask(boxes[0], 16, 16)
    assert donor.dtype == np.int64 and donor.shape == (6,)
    for i in range(6):
        assert donor[i] >= 0 and classes[donor[i]] != classes[i]
        np.testing.assert_array_equal(out[i][inside], images[i][inside])
        np.testing.assert_array_equal(out[i][~inside], bg[donor[i]][~inside])
    again, donor_again = object_only(images, boxes, classes, seed=3)
    np.testing.assert_array_equal(donor_again, donor)
    np.testing.assert_array_equal(again, out)


def test_object_only_donor_without_box_and_sample_without_box():
    images, boxes = striped_batch(3)
    boxes = [boxes[0], NO_BOX, NO_BOX]
    out, donor = object_only(images, boxes, [0, 1, 1], seed=0)
    assert donor[0] in (1, 2) and donor[1] == -1 and donor[2] == -1
    inside = box_mask(boxes[0], 16, 16)
    np.testing.assert_array_equal(out[0][~inside], images[donor[0]][~inside])  # a box-free donor: all background
    np.testing.assert_array_equal(out[1:], images[1:])


def test_object_only_fallback_when_one_class():
    images, boxes = striped_batch(4)
    out, donor = object_only(images, boxes, [2, 2, 2, 2])
    np.testing.assert_array_equal(donor, -1)
    # the object on its own filled background is the original image again
    np.testing.assert_array_equal(out, images)


# ---------------------------------------------------------------- probe scores with known "models"

C = 3
HIGH = 0.7  # probability of the predicted class; the others share the rest


def one_hot_probs(pred):
    probs = np.full((len(pred), C), (1.0 - HIGH) / (C - 1), dtype=np.float32)
    probs[np.arange(len(pred)), pred] = HIGH
    return probs


class Counting:
    """predict wrapper that records how often, and on how many images, it was called."""

    def __init__(self, fn):
        self.fn, self.sizes = fn, []

    def __call__(self, x):
        assert x.dtype == np.float32 and x.ndim == 4
        self.sizes.append(len(x))
        return self.fn(x)


def shortcut_batch():
    """Class k: background G channel = 0.2 * (k + 1) everywhere; object (R = 0.25 * (k + 1)) in the centre box.

    Sample 6 has no box (NaN row); the six with a box hold each class twice. The corner pixel (0, 0) lies outside every box.
    """
    classes = np.array([0, 1, 2, 0, 1, 2, 0])
    images = np.zeros((7, 16, 16, 3), dtype=np.float32)
    for i, k in enumerate(classes):
        images[i, ..., 1] = 0.2 * (k + 1)
        images[i, 4:12, 4:12, 0] = 0.25 * (k + 1)
    boxes = [np.array([[4.0, 4.0, 12.0, 12.0]])] * 6 + [NO_BOX]
    return images, boxes, classes


def nearest(values, levels):
    return np.abs(values[:, None] - np.asarray(levels)[None, :]).argmin(axis=1)


def corner_model(x):
    """Reads only the top-left pixel's background colour: a pure shortcut."""
    return one_hot_probs(nearest(x[:, 0, 0, 1], [0.2, 0.4, 0.6]))


def object_model(x):
    """Reads only the mean red of the centre box, where the object is."""
    return one_hot_probs(nearest(x[:, 4:12, 4:12, 0].mean(axis=(1, 2)), [0.25, 0.5, 0.75]))


def test_shortcut_model_reads_the_background():
    images, boxes, classes = shortcut_batch()
    predict = Counting(corner_model)
    cols = probe_scores(predict, images, boxes, classes, C, seed=1)
    assert predict.sizes == [7, 7, 7, 7]  # four batched calls: original, background-only, Mixed-Rand, Mixed-Same
    assert set(cols) == set(COLUMNS)
    # corner untouched by the box fill: the background alone gives the class
    np.testing.assert_array_equal(cols["bg_only_correct"][:6], 1.0)
    np.testing.assert_array_equal(cols["bg_only_skill"][:6], 1.0)
    np.testing.assert_allclose(cols["bg_only_confidence"][:6], HIGH, rtol=1e-6)
    np.testing.assert_allclose(cols["confidence_drop"][:6], 0.0, atol=1e-7)
    # Mixed-Rand: the corner is the donor's (another class): always wrong, gap = 1 - 0
    np.testing.assert_array_equal(cols["object_only_correct"][:6], 0.0)
    np.testing.assert_array_equal(cols["bg_gap"][:6], 1.0)
    # Mixed-Same: the corner is a same-class donor's, so the class survives: all of the accuracy follows it
    np.testing.assert_array_equal(cols["mixed_same_correct"][:6], 1.0)
    np.testing.assert_array_equal(cols["bg_reliance"][:6], 1.0)
    for name in COLUMNS:
        assert np.isnan(cols[name][6]), name


def test_object_model_ignores_the_background():
    images, boxes, classes = shortcut_batch()
    predict = Counting(object_model)
    cols = probe_scores(predict, images, boxes, classes, C, seed=1)
    assert len(predict.sizes) == 4
    # background-only: the box's red becomes the outside red mean, 0 -> nearest level 0.25 -> class 0
    bg_correct = np.array([1.0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(cols["bg_only_correct"][:6], bg_correct)
    skill = (bg_correct - 1.0 / C) / (1.0 - 1.0 / C)
    np.testing.assert_array_equal(cols["bg_only_skill"][:6], skill)
    np.testing.assert_allclose(cols["bg_only_skill"][:6], [1.0, -0.5, -0.5, 1.0, -0.5, -0.5])
    # always "class 0" on the background, one class in three: exactly chance, skill 0
    assert abs(np.mean(cols["bg_only_skill"][:6])) < 1e-12
    conf = np.where(bg_correct == 1, HIGH, (1.0 - HIGH) / (C - 1))
    np.testing.assert_allclose(cols["bg_only_confidence"][:6], conf, rtol=1e-6)
    np.testing.assert_allclose(cols["confidence_drop"][:6], HIGH - conf, rtol=1e-6, atol=1e-7)
    # Mixed-Rand keeps the box: the object model is still right, no gap
    np.testing.assert_array_equal(cols["object_only_correct"][:6], 1.0)
    np.testing.assert_array_equal(cols["bg_gap"][:6], 0.0)
    np.testing.assert_array_equal(cols["mixed_same_correct"][:6], 1.0)
    np.testing.assert_array_equal(cols["bg_reliance"][:6], 0.0)
    assert all(np.isnan(cols[name][6]) for name in COLUMNS)


def seam_batch():
    """Class k: a small object (R = 0.25 * (k + 1)) at 6:10 inside the box 4:12; every image has its own
    background level (G), unrelated to the class, so the box's ring carries the recipient's G after a paste."""
    classes = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    images = np.zeros((9, 16, 16, 3), dtype=np.float32)
    for i, k in enumerate(classes):
        images[i, ..., 1] = 0.1 + 0.08 * i
        images[i, 6:10, 6:10, 0] = 0.25 * (k + 1)
    return images, [np.array([[4.0, 4.0, 12.0, 12.0]])] * 9, classes


def seam_model(x):
    """Reads the object, but answers the next class when it sees a seam (the pixel inside the box's corner
    differs from the one just outside): a clean model that the paste itself hurts."""
    cls = nearest(x[:, 6:10, 6:10, 0].mean(axis=(1, 2)), [0.25, 0.5, 0.75])
    seam = ~np.isclose(x[:, 4, 4, 1], x[:, 3, 3, 1])
    return one_hot_probs(np.where(seam, (cls + 1) % C, cls))


def test_the_paste_cost_falls_on_both_arms_so_bg_reliance_leaves_it_out():
    images, boxes, classes = seam_batch()
    cols = probe_scores(seam_model, images, boxes, classes, C, seed=3)
    # the originals have no seam: right; every paste makes one, onto another class's or its own class's image
    np.testing.assert_array_equal(cols["object_only_correct"], 0.0)
    np.testing.assert_array_equal(cols["mixed_same_correct"], 0.0)
    np.testing.assert_array_equal(cols["bg_gap"], 1.0)  # the uncontrolled gap calls it a background reader
    np.testing.assert_array_equal(cols["bg_reliance"], 0.0)  # the controlled one does not


def half_shortcut_model(x):
    """Reads the object, except where it shows class 0: there it reads the corner (a partial shortcut)."""
    by_object = nearest(x[:, 4:12, 4:12, 0].mean(axis=(1, 2)), [0.25, 0.5, 0.75])
    by_corner = nearest(x[:, 0, 0, 1], [0.2, 0.4, 0.6])
    return one_hot_probs(np.where(by_object == 0, by_corner, by_object))


def test_bg_reliance_is_the_share_of_the_accuracy_the_background_decides():
    images, boxes, classes = shortcut_batch()
    cols = probe_scores(half_shortcut_model, images, boxes, classes, C, seed=1)
    np.testing.assert_array_equal(cols["bg_reliance"][:6], [1.0, 0, 0, 1, 0, 0])
    assert abs(np.nanmean(cols["bg_reliance"]) - 1 / 3) < 1e-12


def test_no_donor_of_the_same_class_is_nan_reliance_not_zero():
    images, boxes, _ = shortcut_batch()
    classes = np.array([0, 1, 2, 3, 4, 5, 6])  # every class once: Mixed-Rand has donors, Mixed-Same none
    cols = probe_scores(lambda x: np.eye(7, dtype=np.float32)[np.zeros(len(x), int)], images, boxes, classes, 7)
    assert np.isfinite(cols["bg_gap"][:6]).all()
    assert np.isnan(cols["mixed_same_correct"]).all() and np.isnan(cols["bg_reliance"]).all()


def test_predict_that_preprocesses_in_place_does_not_touch_the_input():
    images, boxes, classes = shortcut_batch()
    before = images.copy()

    def in_place(x):
        x -= 1.0  # as keras.applications preprocess_input does on a numpy array
        return corner_model(x + 1.0)

    cols = probe_scores(in_place, images, boxes, classes, C)
    np.testing.assert_array_equal(images, before)
    np.testing.assert_array_equal(cols["bg_gap"][:6], 1.0)


def test_skill_is_the_chance_rescaled_accuracy():
    images, boxes, classes = shortcut_batch()
    for c in (2, 3, 5):
        cols = probe_scores(lambda x, c=c: np.eye(c, dtype=np.float32)[np.zeros(len(x), int)],
                            images, boxes, classes % 2, c)
        correct = cols["bg_only_correct"]
        np.testing.assert_array_equal(cols["bg_only_skill"], (correct - 1.0 / c) / (1.0 - 1.0 / c))


def test_no_donor_of_another_class_is_nan_not_zero_gap():
    images, boxes, _ = shortcut_batch()
    cols = probe_scores(corner_model, images, boxes, np.zeros(7, int), C)
    assert np.isnan(cols["bg_gap"]).all() and np.isnan(cols["object_only_correct"]).all()
    np.testing.assert_array_equal(cols["bg_only_correct"][:6], [1, 0, 0, 1, 0, 0])


def test_full_image_box_has_no_background_to_probe():
    images, _, classes = shortcut_batch()
    boxes = [np.array([[0.0, 0.0, 16.0, 16.0]])] * 7
    cols = probe_scores(corner_model, images, boxes, classes, C)
    assert all(np.isnan(cols[name]).all() for name in COLUMNS)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((7, 16, 16))}, "shape"),
        ({"images": np.zeros((7, 16, 16, 2), np.float32)}, "1, 3 or 4 channels"),
        ({"boxes": [NO_BOX] * 5}, "5 entries but there are 7 images"),
        ({"class_ids": [0, 1, 2, 0, 1, 3, 0]}, "class id 3 is out of range"),
        ({"class_ids": [0, 1, 2]}, r"shape \[7\]"),
        ({"class_ids": [0.5] * 7}, "integers"),
        ({"fill": "noise"}, "mean, blur, inpaint"),
        ({"num_classes": 1}, ">= 2"),
        ({"predict": lambda x: np.zeros((len(x), 4), np.float32)}, r"expected \(7, 3\)"),
        ({"boxes": [np.array([[5.0, 0.0, 1.0, 2.0]])] * 7}, "x1 < x0"),
    ],
)
def test_probe_scores_usage_errors(kwargs, match):
    images, boxes, classes = shortcut_batch()
    args = {"predict": corner_model, "images": images, "boxes": boxes, "class_ids": classes, "num_classes": C}
    args.update(kwargs)
    with pytest.raises(UsageError, match=match):
        probe_scores(**args)


def test_tiny_keras_model():
    from validator._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(C, activation="softmax")(x))
    images, boxes, classes = shortcut_batch()
    before = images.copy()
    cols = probe_scores(lambda b: model(b).numpy(), images, boxes, classes, C, fill="blur")
    np.testing.assert_array_equal(images, before)
    bounds = {"bg_only_correct": (0, 1), "bg_only_skill": (-0.5, 1), "bg_only_confidence": (0, 1),
              "object_only_correct": (0, 1), "bg_gap": (-1, 1), "confidence_drop": (-1, 1)}
    for name, (lo, hi) in bounds.items():
        col = cols[name]
        assert col.shape == (7,) and np.isfinite(col[:6]).all() and np.isnan(col[6]), name
        assert np.all((col[:6] >= lo) & (col[:6] <= hi)), name


def test_tile_fill_copies_the_largest_strip_clear_of_the_objects():
    """8x8 image, box x in [2, 4): the largest strip outside it is columns 4..7 (width 4); box pixels take the
    values of that strip tiled from the left edge, so column c gets column 4 + (c mod 4)."""
    image = np.arange(64, dtype=np.float32).reshape(1, 8, 8, 1)
    out = background_only(image, [np.array([[2.0, 0.0, 4.0, 8.0]])], fill="tile")
    expected = image.copy()
    for c in (2, 3):
        expected[0, :, c, 0] = image[0, :, 4 + c % 4, 0]
    np.testing.assert_array_equal(out, expected)
    # a full-width box on row 2: the largest strip is rows 3..7, tiled from the top (row 2 takes row 3 + 2)
    row = background_only(image, [np.array([[0.0, 2.0, 8.0, 3.0]])], fill="tile")
    np.testing.assert_array_equal(row[0, 2], image[0, 5])
    # objects spanning the image both ways (a full row and a full column) leave no strip: the mean fill
    cross = [np.array([[0.0, 2.0, 8.0, 3.0], [2.0, 0.0, 3.0, 8.0]])]
    np.testing.assert_array_equal(background_only(image, cross, fill="tile"), background_only(image, cross, fill="mean"))


def test_tile_fill_does_not_copy_a_border_mark_into_the_object():
    """A class-coloured strip along the top edge and a corner tag stay where they are: the fill tiles a strip
    from inside the frame's border band, so no copy of either lands where the object was."""
    image = np.zeros((1, 40, 40, 3), np.float32)
    image[0, :2] = 255.0  # a strip 2 px thick along the top edge
    image[0, :4, 36:] = 128.0  # a tag in the top-right corner
    box = np.array([[4.0, 24.0, 36.0, 38.0]])  # wide and low: the strip above it (rows 0-23) is the largest
    out = background_only(image, [box], fill="tile")
    assert out[0, 24:38, 4:36].max() == 0.0  # neither mark was copied into the box
    np.testing.assert_array_equal(out[0, :4], image[0, :4])  # and both stay where they were
