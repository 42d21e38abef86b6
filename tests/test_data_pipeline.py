"""tf.data batching: coverage, skipped images, box scaling and clipping, resizing and preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from validator._tf import keras
from validator.data import Sample, iter_batches
from validator.data.pipeline import resize_image
from validator.errors import UsageError


def solid(path: Path, width: int, height: int, rgb=(200, 100, 50)) -> str:
    image = np.zeros((height, width, 3), np.uint8)
    image[...] = rgb[::-1]  # cv2 writes BGR
    assert cv2.imwrite(str(path), image)
    return str(path)


def sample(sid, path, boxes=(), class_id=0, size=None) -> Sample:
    ids = tuple(f"{sid}:{i}" for i in range(len(boxes)))
    return Sample(sid, path, class_id, f"c{class_id}", tuple(boxes), ids, size)


@pytest.fixture
def mixed(tmp_path):
    """Good images of several sizes, plus a corrupt and a missing one."""
    wide = solid(tmp_path / "wide.png", 40, 20)
    small = solid(tmp_path / "small.png", 10, 10, rgb=(0, 255, 30))
    (tmp_path / "bad.png").write_bytes(np.random.default_rng(0).bytes(300))
    return [
        sample("wide#c0", wide, [(4, 2, 20, 10)]),
        sample("wide#c1", wide, [(-2, 0, 50, 8)], class_id=1),  # same image, other class, box overflows
        sample("bad", str(tmp_path / "bad.png"), [(0, 0, 2, 2)]),
        sample("small", small, [(1, 1, 5, 5)]),
        sample("gone", str(tmp_path / "gone.png")),
        sample("nobox", small, (), class_id=None),
    ]


def run(samples, **kwargs):
    issues = []
    kwargs.setdefault("input_size", (10, 20))  # (height, width)
    kwargs.setdefault("batch_size", 2)
    batches = list(iter_batches(samples, issues=issues, **kwargs))
    return batches, issues


def test_batches_cover_good_samples_once_in_order(mixed):
    batches, issues = run(mixed)
    assert [len(b.indices) for b in batches] == [2, 2]
    assert np.concatenate([b.indices for b in batches]).tolist() == [0, 1, 3, 5]
    for b in batches:
        assert b.images.shape == (len(b.indices), 10, 20, 3) and b.images.dtype == np.float32
        assert b.raw.shape == b.images.shape and b.raw.dtype == np.uint8
    skipped = {i.file.rsplit("/", 1)[-1]: i for i in issues if i.action == "skipped_sample"}
    assert set(skipped) == {"bad.png", "gone.png"}
    assert "decode" in skipped["bad.png"].reason and skipped["bad.png"].annotation == "bad:0"
    assert "not found" in skipped["gone.png"].reason


def test_boxes_scaled_and_clipped(mixed):
    batches, issues = run(mixed)
    boxes = [box for b in batches for box in b.boxes]
    # wide: 40x20 -> 20x10, factors (0.5, 0.5)
    np.testing.assert_allclose(boxes[0], [[2, 1, 10, 5]])
    # overflowing box clipped to the decoded 40x20 image first: (0, 0, 40, 8) -> (0, 0, 20, 4)
    np.testing.assert_allclose(boxes[1], [[0, 0, 20, 4]])
    # small: 10x10 -> 20x10, factors (2, 1)
    np.testing.assert_allclose(boxes[2], [[2, 1, 10, 5]])
    assert boxes[3].shape == (0, 4)
    (clipped,) = [i for i in issues if i.action == "clipped_box"]
    assert clipped.annotation == "wide#c1:0" and "clipped to [0, 0, 40, 8]" in clipped.reason


def test_pixels_and_unit_preprocess(mixed):
    batches, _ = run(mixed, preprocess="unit")
    first = batches[0]
    assert first.raw[0, 3, 7].tolist() == [200, 100, 50]  # RGB order kept through resizing
    np.testing.assert_allclose(first.images[0, 3, 7], [200 / 255, 100 / 255, 50 / 255], rtol=1e-6)
    np.testing.assert_allclose(batches[1].images[0, 0, 0], [0, 1, 30 / 255], rtol=1e-6)


@pytest.mark.parametrize(("mode", "keras_mode"), [("caffe", "caffe"), ("torch", "torch"), ("symmetric", "tf")])
def test_preprocess_matches_keras_applications(tmp_path, mode, keras_mode):
    path = solid(tmp_path / "x.png", 20, 10, rgb=(12, 150, 240))
    (batch,) = list(iter_batches([sample("x", path)], input_size=(10, 20), batch_size=4, preprocess=mode))
    expected = keras.applications.imagenet_utils.preprocess_input(
        batch.raw.astype(np.float32), mode=keras_mode, data_format="channels_last"
    )
    np.testing.assert_allclose(batch.images, np.asarray(expected), rtol=1e-5, atol=1e-4)


def test_converted_image_and_annotated_size_mismatch(tmp_path):
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((10, 20), 70, np.uint8))
    samples = [sample("g", str(gray), [(0, 0, 4, 4)]), sample("g2", str(gray), [(0, 0, 4, 4)], size=(30, 10))]
    batches, issues = run(samples, batch_size=8)
    assert batches[0].indices.tolist() == [0] and np.all(batches[0].raw == 70)
    converted = [i for i in issues if i.action == "converted_image"]
    assert len(converted) == 1 and converted[0].reason == "grayscale -> RGB"  # decoded once, recorded once
    (skip,) = [i for i in issues if i.action == "skipped_sample"]
    assert skip.reason == "decoded image is 20x10 but the annotation says 30x10"


def test_box_entirely_outside_skips_sample(tmp_path):
    path = solid(tmp_path / "a.png", 20, 10)
    batches, issues = run([sample("a", path, [(25, 0, 30, 5)]), sample("b", path, [(0, 0, 5, 5)])])
    assert np.concatenate([b.indices for b in batches]).tolist() == [1]
    assert [i.action for i in issues] == ["skipped_box", "skipped_sample"]


def test_preprocess_error_keeps_its_type(tmp_path):
    path = solid(tmp_path / "a.png", 20, 10)
    with pytest.raises(UsageError, match="preprocess returned shape"):
        run([sample("a", path)], preprocess=lambda x: x[:, :5])


def test_empty_sample_list_yields_nothing():
    assert run([]) == ([], [])


def test_resize_uses_area_to_shrink_and_linear_to_enlarge():
    image = np.zeros((6, 6, 3), np.uint8)
    image[1, 1] = 90  # the centre pixel of the top-left 3x3 block
    shrunk = resize_image(image, 2, 2)
    assert shrunk[0, 0, 0] == 10  # area average 90 / 9 (linear would sample the centre: 90)
    row = np.zeros((1, 2, 3), np.uint8)
    row[0, 1] = 100
    grown = resize_image(row, 4, 1)
    assert grown[0, :, 0].tolist() == [0, 25, 75, 100]  # half-pixel-centred linear interpolation
