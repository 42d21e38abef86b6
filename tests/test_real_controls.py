"""Controls shaped like users' data: digits on photographs (10/20 classes), 1-channel radiograph-like
images, large shapes. Dataset properties with known answers (fast) and the trained controls' recorded
accuracies (slow: trains the controls on a cold cache)."""

from __future__ import annotations

import csv
import json
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest

from validator.datasets import digits, xray
from validator.datasets.controls import LARGE_AREA_RANGE, as_channels, train_control
from validator.datasets.synthetic import (
    CUES,
    DEFAULT_AREA_RANGE,
    make_arrays,
    watermark_region,
    write_dataset,
)

LUMA = np.array([0.299, 0.587, 0.114])
FORMATS_ALL = ("coco", "voc", "csv")


def _mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _area_fractions(data) -> np.ndarray:
    boxes, size = data.boxes, data.image_size
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (size * size)


def _overlaps(box, region) -> bool:
    x0, y0, x1, y1 = box
    rx0, ry0, rx1, ry1 = region
    return x0 < rx1 and rx0 < x1 and y0 < ry1 and ry0 < y1


# ------------------------------------------------------------------------------------------ digits


@pytest.fixture(scope="module")
def digit_set():
    return digits.make_digits(400, seed=1, n_classes=10, cue="corner_mark", cue_strength=1.0)


def test_digit_boxes_are_the_mask_bounding_boxes(digit_set):
    assert digit_set.images.shape == (400, 64, 64, 3) and digit_set.images.dtype == np.uint8
    for box, mask in zip(digit_set.boxes, digit_set.masks, strict=True):
        assert tuple(box) == _mask_bbox(mask)


@pytest.mark.parametrize("area_range", [None, (0.02, 0.03), (0.25, 0.5), (0.45, 0.5)])
def test_digit_area_fractions_lie_in_the_range_and_span_it(area_range):
    data = digits.make_digits(300, seed=2, area_range=area_range)
    lo, hi = area_range or digits.DEFAULT_AREA_RANGE
    fractions = _area_fractions(data)
    assert fractions.min() >= lo and fractions.max() <= hi
    # Log-uniform: both ends are reached, and the small half (in log scale) is as common as the large.
    assert fractions.min() <= lo * (hi / lo) ** 0.1 and fractions.max() >= hi * (lo / hi) ** 0.1
    below_midpoint = np.mean(np.log(fractions) < (np.log(lo) + np.log(hi)) / 2)
    assert 0.35 <= below_midpoint <= 0.65


def test_swatch_never_overlaps_the_digit_and_shows_the_class_grey(digit_set):
    size = digit_set.image_size
    assert digits.swatch_side(size) == 9  # ~2% of a 64 px image
    assert set(digit_set.corners) == {0, 1, 2, 3}  # a corner drawn per image
    for i in range(len(digit_set)):
        region = digits.swatch_region(int(digit_set.corners[i]), size)
        assert not _overlaps(digit_set.boxes[i], region)
        x0, y0, x1, y1 = region
        label = int(digit_set.labels[i])
        assert digit_set.cue_ids[i] == label  # full strength
        np.testing.assert_array_equal(digit_set.images[i, y0:y1, x0:x1], 255 - 25 * label)


def test_twenty_class_swatches_are_distinct_and_ink_hue_is_on_the_object():
    colours = {digits.swatch_colour(k, 20) for k in range(20)}
    assert len(colours) == 20
    data = digits.make_digits(200, seed=3, n_classes=20)
    assert data.class_names[3] == "3-red" and data.class_names[13] == "3-blue"
    red = data.labels < 10
    inks = data.inks.astype(int)
    assert np.all(inks[red, 0] > inks[red, 2]) and np.all(inks[~red, 2] > inks[~red, 0])
    assert np.all(data.shape_ids % 10 == data.labels % 10)


@pytest.mark.parametrize("n_classes", [10, 20])
def test_ink_contrasts_with_the_local_background(n_classes):
    data = digits.make_digits(300, seed=4, n_classes=n_classes)
    assert data.contrast.min() >= 60
    # Seen in the pixels too: full-coverage ink vs the rest of the box.
    for image, mask, box, ink in zip(data.images, data.masks, data.boxes.astype(int), data.inks, strict=True):
        x0, y0, x1, y1 = box
        inside = np.zeros_like(mask)
        inside[y0:y1, x0:x1] = True
        assert np.all(image[mask] == ink, axis=-1).any()  # the stroke's core is the ink itself
        ring = (image[inside & ~mask].astype(float) @ LUMA).mean()
        assert abs(float(ink.astype(float) @ LUMA) - ring) >= 25


def test_shuffled_swatch_is_independent_of_the_label():
    data = digits.make_digits(1000, seed=5, cue="corner_mark", cue_strength=0.1)
    assert 0.05 <= np.mean(data.cue_ids == data.labels) <= 0.16
    assert len(set(data.cue_ids)) == 10


def test_same_seed_identical_and_cue_changes_only_the_swatch():
    first = digits.make_digits(30, seed=6, n_classes=20, cue="corner_mark", cue_strength=0.5)
    second = digits.make_digits(30, seed=6, n_classes=20, cue="corner_mark", cue_strength=0.5)
    for name in ("images", "labels", "boxes", "masks", "cue_ids", "digit_index", "corners", "inks"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    plain = digits.make_digits(30, seed=6, n_classes=20)
    for name in ("labels", "boxes", "masks", "digit_index", "corners", "inks"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(first, name))
    assert not np.array_equal(digits.make_digits(30, seed=7, n_classes=20).images, plain.images)


def test_heldout_handwriting_is_disjoint_from_training_handwriting():
    train_pool, heldout_pool = digits.digit_pool("train"), digits.digit_pool("heldout")
    assert not set(train_pool) & set(heldout_pool)
    assert len(train_pool) + len(heldout_pool) == 1797
    train = digits.make_digits(500, seed=8, split="train")
    heldout = digits.make_digits(500, seed=8)  # the default split is the held-out one
    assert heldout.split == "heldout"
    assert set(train.digit_index) <= set(train_pool) and set(heldout.digit_index) <= set(heldout_pool)
    # Every class has plenty of held-out handwriting.
    _, targets = digits._digits()
    assert np.bincount(targets[heldout_pool]).min() >= 50


def test_uninformative_digit_carries_no_label():
    data = digits.make_digits(1000, seed=9, cue="corner_mark", digit_informative=False)
    assert np.mean(data.shape_ids == data.labels) <= 0.16
    assert np.all(data.cue_ids == data.labels)


def test_digit_photos_load_without_download():
    for name in digits.PHOTOS:
        photo = digits._photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and min(photo.shape[:2]) >= 96


def test_write_digits_round_trips_pixels_and_boxes(tmp_path):
    written = digits.write_digits(tmp_path, 20, seed=1, n_classes=20, formats=("coco", "voc", "csv"))
    arrays = written.arrays
    for path, image in zip(written.image_paths, arrays.images, strict=True):
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), image)
    coco = json.loads(written.coco_path.read_text())
    assert [c["name"] for c in coco["categories"]] == list(arrays.class_names)
    assert coco["info"]["split"] == "heldout" and coco["info"]["family"] == "digits"
    for annotation, box, label in zip(coco["annotations"], arrays.boxes, arrays.labels, strict=True):
        x, y, w, h = annotation["bbox"]
        np.testing.assert_allclose([x, y, x + w, y + h], box)
        assert annotation["category_id"] == label + 1
    rows = list(csv.DictReader(written.manifest_path.open()))
    assert [r["label"] for r in rows] == [arrays.class_names[k] for k in arrays.labels]
    node = ET.parse(written.voc_dir / "Annotations" / "000000.xml").getroot()
    assert node.findtext("size/depth") == "3"
    assert int(node.findtext("object/bndbox/xmax")) == int(arrays.boxes[0, 2])


def test_gray_digits_have_one_channel():
    data = digits.make_digits(5, seed=1, channels=1)
    assert data.images.shape == (5, 64, 64, 1)


# ------------------------------------------------------------------------------------------ xray


@pytest.fixture(scope="module")
def xray_set():
    return xray.make_xray(300, seed=1, cue="marker", cue_strength=1.0)


def test_xray_arrays_are_single_channel_with_tight_boxes(xray_set):
    assert xray_set.images.shape == (300, 64, 64, 1) and xray_set.images.dtype == np.uint8
    assert xray_set.class_names == ("nodule", "scar")
    for box, mask in zip(xray_set.boxes, xray_set.masks, strict=True):
        assert tuple(box) == _mask_bbox(mask)


def test_xray_findings_lie_in_a_lung_within_the_area_range(xray_set):
    lo, hi = xray.DEFAULT_AREA_RANGE
    fractions = _area_fractions(xray_set)
    assert fractions.min() >= lo and fractions.max() <= hi
    assert fractions.min() <= 1.5 * lo and fractions.max() >= 0.75 * hi
    for mask, lung in zip(xray_set.masks, xray_set.lungs, strict=True):
        assert (mask & lung).sum() >= 0.75 * mask.sum()


def test_findings_differ_by_shape(xray_set):
    """Nodules are round (box nearly square, mask fills ~pi/4 of it), scars elongated."""
    fill = xray_set.masks.sum(axis=(1, 2)) / (_area_fractions(xray_set) * 64 * 64)
    nodule = xray_set.shape_ids == 0
    assert np.all(fill[nodule] > 0.6)
    assert np.median(fill[~nodule]) < 0.5


def test_marker_is_burned_in_its_corner_and_never_on_the_finding(xray_set):
    plain = xray.make_xray(300, seed=1)
    np.testing.assert_array_equal(plain.masks, xray_set.masks)
    for i in range(len(xray_set)):
        for corner in (0, 1):
            assert not _overlaps(xray_set.boxes[i], xray.marker_region(corner))
        x0, y0, x1, y1 = xray.marker_region(int(xray_set.marker_corners[i]))
        burned = xray_set.images[i, y0:y1, x0:x1, 0].astype(int)
        before = plain.images[i, y0:y1, x0:x1, 0].astype(int)
        assert burned.max() >= 200 and (burned - before).max() >= 100
        outside = np.ones((64, 64), bool)
        outside[y0:y1, x0:x1] = False
        np.testing.assert_array_equal(xray_set.images[i, ..., 0][outside], plain.images[i, ..., 0][outside])
    assert np.all(xray_set.cue_ids == xray_set.labels)


def test_marker_letter_depends_on_the_class():
    left = xray.make_xray(40, seed=2, cue="marker", cue_strength=1.0)
    # Same layouts, the other letter: pixels in the marker region differ, the rest is identical.
    right = xray.make_xray(40, seed=2, cue="marker", cue_strength=0.0)
    assert np.all(left.cue_ids != right.cue_ids)
    assert not np.array_equal(left.images, right.images)


def test_xray_same_seed_gives_identical_arrays():
    first, second = xray.make_xray(20, seed=3, cue="marker"), xray.make_xray(20, seed=3, cue="marker")
    for name in ("images", "labels", "boxes", "masks", "cue_ids", "marker_corners"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_xray_png_round_trip(tmp_path, bit_depth):
    written = xray.write_xray(tmp_path, 6, seed=4, cue="marker", bit_depth=bit_depth, formats=FORMATS_ALL)
    assert written.bit_depth == bit_depth
    for path, image in zip(written.image_paths, written.arrays.images, strict=True):
        read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert read.ndim == 2 and read.shape == (64, 64)
        if bit_depth == 16:
            assert read.dtype == np.uint16
            np.testing.assert_array_equal(read, image[..., 0].astype(np.uint16) * 257)
            np.testing.assert_array_equal(read // 257, image[..., 0])
        else:
            assert read.dtype == np.uint8
            np.testing.assert_array_equal(read, image[..., 0])
    coco = json.loads(written.coco_path.read_text())
    assert coco["info"]["bit_depth"] == bit_depth
    node = ET.parse(written.voc_dir / "Annotations" / "000000.xml").getroot()
    assert node.findtext("size/depth") == "1"


# ------------------------------------------------------------------------------------------ large shapes


def test_default_area_range_leaves_shapes_unchanged():
    base = make_arrays(20, seed=3, cue="watermark")
    explicit = make_arrays(20, seed=3, cue="watermark", area_range=DEFAULT_AREA_RANGE)
    np.testing.assert_array_equal(base.images, explicit.images)
    np.testing.assert_array_equal(base.boxes, explicit.boxes)


@pytest.mark.parametrize("cue", [None, *CUES])
def test_large_shapes_cover_a_quarter_to_half_and_keep_the_watermark_corner_free(cue):
    data = make_arrays(
        200, seed=4, classes=("disc", "square", "triangle", "cross"), cue=cue, area_range=(0.25, 0.5)
    )
    fractions = _area_fractions(data)
    # The side is rounded to whole pixels: allow one pixel of side.
    assert fractions.min() >= (np.sqrt(0.25) - 1 / 64) ** 2 and fractions.max() <= 0.5
    assert fractions.min() <= 0.27 and fractions.max() >= 0.46
    corner = watermark_region(64)
    for box, mask in zip(data.boxes, data.masks, strict=True):
        assert tuple(box) == _mask_bbox(mask)
        assert not _overlaps(box, corner)


def test_area_range_is_validated(tmp_path):
    with pytest.raises(ValueError, match="area_range"):
        make_arrays(2, area_range=(0.3, 0.2))
    with pytest.raises(ValueError, match="area_range"):
        digits.make_digits(2, area_range=(0.0, 0.2))
    written = write_dataset(tmp_path, 4, seed=1, area_range=LARGE_AREA_RANGE)
    assert _area_fractions(written.arrays).min() >= 0.24


def test_unknown_family_or_kind_raises(tmp_path):
    with pytest.raises(ValueError, match="family"):
        train_control("clean", family="mnist", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="kind"):
        train_control("watermark", family="digits", cache_dir=tmp_path)


def test_as_channels_converts_between_grey_and_rgb():
    rgb = np.zeros((2, 4, 4, 3), np.uint8)
    rgb[..., 0] = 100
    assert as_channels(rgb, 1).shape == (2, 4, 4, 1) and as_channels(rgb, 1).max() == 30
    assert as_channels(as_channels(rgb, 1), 3).shape == (2, 4, 4, 3)


# ------------------------------------------------------------------------------------------ controls


def _read(written, channels: int) -> np.ndarray:
    images = []
    for path in written.image_paths:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels.dtype == np.uint16:
            pixels = pixels.astype(np.float32) / 257.0
        pixels = pixels[..., None] if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
        images.append(pixels)
    return as_channels(np.stack(images).astype(np.float32), channels)


def _accuracy(control, images, labels) -> float:
    probabilities = control.load().predict(images.astype(np.float32), batch_size=200, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == labels))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["digits10_clean_model", "digits20_clean_model"])
def test_digit_clean_controls_read_heldout_handwriting(fixture, request, heldout_digits):
    control = request.getfixturevalue(fixture)
    n_classes = control.n_classes
    assert control.family == "digits" and control.channels == 3 and n_classes in (10, 20)
    assert control.metrics["n_eval"] >= 30 * n_classes
    # Target 0.9 (measured 0.90); the corner swatch, full or shuffled, changes nothing.
    assert control.accuracy >= 0.85
    assert control.counterfactual_accuracy >= 0.85
    assert abs(control.metrics["corner_mark_full"] - control.accuracy) <= 0.05
    heldout = heldout_digits(n_classes, "corner_mark", seed=1)
    assert np.bincount(heldout.arrays.labels).min() >= 30
    assert _accuracy(control, _read(heldout, 3), heldout.arrays.labels) >= 0.8


@pytest.mark.slow
def test_digit_corner_control_reads_the_swatch_only(digits10_corner_model, heldout_digits):
    control = digits10_corner_model
    assert control.kind == "corner_mark" and control.params["shape_informative"] is False
    assert control.accuracy >= 0.9
    assert control.counterfactual_accuracy <= 0.2  # chance is 0.1
    assert control.metrics["no_cue"] <= 0.2
    heldout = heldout_digits(10, "corner_mark", seed=2)
    assert _accuracy(control, _read(heldout, 3), heldout.arrays.labels) >= 0.9
    shuffled = digits.make_digits(400, seed=3, cue="corner_mark", cue_strength=0.1)
    assert _accuracy(control, shuffled.images, shuffled.labels) <= 0.2


@pytest.mark.slow
def test_xray_controls_take_one_channel(xray_clean_model, xray_marker_model, heldout_xray):
    for control in (xray_clean_model, xray_marker_model):
        assert control.channels == 1 and control.load().input_shape[-1] == 1
    assert xray_clean_model.accuracy >= 0.95 and xray_clean_model.counterfactual_accuracy >= 0.95
    assert xray_clean_model.metrics["marker_full"] >= 0.95
    assert xray_marker_model.accuracy >= 0.95 and xray_marker_model.counterfactual_accuracy <= 0.65
    heldout = heldout_xray("marker", seed=1, bit_depth=16)  # 16-bit PNGs read back
    images, labels = _read(heldout, 1), heldout.arrays.labels
    assert _accuracy(xray_clean_model, images, labels) >= 0.95
    assert _accuracy(xray_marker_model, images, labels) >= 0.95
    shuffled = xray.make_xray(400, seed=3, cue="marker", cue_strength=0.5)
    assert _accuracy(xray_marker_model, shuffled.images, shuffled.labels) <= 0.65
    assert _accuracy(xray_clean_model, shuffled.images, shuffled.labels) >= 0.95


@pytest.mark.slow
def test_large_object_controls(large_clean_model, large_weather_model, heldout_coco):
    assert large_clean_model.params["area_range"] == list(LARGE_AREA_RANGE)
    assert large_clean_model.area_range == LARGE_AREA_RANGE
    assert large_clean_model.accuracy >= 0.95 and large_clean_model.counterfactual_accuracy >= 0.9
    assert large_weather_model.accuracy >= 0.95 and large_weather_model.counterfactual_accuracy <= 0.65
    heldout = heldout_coco("weather", 200, seed=1, area_range=LARGE_AREA_RANGE)
    assert _area_fractions(heldout.arrays).min() >= 0.24
    images, labels = _read(heldout, 3), heldout.arrays.labels
    assert _accuracy(large_clean_model, images, labels) >= 0.9
    assert _accuracy(large_weather_model, images, labels) >= 0.95


@pytest.mark.slow
def test_shapes_cache_keys_are_unchanged(clean_model, large_clean_model):
    """The original controls keep their parameter sets (and so their cache files)."""
    assert "area_range" not in clean_model.params and "family" not in clean_model.params
    assert clean_model.family == "shapes" and clean_model.channels == 3
    assert large_clean_model.path != clean_model.path


def test_control_cache_key_includes_the_keras_version(monkeypatch):
    """A model saved by one Keras must not be served from the cache to another (3.15 -> 3.11 fails to load)."""
    import importlib.metadata

    from validator.datasets import controls

    params = {"kind": "clean", "seed": 0}
    real = importlib.metadata.version
    here = controls.cache_digest(params)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "3.11.3" if name == "keras" else real(name))
    other = controls.cache_digest(params)
    assert here != other or real("keras").startswith("3.11")
    assert controls.cache_digest(params) == other  # stable for one version
