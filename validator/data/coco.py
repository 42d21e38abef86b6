"""COCO detection JSON reader (``images``, ``annotations`` with ``bbox`` = [x, y, w, h], ``categories``).

COCO boxes are already continuous pixel coordinates: (x0, y0, x1, y1) = (x, y, x + w, y + h).
An annotation's ``segmentation`` (polygons or RLE), when present and not empty, becomes its object mask,
decoded per batch by pycocotools (validator.data.masks).
Default class order: categories sorted by id -> output indices 0..C-1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from validator.data.build import RawBox, RawImage
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

    categories = {}
    for i, cat in enumerate(doc["categories"]):
        _require(cat, ("id", "name"), path, f"categories[{i}]")
        categories[cat["id"]] = str(cat["name"])
    default_names = [categories[cid] for cid in sorted(categories)]
    class_map = ClassMap(classes if classes is not None else default_names, scoped=classes is not None)

    images: dict[object, RawImage] = {}
    seen_names: set[str] = set()
    for i, entry in enumerate(doc["images"]):
        _require(entry, ("id", "file_name"), path, f"images[{i}]")
        file_name = str(entry["file_name"])
        key = file_name if file_name not in seen_names else f"{file_name}@{entry['id']}"
        seen_names.add(file_name)
        images[entry["id"]] = RawImage(
            key=key,
            path=_resolve_image(file_name, path.parent, images_dir),
            annotation_file=str(path),
            size=_image_size(entry),
        )

    issues: list[DataIssue] = []
    for i, ann in enumerate(doc["annotations"]):
        _require(ann, ("image_id", "category_id", "bbox"), path, f"annotations[{i}]")
        ann_id = str(ann.get("id", f"#{i}"))
        image = images.get(ann["image_id"])
        if image is None:
            issues.append(
                DataIssue(str(path), ann_id, f"annotation refers to unknown image id {ann['image_id']}", "skipped_box")
            )
            continue
        if ann["category_id"] not in categories:
            reason = f"unknown category id {ann['category_id']}"
            issues.append(DataIssue(str(path), ann_id, reason, "skipped_box"))
            continue
        coords, problem = _bbox_coords(ann["bbox"])
        image.boxes.append(RawBox(ann_id, categories[ann["category_id"]], coords, problem, _mask_ref(ann)))
    return list(images.values()), class_map, issues


def _load_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
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
    except (TypeError, ValueError):
        return None, f"non-numeric bbox {bbox!r}"
    return (x, y, x + w, y + h), None


def _image_size(entry: dict) -> tuple[int, int] | None:
    try:
        width, height = float(entry["width"]), float(entry["height"])
    except (KeyError, TypeError, ValueError):
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
    return next((c for c in candidates if c.is_file()), candidates[0])
