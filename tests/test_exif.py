"""EXIF orientation (issue 22): recorded per image, and applied to the image and its boxes and masks together
on request (``--exif-orientation apply``). Known answers: a scene whose object sits off-centre on the
*displayed* image, stored turned with the orientation tag a camera writes; the box drawn on the displayed image
lands on the object only when the orientation is applied. Pillow's ``ImageOps.exif_transpose`` (the kept
library) is the reference for every orientation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image, ImageOps

from validator.data import load_dataset
from validator.data.images import read_image
from validator.errors import UsageError

BACKGROUND, OBJECT = 20, 230
BOX = (8, 36, 24, 52)  # x0, y0, x1, y1 on the displayed image, 48 wide x 64 tall


def displayed_scene() -> np.ndarray:
    """What a viewer shows (and an annotation tool that applied the orientation showed): 48 x 64, the object
    a bright square in the lower left."""
    scene = np.full((64, 48, 3), BACKGROUND, np.uint8)
    x0, y0, x1, y1 = BOX
    scene[y0:y1, x0:x1] = OBJECT
    return scene


def save_with_orientation(path: Path, stored: np.ndarray, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    options = {"quality": 95, "subsampling": 0} if path.suffix == ".jpg" else {}
    Image.fromarray(stored).save(path, exif=exif.tobytes(), **options)
    return path


def camera_file(path: Path) -> Path:
    """The displayed scene stored as a camera held upright stores it: turned 90 degrees counter-clockwise,
    EXIF orientation 6 ("rotate 90 degrees clockwise to display")."""
    path = save_with_orientation(path, np.ascontiguousarray(np.rot90(displayed_scene(), 1)), 6)
    with Image.open(path) as handle:  # the construction, checked with the kept library
        assert np.abs(np.asarray(ImageOps.exif_transpose(handle)).astype(int) - displayed_scene()).max() <= 8
    return path


def object_share_in_box(image: np.ndarray, box) -> float:
    """Share of the box's pixels that are the object (bright)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    inside = image[y0:y1, x0:x1, 0]
    return float(np.mean(inside > 128)) if inside.size else 0.0


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_apply_turns_the_image_to_its_displayed_orientation_and_ignore_notes_it(tmp_path, suffix):
    path = camera_file(tmp_path / f"camera{suffix}")
    stored, notes = read_image(path)  # the default: ignore
    assert stored.shape == (48, 64, 3)
    assert notes == ["EXIF orientation 6 ignored: boxes are read in stored-pixel coordinates"]
    assert object_share_in_box(stored, BOX) < 0.1  # the displayed box on the stored pixels: background

    shown, notes = read_image(path, exif_orientation="apply")
    assert shown.shape == (64, 48, 3)
    assert notes == ["EXIF orientation 6 applied: the stored 64x48 image rotated 90 degrees clockwise to its "
                     "displayed 48x64; boxes are read in displayed coordinates"]
    assert object_share_in_box(shown, BOX) == 1.0
    assert np.abs(shown.astype(int) - displayed_scene()).max() <= (0 if suffix == ".png" else 8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_turned_as_pillow_turns_it(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = save_with_orientation(tmp_path / f"o{orientation}.png", stored, orientation)
    shown, notes = read_image(path, exif_orientation="apply")
    with Image.open(path) as handle:
        expected = np.asarray(ImageOps.exif_transpose(handle))
    np.testing.assert_array_equal(shown, expected)
    assert len(notes) == (orientation != 1)
    # grayscale and 16-bit go through the same turn
    gray, _ = read_image(path, channels=1, exif_orientation="apply")
    assert gray.shape[:2] == expected.shape[:2]


def test_odd_orientation_values_are_noted_and_change_nothing(tmp_path):
    stored = np.full((4, 6, 3), 90, np.uint8)
    image, notes = read_image(save_with_orientation(tmp_path / "nine.png", stored, 9), exif_orientation="apply")
    assert image.shape == (4, 6, 3)
    assert notes == ["EXIF orientation 9 is not a valid value (1-8): ignored"]
    for value in (0, 1):  # 0: "unknown", written by some cameras; 1: as stored
        assert read_image(save_with_orientation(tmp_path / f"v{value}.png", stored, value))[1] == []
    with pytest.raises(UsageError, match="exif_orientation must be .ignore."):
        read_image(tmp_path / "nine.png", exif_orientation="rotate")


def _coco(tmp_path: Path, image: Path) -> Path:
    """COCO as a tool that showed the turned image writes it: displayed size, box and polygon."""
    x0, y0, x1, y1 = BOX
    doc = {
        "images": [{"id": 1, "file_name": image.name, "width": 48, "height": 64}],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "disc"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": 256, "iscrowd": 0,
                         "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return path


def _csv(tmp_path: Path, image: Path) -> Path:
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "xmin", "ymin", "xmax", "ymax"])
        writer.writerow([image.name, "square", *BOX])
        writer.writerow([image.name, "disc", 30, 2, 40, 12])  # a second class, for the class count
    return path


def _one_batch(dataset, input_size=(64, 48)):
    from validator.data import iter_batches

    issues: list = []
    batches = list(iter_batches(dataset.samples, input_size=input_size, batch_size=4, issues=issues))
    return (batches[0] if batches else None), issues


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_apply_puts_the_displayed_box_and_mask_on_the_object(tmp_path, suffix):
    image = camera_file(tmp_path / f"camera{suffix}")
    dataset = load_dataset(_coco(tmp_path, image), exif_orientation="apply")
    batch, issues = _one_batch(dataset)
    assert [i.action for i in issues] == ["exif_orientation"]
    assert issues[0].reason.startswith("EXIF orientation 6 applied") and issues[0].file == str(image.resolve())
    np.testing.assert_allclose(batch.boxes[0], [BOX])
    assert object_share_in_box(batch.raw[0], BOX) == 1.0  # the box lands on the object
    assert batch.regions[0] == "mask"
    mask = batch.masks[0]
    bright = batch.raw[0][..., 0] > 128
    assert mask.sum() == 256 and np.array_equal(mask, bright)  # the mask is the object, pixel for pixel

    # ignored (the default), the displayed size does not fit the stored pixels: skipped, with the reason
    batch, issues = _one_batch(load_dataset(_coco(tmp_path, image)))
    assert batch is None
    assert [(i.action, i.reason) for i in issues] == [
        ("exif_orientation", "EXIF orientation 6 ignored: boxes are read in stored-pixel coordinates"),
        ("skipped_sample", "decoded image is 64x48 but the annotation says 48x64 (width and height swapped: "
                           "see the image's EXIF orientation note and --exif-orientation)")]


def test_without_a_stated_size_ignore_scores_the_box_on_the_wrong_pixels_and_says_so(tmp_path):
    image = camera_file(tmp_path / "camera.png")
    manifest = _csv(tmp_path, image)
    applied, _ = _one_batch(load_dataset(manifest, exif_orientation="apply"), input_size=(64, 48))
    ignored, issues = _one_batch(load_dataset(manifest), input_size=(48, 64))
    square = [s.class_name for s in load_dataset(manifest).samples].index("square")
    assert object_share_in_box(applied.raw[square], applied.boxes[square][0]) == 1.0
    assert object_share_in_box(ignored.raw[square], ignored.boxes[square][0]) < 0.1  # silent before: now noted
    assert [i.reason for i in issues if i.action == "exif_orientation"] == [
        "EXIF orientation 6 ignored: boxes are read in stored-pixel coordinates"]


def test_the_audit_records_each_turned_image_and_applies_on_request(tmp_path, capsys, untrained_model):
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    data = write_dataset(tmp_path / "data", 10, seed=3)
    turned = {"000001.png": 6, "000004.png": 3, "000007.png": 8}  # square 64 x 64 images: sizes still agree
    for name, orientation in turned.items():
        path = tmp_path / "data" / "images" / name
        save_with_orientation(path, np.asarray(Image.open(path).convert("RGB")), orientation)

    for mode in ("ignore", "apply"):
        out = tmp_path / mode
        args = ["--exif-orientation", mode] if mode == "apply" else []  # ignore is the default
        result = run_cli(capsys, "audit", untrained_model, "--data", data.coco_path, "--no-mlflow", "--out", out,
                         "--max-samples", "10", *args)
        verdict = json.loads((out / "verdict.json").read_text())
        assert verdict["error"] is None and result.exit_code in (0, 1, 4), result.err
        assert verdict["sample"]["exif_orientation"] == mode
        notes = {Path(i["file"]).name: i["reason"] for i in verdict["data_issues"] if i["action"] == "exif_orientation"}
        assert sorted(notes) == sorted(turned)
        if mode == "ignore":
            assert notes["000001.png"] == "EXIF orientation 6 ignored: boxes are read in stored-pixel coordinates"
        else:
            assert notes["000004.png"].startswith("EXIF orientation 3 applied: the stored 64x64 image rotated 180")
        assert verdict["sample"]["issue_counts"]["exif_orientation"] == 3
        assert verdict["sample"]["n_explained"] == 10  # a note, never a skip

    refused = audit(untrained_model, data.coco_path, out=tmp_path / "bad", tracking=None, exif_orientation="sideways")
    assert refused.exit_code == 2 and "exif_orientation must be 'ignore'" in refused.error
