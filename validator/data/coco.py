"""COCO detection JSON reader (``images``, ``annotations`` with ``bbox`` = [x, y, w, h], ``categories``).

COCO boxes are already continuous pixel coordinates: (x0, y0, x1, y1) = (x, y, x + w, y + h).
An annotation's ``segmentation`` (polygons or RLE), when present and not empty, becomes its object mask,
decoded per batch by pycocotools (validator.data.masks).
Default class order: categories sorted by id -> output indices 0..C-1.

Identity (a clash is a DataError naming both entries, never a silent join): image, annotation and category
ids are integers or strings (``true`` would alias 1) and each is unique within its list, compared as
printed (1 and "1" clash); category names are unique (after trimming spaces); two image entries may not
name one file (validator.data.build). Joins (``image_id``, ``category_id``) are by exact value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from validator.data.build import RawBox, RawImage, is_file
from validator.data.classes import ClassMap
from validator.data.records import DataIssue, MaskRef
from validator.errors import DataError


def read_coco(
    path: Path, *, images_dir: Path | None, classes: Sequence[str] | None
) -> tuple[list[RawImage], ClassMap, list[DataIssue]]:
    doc = _load_json(path)
    for key in ("images", "annotations", "categories"):
        if key not in doc:
            raise DataError(f"{path}: COCO file is missing key '{key}'")
        if not isinstance(doc[key], list):
            raise DataError(f"{path}: COCO key '{key}' must be a list")

    categories: dict[object, str] = {}
    listed: list[tuple[int | str, str]] = []  # (id, name) per entry, for the messages
    first_id: dict[str, int] = {}
    first_name: dict[str, int] = {}
    for i, cat in enumerate(doc["categories"]):
        _require(cat, ("id", "name"), path, f"categories[{i}]")
        cid = _identifier(cat["id"], path, f"categories[{i}]", "id")
        name = _category_name(cat["name"], path, i)
        listed.append((cid, name))
        j = first_id.setdefault(str(cid), i)
        if j != i:
            raise DataError(f"{path}: categories[{i}] (id {cid!r}, name '{name}') repeats the id of categories[{j}] "
                            f"(name '{listed[j][1]}'): category ids must be unique")
        j = first_name.setdefault(name, i)
        if j != i:
            raise DataError(f"{path}: categories[{i}] (id {cid!r}) and categories[{j}] (id {listed[j][0]!r}) are "
                            f"both named '{name}': category names must be unique (one class, one name)")
        categories[cid] = name
    default_names = [categories[cid] for cid in sorted(categories, key=_sort_key)]
    class_map = ClassMap(classes if classes is not None else default_names, scoped=classes is not None)

    images: dict[object, RawImage] = {}
    first_image: dict[str, int] = {}
    for i, entry in enumerate(doc["images"]):
        _require(entry, ("id", "file_name"), path, f"images[{i}]")
        image_id = _identifier(entry["id"], path, f"images[{i}]", "id")
        file_name = entry["file_name"]
        if not isinstance(file_name, str) or not file_name.strip():
            raise DataError(f"{path}: images[{i}] key 'file_name' must be a non-empty string, got {_short(file_name)}")
        _unicode(file_name, path, f"images[{i}] key 'file_name'")
        j = first_image.setdefault(str(image_id), i)
        if j != i:
            raise DataError(f"{path}: images[{i}] (id {image_id!r}, file_name {file_name!r}) repeats the id of "
                            f"images[{j}] (file_name {doc['images'][j]['file_name']!r}): image ids must be unique")
        images[image_id] = RawImage(
            key=file_name,
            path=_resolve_image(file_name, path.parent, images_dir),
            annotation_file=str(path),
            size=_image_size(entry),
            origin=f"images[{i}] (id {image_id!r}, file_name {file_name!r})",
        )

    issues: list[DataIssue] = []
    first_ann: dict[str, tuple[int, object]] = {}
    for i, ann in enumerate(doc["annotations"]):
        _require(ann, ("image_id", "category_id", "bbox"), path, f"annotations[{i}]")
        where = f"annotations[{i}]"
        image_id = _identifier(ann["image_id"], path, where, "image_id")
        category_id = _identifier(ann["category_id"], path, where, "category_id")
        ann_id = str(_identifier(ann["id"], path, where, "id")) if "id" in ann else f"#{i}"
        j, other_image = first_ann.setdefault(ann_id, (i, image_id))
        if j != i:
            raise DataError(f"{path}: annotations[{i}] (id {ann_id}, image_id {image_id!r}) repeats the id of "
                            f"annotations[{j}] (image_id {other_image!r}): annotation ids must be unique")
        image = images.get(image_id)
        if image is None:
            issues.append(
                DataIssue(str(path), ann_id, f"annotation refers to unknown image id {image_id}", "skipped_box")
            )
            continue
        if category_id not in categories:
            reason = f"unknown category id {category_id}"
            issues.append(DataIssue(str(path), ann_id, reason, "skipped_box"))
            continue
        coords, problem = _bbox_coords(ann["bbox"])
        image.boxes.append(RawBox(ann_id, categories[category_id], coords, problem, _mask_ref(ann)))
    return list(images.values()), class_map, issues


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _identifier(value: object, path: Path, where: str, key: str) -> int | str:
    """An id is an integer or a string: a bool or a float would alias an integer id (true == 1 == 1.0) and a
    list or an object has no identity at all."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise DataError(f"{path}: {where} key '{key}' must be an integer or a string, got {_short(value)}")
    return value


def _category_name(value: object, path: Path, index: int) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise DataError(f"{path}: categories[{index}] key 'name' must be a non-empty string, got {_short(value)}")
    _unicode(str(value), path, f"categories[{index}] key 'name'")
    return str(value).strip()  # labels are matched trimmed (ClassMap.resolve): ' dog' is 'dog'


def _unicode(text: str, path: Path, where: str) -> None:
    """JSON's \\uXXXX escapes can spell a lone UTF-16 surrogate, which no file, report or MLflow store can
    hold: refuse it here, naming the entry, rather than fail in some sink later."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{path}: {where} holds an unpaired surrogate ({text[max(0, exc.start - 10):exc.end + 10]!a}):"
                        f" not valid Unicode text") from exc


def _sort_key(category_id: int | str) -> tuple[int, int | str]:
    """Categories sorted by id: integers numerically, then strings (a mixed list cannot be compared as is)."""
    return (0, category_id) if isinstance(category_id, int) else (1, category_id)


def _load_json(path: Path) -> dict:
    from validator.limits import ANNOTATION_BYTES_ENV, annotation_byte_limit, refuse_larger_than

    try:
        refuse_larger_than(path, annotation_byte_limit(), f"annotation file {path}",
                           f" (${ANNOTATION_BYTES_ENV} raises it)", error=DataError)
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DataError(f"{path}: JSON nested too deeply to be a COCO file") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path}: a COCO file must be a JSON object, got {type(doc).__name__}")
    return doc


def _require(obj: object, keys: Sequence[str], path: Path, where: str) -> None:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} must be an object")
    for key in keys:
        if key not in obj:
            raise DataError(f"{path}: {where} is missing key '{key}'")


def _mask_ref(ann: dict) -> MaskRef | None:
    """The annotation's segmentation, kept as JSON text (hashable, small); checked only when decoded."""
    segmentation = ann.get("segmentation")
    if segmentation is None or (isinstance(segmentation, list | dict) and not segmentation):
        return None
    return MaskRef("coco", json.dumps(segmentation, separators=(",", ":")))


def _bbox_coords(bbox: object) -> tuple[tuple[float, ...] | None, str | None]:
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return None, f"bbox must be [x, y, w, h], got {bbox!r}"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer too large for a float
        return None, f"non-numeric bbox {bbox!r}"
    return (x, y, x + w, y + h), None


def _image_size(entry: dict) -> tuple[int, int] | None:
    try:
        width, height = float(entry["width"]), float(entry["height"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        return None
    return int(width), int(height)


def _resolve_image(file_name: str, json_dir: Path, images_dir: Path | None) -> Path:
    """images_dir if given; else beside the JSON, then in an images/ folder beside it."""
    relative = Path(file_name)
    if images_dir is not None:
        candidates = [images_dir / relative, images_dir / relative.name]
    elif relative.is_absolute():
        candidates = [relative]
    else:
        candidates = [json_dir / relative, json_dir / "images" / relative]
    return next((c for c in candidates if is_file(c)), candidates[0])
