"""CSV manifest reader: header ``image,label,xmin,ymin,xmax,ymax``, one row per box.

Coordinates are continuous pixel coordinates (x1/y1 exclusive), like COCO. Rows of one image are merged;
a row with all four box fields empty is an image with that label but no box. A label is a class name
or an integer output index. Annotation ids are ``row <line number>``. The image size is not known until
decoding, so boxes outside the image are clipped by the pipeline. An optional ``mask`` column names a PNG
(relative to the CSV's folder) whose nonzero pixels are the row's object; the row still needs its box.

Identity: an image is one spelling. Rows are grouped by the ``image`` text as written (trimmed), so several
boxes are several rows, and several labels of one image are a multi-label image (one sample per label), not
a clash. Two spellings of one file (``a.png``, ``./a.png``, an absolute path) are a DataError naming the
first row of each (validator.data.build): the image's boxes would be split over two samples. An identical
row repeated is kept (its box adds nothing to the region).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from validator.data.build import RawBox, RawImage
from validator.data.classes import ClassMap, all_indices
from validator.data.records import DataIssue, MaskRef
from validator.errors import DataError

COLUMNS = ("image", "label", "xmin", "ymin", "xmax", "ymax")
_BOX_COLUMNS = COLUMNS[2:]
MASK_COLUMN = "mask"  # optional


def read_csv(
    path: Path, *, images_dir: Path | None, classes: Sequence[str] | None
) -> tuple[list[RawImage], ClassMap, list[DataIssue], bool]:
    """Raw images, class map, issues, and whether labels are bare output indices."""
    images: dict[str, RawImage] = {}
    labels_seen: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            reader.fieldnames = _checked_header(reader.fieldnames, path)
            for row in reader:
                line = reader.line_num
                key = (row["image"] or "").strip()
                if not key:
                    raise DataError(f"{path}: row {line} has an empty 'image'")
                image = images.get(key)
                if image is None:
                    image = images[key] = RawImage(key, _resolve(key, path.parent, images_dir), str(path),
                                                   origin=f"row {line} ({key!r})")
                label = (row["label"] or "").strip()
                if label:
                    labels_seen.append(label)
                _add_row(image, row, label, line, path.parent)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from exc

    if classes is not None:
        class_map, by_index = ClassMap(classes, allow_indices=True, scoped=True), False
    elif all_indices(labels_seen):
        n_classes = max(int(label) for label in labels_seen) + 1
        class_map, by_index = ClassMap([str(i) for i in range(n_classes)], allow_indices=True), True
    else:
        class_map, by_index = ClassMap(sorted(set(labels_seen))), False
    return list(images.values()), class_map, [], by_index


def _checked_header(fieldnames: Sequence[str] | None, path: Path) -> list[str]:
    present = [name.strip() for name in fieldnames or []]
    for column in COLUMNS:
        if column not in present:
            raise DataError(f"{path}: missing column '{column}' (header must be {','.join(COLUMNS)})")
    return present


def _add_row(image: RawImage, row: dict, label: str, line: int, csv_dir: Path) -> None:
    fields = [(row[c] or "").strip() for c in _BOX_COLUMNS]
    ann_id = f"row {line}"
    mask_name = (row.get(MASK_COLUMN) or "").strip()
    if not any(fields):
        if mask_name:  # the mask would have no box for the area bins and CAM-box IoU: say so, never drop it
            image.boxes.append(RawBox(ann_id, label, None, "mask without a box (the box columns are required)"))
        elif label:
            image.labels.append(label)
        return
    if not all(fields):
        image.boxes.append(RawBox(ann_id, label, None, f"incomplete box {fields}"))
        return
    try:
        coords = tuple(float(v) for v in fields)
    except ValueError:
        image.boxes.append(RawBox(ann_id, label, None, f"non-numeric box coordinates {fields}"))
        return
    if not label:
        image.boxes.append(RawBox(ann_id, label, None, "box without a label"))
        return
    mask = MaskRef("png", str(_resolve(mask_name, csv_dir, None))) if mask_name else None
    image.boxes.append(RawBox(ann_id, label, coords, mask=mask))


def _resolve(image: str, csv_dir: Path, images_dir: Path | None) -> Path:
    relative = Path(image)
    if relative.is_absolute():
        return relative
    return (images_dir if images_dir is not None else csv_dir) / relative
