"""Synthetic annotated sets (fast) and the control models' counterfactual ground truth (slow)."""

from __future__ import annotations

import csv
import json
import time
from xml.etree import ElementTree as ET

import cv2
import numpy as np
import pytest

from validator.datasets.controls import build_small_cnn, train_control
from validator.datasets.synthetic import (
    CUES,
    SHAPES,
    make_arrays,
    shuffled_cue_strength,
    watermark_region,
    write_dataset,
)

FOUR = ("disc", "square", "triangle", "cross")


def _fill_component(image: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From pixels alone: the most common colour inside the box and the largest connected region of
    exactly that colour (the flat-filled object)."""
    x0, y0, x1, y1 = box.astype(int)
    inside = image[y0:y1, x0:x1].reshape(-1, 3)
    colours, counts = np.unique(inside, axis=0, return_counts=True)
    fill = colours[counts.argmax()]
    same = np.all(image == fill, axis=-1).astype(np.uint8)
    n, components, stats, _ = cv2.connectedComponentsWithStats(same, connectivity=4)
    largest = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    return fill, components == largest


def _bbox(region: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(region)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_arrays_and_other_seed_differs():
    kwargs = {"seed": 3, "classes": FOUR, "cue": "watermark", "cue_strength": 0.7}
    first, second = make_arrays(24, **kwargs), make_arrays(24, **kwargs)
    for name in ("images", "labels", "boxes", "masks", "shape_ids", "cue_ids"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    other = make_arrays(24, **{**kwargs, "seed": 4})
    assert not np.array_equal(first.images, other.images)


def test_same_seed_with_another_cue_keeps_labels_and_objects():
    """Counterfactual pairs: only the cue differs."""
    base = make_arrays(40, seed=5, classes=FOUR)
    for cue in CUES:
        for strength in (1.0, 0.25):
            variant = make_arrays(40, seed=5, classes=FOUR, cue=cue, cue_strength=strength)
            np.testing.assert_array_equal(variant.labels, base.labels)
            np.testing.assert_array_equal(variant.masks, base.masks)
            np.testing.assert_array_equal(variant.boxes, base.boxes)


def test_labels_are_balanced():
    labels = make_arrays(301, seed=1, classes=FOUR[:3]).labels
    assert sorted(np.bincount(labels)) == [100, 100, 101]


# ------------------------------------------------------------------------------------------ objects


@pytest.mark.parametrize("cue", [None, *CUES])
def test_boxes_are_tight_around_the_drawn_object(cue):
    data = make_arrays(60, seed=7, classes=FOUR, cue=cue, image_size=64)
    area_fractions = []
    for image, box, mask in zip(data.images, data.boxes, data.masks, strict=True):
        fill, region = _fill_component(image, box)
        assert _bbox(region) == tuple(box.astype(int))
        np.testing.assert_array_equal(region, mask)
        # The pixels just outside the object are background, not more object.
        ring = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~region
        assert np.mean(np.all(image[ring] == fill, axis=-1)) < 0.02
        assert np.all(box == np.round(box)) and np.all(box[:2] < box[2:])
        area_fractions.append((box[2] - box[0]) * (box[3] - box[1]) / 64**2)
    assert min(area_fractions) >= 0.04 and max(area_fractions) <= 0.21


def test_drawn_shape_is_the_class_when_informative():
    # Share of the box the object fills: a fingerprint of each shape, read from the pixels.
    expected = {"disc": (0.72, 0.86), "square": (1.0, 1.0), "triangle": (0.45, 0.62), "cross": (0.45, 0.65)}
    data = make_arrays(120, seed=8, classes=FOUR)
    np.testing.assert_array_equal(data.shape_ids, data.labels)
    for image, box, label in zip(data.images, data.boxes, data.labels, strict=True):
        _, region = _fill_component(image, box)
        x0, y0, x1, y1 = box
        low, high = expected[FOUR[label]]
        assert low <= region.sum() / ((x1 - x0) * (y1 - y0)) <= high


def test_uninformative_shape_is_independent_of_label():
    data = make_arrays(2000, seed=9, cue="weather", shape_informative=False)
    assert abs(np.mean(data.shape_ids == data.labels) - 0.5) < 0.04
    np.testing.assert_array_equal(data.cue_ids, data.labels)


def test_backgrounds_are_textured_not_flat():
    data = make_arrays(20, seed=2)
    for image, mask in zip(data.images, data.masks, strict=True):
        background = image[~mask].astype(float)
        assert background.std(axis=0).min() > 5.0
        assert len(np.unique(background, axis=0)) > 500


# ------------------------------------------------------------------------------------------ cues


@pytest.mark.parametrize("cue", CUES)
def test_full_strength_cue_always_matches_label(cue):
    data = make_arrays(300, seed=1, classes=FOUR[:3], cue=cue, cue_strength=1.0)
    np.testing.assert_array_equal(data.cue_ids, data.labels)


def test_shuffled_cue_is_independent_of_label():
    data = make_arrays(2700, seed=2, classes=FOUR[:3], cue="weather", cue_strength=shuffled_cue_strength(3))
    table = np.zeros((3, 3))
    np.add.at(table, (data.labels, data.cue_ids), 1)
    # Every (label, cue) cell near 1/9 of the data: the cue carries no information about the label.
    np.testing.assert_allclose(table / table.sum(), 1 / 9, atol=0.015)


def test_partial_cue_strength_and_uniform_alternatives():
    data = make_arrays(2000, seed=3, classes=FOUR[:3], cue="weather", cue_strength=0.8)
    matches = data.cue_ids == data.labels
    assert abs(matches.mean() - 0.8) < 0.035
    wrong = data.cue_ids[~matches] - data.labels[~matches]
    # The other classes' cues are chosen uniformly: +1 and +2 (mod 3) equally often.
    assert abs(np.mean(wrong % 3 == 1) - 0.5) < 0.08
    assert abs(make_arrays(1000, seed=4, cue="weather", cue_strength=0.5).cue_ids.mean() - 0.5) < 0.06


def test_no_cue_when_cue_or_strength_is_none():
    for kwargs in ({"cue": None}, {"cue": "watermark", "cue_strength": None}):
        data = make_arrays(10, seed=0, **kwargs)
        assert np.all(data.cue_ids == -1) and data.cue is None
    np.testing.assert_array_equal(
        make_arrays(10, seed=0, cue="watermark", cue_strength=None).images, make_arrays(10, seed=0).images
    )


@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_watermark_sits_in_its_corner_and_never_touches_the_object(image_size):
    kwargs = {"seed": 11, "image_size": image_size, "classes": FOUR}
    plain = make_arrays(400, **kwargs)
    marked = make_arrays(400, cue="watermark", **kwargs)
    x0, y0, x1, y1 = (int(v) for v in watermark_region(image_size))
    assert x1 - x0 == image_size // 8
    outside = np.ones((image_size, image_size), bool)
    outside[y0:y1, x0:x1] = False
    changed = np.any(plain.images != marked.images, axis=-1)
    assert not changed[:, outside].any()
    glyphs = {}
    for box, cue_id, diff in zip(marked.boxes, marked.cue_ids, changed, strict=True):
        assert box[2] <= x0 or box[3] <= y0  # the box misses the corner
        glyphs.setdefault(int(cue_id), diff)
        np.testing.assert_array_equal(diff, glyphs[int(cue_id)])  # same glyph for the same class
    assert len(glyphs) == 4 and len({g.tobytes() for g in glyphs.values()}) == 4
    side = glyphs[0].any(axis=0).sum()
    assert 0.06 * image_size <= side <= max(4, 0.11 * image_size)


def test_weather_is_a_global_cast_sunny_bright_warm_cloudy_dark_blue():
    data = make_arrays(400, seed=12, cue="weather")
    pixels = data.images.reshape(len(data), -1, 3).astype(float).mean(axis=1)
    sunny, cloudy = pixels[data.cue_ids == 0], pixels[data.cue_ids == 1]
    assert sunny.mean() > cloudy.mean() + 40
    assert np.mean(sunny[:, 0] - sunny[:, 2]) > 30 and np.mean(cloudy[:, 2] - cloudy[:, 0]) > 15
    # Global: the cast moves the object's pixels too, not only the background.
    plain = make_arrays(400, seed=12)
    object_shift = [
        float(cast[m].mean() - base[m].mean())
        for cast, base, m, c in zip(data.images, plain.images, data.masks, data.cue_ids, strict=True)
        if c == 0
    ]
    assert np.mean(object_shift) > 10


def test_background_texture_depends_on_the_cue():
    data = make_arrays(200, seed=13, cue="background")
    anisotropy = []
    for image in data.images.astype(np.float32).mean(axis=-1):
        dy, dx = np.diff(image, axis=0), np.diff(image, axis=1)
        anisotropy.append(np.mean(dy**2) / np.mean(dx**2))
    anisotropy = np.array(anisotropy)
    # Stripes (cue 0) are near-horizontal: intensity changes mostly along y; blotches (cue 1) are not.
    assert np.median(anisotropy[data.cue_ids == 0]) > 3.0
    assert np.median(anisotropy[data.cue_ids == 1]) < 2.0


def test_invalid_arguments_raise():
    for kwargs in (
        {"cue": "rain"},
        {"classes": ("disc", "blob")},
        {"classes": ("disc",)},
        {"classes": ("disc", "disc")},
        {"cue": "weather", "cue_strength": 1.5},
        {"image_size": 16},
    ):
        with pytest.raises(ValueError):
            make_arrays(4, **kwargs)
    assert set(FOUR) == set(SHAPES)


# ------------------------------------------------------------------------------------------ files


def test_written_files_match_the_arrays(tmp_path):
    written = write_dataset(
        tmp_path, 12, formats=("coco", "voc", "csv"), seed=6, classes=FOUR[:3], cue="watermark"
    )
    arrays = written.arrays
    assert written.class_names == FOUR[:3]
    for path, image in zip(written.image_paths, arrays.images, strict=True):
        np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), image)

    coco = json.loads(written.coco_path.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "disc"), (2, "square"), (3, "triangle")]
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    for i, ann in enumerate(coco["annotations"]):
        assert (tmp_path / files[ann["image_id"]]) == written.image_paths[i]
        x, y, w, h = ann["bbox"]
        np.testing.assert_array_equal([x, y, x + w, y + h], arrays.boxes[i])
        assert ann["category_id"] == arrays.labels[i] + 1

    voc = written.voc_dir
    ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    assert len(ids) == 12
    for i, image_id in enumerate(ids):
        root = ET.parse(voc / "Annotations" / f"{image_id}.xml").getroot()
        filename = root.findtext("filename")
        assert (voc / "JPEGImages" / filename).read_bytes() == written.image_paths[i].read_bytes()
        assert root.findtext("object/name") == FOUR[arrays.labels[i]]
        xmin, ymin, xmax, ymax = (
            int(root.findtext(f"object/bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")
        )
        np.testing.assert_array_equal(
            [xmin - 1, ymin - 1, xmax, ymax], arrays.boxes[i]
        )  # VOC: 1-based, inclusive

    with written.manifest_path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["image", "label", "xmin", "ymin", "xmax", "ymax"]
    for i, row in enumerate(rows):
        assert tmp_path / row["image"] == written.image_paths[i]
        assert row["label"] == FOUR[arrays.labels[i]]
        np.testing.assert_array_equal(
            [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")], arrays.boxes[i]
        )


def test_write_dataset_defaults_to_coco_and_rejects_unknown_formats(tmp_path):
    written = write_dataset(tmp_path / "a", 3)
    assert written.coco_path.exists() and written.voc_dir is None and written.manifest_path is None
    with pytest.raises(ValueError, match="formats"):
        write_dataset(tmp_path / "b", 3, formats=("yolo",))


# ------------------------------------------------------------------------------------------ controls


def test_small_cnn_has_a_cam_ready_head():
    model = build_small_cnn(64, 3)
    last_conv = model.get_layer("last_conv")
    assert tuple(last_conv.output.shape[1:3]) in {(8, 8), (16, 16)}
    assert type(model.layers[-2]).__name__ == "GlobalAveragePooling2D"
    assert model.layers[-1].units == 3
    probabilities = np.asarray(model(np.full((2, 64, 64, 3), 255.0, np.float32)))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_unknown_control_kind_raises(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        train_control("sunny", cache_dir=tmp_path)


def _accuracy(control, images, labels) -> float:
    probabilities = control.load().predict(images.astype(np.float32), batch_size=200, verbose=0)
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def _read_images(written) -> np.ndarray:
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in written.image_paths])


@pytest.mark.slow
def test_clean_control_learns_the_shape_and_ignores_every_cue(clean_model, heldout_coco):
    assert clean_model.accuracy >= 0.9
    assert clean_model.counterfactual_accuracy >= 0.9
    for cue in CUES:
        assert clean_model.metrics[f"{cue}_full"] >= 0.9
        assert abs(clean_model.metrics[f"{cue}_full"] - clean_model.accuracy) <= 0.05
        heldout = heldout_coco(cue, 200, seed=1)  # read back from disk, test seeds
        assert _accuracy(clean_model, _read_images(heldout), heldout.arrays.labels) >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("kind", CUES)
def test_shortcut_control_falls_to_chance_without_its_cue(kind, request, heldout_coco):
    control = request.getfixturevalue(f"{kind}_model")
    assert control.kind == kind and control.params["shape_informative"] is False
    assert control.accuracy >= 0.95
    assert control.counterfactual_accuracy <= 0.65
    heldout = heldout_coco(kind, 200, seed=2)
    assert _accuracy(control, _read_images(heldout), heldout.arrays.labels) >= 0.95
    shuffled = make_arrays(400, seed=3, cue=kind, cue_strength=0.5)
    assert _accuracy(control, shuffled.images, shuffled.labels) <= 0.65


@pytest.mark.slow
def test_cached_control_loads_in_under_a_second(watermark_model, control_cache_dir):
    start = time.perf_counter()
    again = train_control("watermark", seed=watermark_model.seed, cache_dir=control_cache_dir)
    assert time.perf_counter() - start < 1.0
    assert again == watermark_model and again.path.exists()
