"""``load_dataset``: detect the annotation format, read it, build the samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from validator.data.build import build_dataset
from validator.data.coco import read_coco
from validator.data.csv_manifest import read_csv
from validator.data.images import check_exif_orientation
from validator.data.records import Dataset
from validator.data.voc import read_voc, voc_root
from validator.errors import DataError

FORMATS = ("coco", "voc", "csv")


def detect_format(path: Path) -> str:
    """``.json`` -> coco, a folder with ``Annotations/`` -> voc, ``.csv`` -> csv."""
    if path.is_dir():
        if (voc_root(path) / "Annotations").is_dir():
            return "voc"
    elif path.suffix.lower() == ".json":
        return "coco"
    elif path.suffix.lower() == ".csv":
        return "csv"
    raise DataError(
        f"cannot tell the annotation format of {path} (expected a COCO .json, a VOC folder with "
        f"Annotations/, or a .csv manifest); pass --format {{{','.join(FORMATS)}}}"
    )


def load_dataset(
    path: str | Path,
    *,
    format: str | None = None,
    images_dir: str | Path | None = None,
    classes: Sequence[str] | None = None,
    exif_orientation: str = "ignore",
) -> Dataset:
    """Read a held-out set. ``classes`` (names in model output order) overrides the default order.
    ``exif_orientation``: "ignore" (boxes in stored pixels, COCO's convention) or "apply" (each image is turned
    by its EXIF orientation and its boxes, masks and stated size are in that displayed frame); every sample
    carries it to the decoder."""
    exif_orientation = check_exif_orientation(exif_orientation)
    path = Path(path)
    if not path.exists():
        raise DataError(f"annotation path not found: {path}")
    fmt = format.lower() if format else detect_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown --format {format!r}; expected one of {', '.join(FORMATS)}")
    image_root = Path(images_dir) if images_dir is not None else None
    if image_root is not None and not image_root.is_dir():
        raise DataError(f"images folder not found: {image_root}")
    if classes is not None:
        classes = [str(c) for c in classes]
        if not classes:
            raise DataError("the class list is empty")

    by_index = False
    if fmt == "coco":
        images, class_map, issues = read_coco(path, images_dir=image_root, classes=classes)
    elif fmt == "voc":
        images, class_map, issues = read_voc(path, images_dir=image_root, classes=classes)
    else:
        images, class_map, issues, by_index = read_csv(path, images_dir=image_root, classes=classes)
    dataset = build_dataset(
        images, class_map, issues, fmt=fmt, source=str(path), labels_are_indices=by_index
    )
    if exif_orientation != "ignore":
        dataset.samples = [replace(s, exif_orientation=exif_orientation) for s in dataset.samples]
    return dataset
