"""Object masks: decode an annotation's mask and build a sample's object region at the model's input size.

A region is the union, over the sample's annotations, of each one's mask where it has a usable one and of
its box otherwise. A mask that cannot be used (unreadable, malformed, another size than the image, empty
before or after the resize) is a recorded data issue (``mask_to_box``), and that annotation's box stands
for the object: never a crash, never a silent pass.

Resizing is nearest-neighbour on pixel centres (``cv2.INTER_NEAREST_EXACT``): an input pixel takes the
original pixel under its centre, the rule the box rectangles follow (validator.metrics.geometry).

pycocotools trusts its input: a polygon coordinate that is NaN or far outside the image crashes it (int
overflow, an allocation as long as the outline) and an RLE whose counts do not add up to the image is
decoded from memory it does not own. So every COCO segmentation is checked here first: polygon
coordinates finite and within one image size of the image (x in [-w, 2w], y in [-h, 2h]); RLE counts
non-negative integers (the compressed string decoded here, character by character) summing to h * w.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np

from validator.data.boxes import clip_box
from validator.data.records import DataIssue, MaskRef, Sample
from validator.metrics.geometry import rect_masks

#: ``Batch.regions`` values: what a sample's object region is made of.
REGION_NONE, REGION_BOX, REGION_MASK, REGION_MIXED = 0, 1, 2, 3
REGION_NAMES = ("none", "box", "mask", "mask+box")
VOC_VOID = 255  # VOC's outline between objects: no object's pixel


class MaskError(Exception):
    """A mask that cannot be used; the message is the reason recorded in the data issue."""


def decode_mask(ref: MaskRef, width: int, height: int) -> np.ndarray:
    """Bool [height, width] object mask at the image's own resolution, or MaskError."""
    if ref.kind == "coco":
        mask = _coco_mask(ref.source, width, height)
    elif ref.kind == "png":
        mask = _png_mask(ref.source, ref.value, width, height)
    else:
        raise MaskError(f"unknown mask kind {ref.kind!r}")
    if not mask.any():
        raise MaskError("the mask has no object pixel")
    return mask


def _coco_mask(source: str, width: int, height: int) -> np.ndarray:
    from pycocotools import mask as coco_mask  # the kept library for COCO polygons and RLE

    try:
        segmentation = json.loads(source)
    except (ValueError, RecursionError) as exc:
        raise MaskError(f"unreadable segmentation: {exc}") from exc
    if isinstance(segmentation, list):
        # frPyObjects reads a 4-number list as a bbox, not a polygon: demand 3 points or more
        if not segmentation or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
                                       for p in segmentation):
            raise MaskError("segmentation polygons must be lists of x, y pairs with 3 points or more")
        polygons = [_polygon(p, width, height) for p in segmentation]
        try:
            rle = coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))
        except (TypeError, ValueError) as exc:
            raise MaskError(f"unreadable segmentation polygon: {exc}") from exc
    elif isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys():
        rle = _coco_rle(segmentation, width, height, coco_mask)
    else:
        raise MaskError("segmentation must be a list of polygons or an RLE {size, counts}")
    try:
        return coco_mask.decode(rle).astype(bool)
    except Exception as exc:  # pycocotools raises bare exceptions on corrupt counts
        raise MaskError(f"undecodable segmentation RLE: {exc}") from exc


def _polygon(points: list, width: int, height: int) -> list[float]:
    """The polygon as floats, or MaskError: NaN, infinite or far-away coordinates crash pycocotools."""
    try:
        values = [float(v) for v in points if not isinstance(v, bool)]
    except (TypeError, ValueError, OverflowError) as exc:
        raise MaskError(f"unreadable segmentation polygon: {exc}") from exc
    if len(values) != len(points):
        raise MaskError("segmentation polygon coordinates must be numbers")
    for k, v in enumerate(values):
        extent = width if k % 2 == 0 else height
        if not (math.isfinite(v) and -extent <= v <= 2 * extent):
            raise MaskError(f"segmentation polygon coordinate {v:g} lies more than an image size outside the "
                            f"{width}x{height} image")
    return values


def _coco_rle(segmentation: dict, width: int, height: int, coco_mask) -> dict:
    size = segmentation["size"]
    if not isinstance(size, list) or size != [height, width]:
        raise MaskError(f"segmentation RLE size {str(size)[:40]} (h, w) but the image is {width}x{height}")
    counts = segmentation["counts"]
    if isinstance(counts, list):  # uncompressed RLE (COCO's iscrowd regions)
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise MaskError("segmentation RLE counts must be non-negative integers")
        _check_total(sum(counts), width, height)
        return coco_mask.frPyObjects(segmentation, height, width)
    if not isinstance(counts, str):
        raise MaskError("segmentation RLE counts must be a list or a string")
    _check_total(sum(_rle_string_counts(counts)), width, height)
    return {"size": [height, width], "counts": counts.encode("ascii")}


def _check_total(total: int, width: int, height: int) -> None:
    if total != height * width:
        raise MaskError(f"segmentation RLE counts sum to {total}, expected {height * width}")


def _rle_string_counts(text: str) -> list[int]:
    """The counts of COCO's compressed RLE string (pycocotools' rleFrString, in Python and checked): each
    count is 5-bit groups in characters from '0' (48), 0x20 = more groups follow, 0x10 in the last group =
    negative; from the third count on, the value is a difference to the count two before."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value = shift = 0
        more = True
        while more:
            if position >= len(text) or shift > 30:
                raise MaskError("segmentation RLE string is truncated or holds a count too large")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise MaskError(f"segmentation RLE string holds an invalid character {text[position]!r}")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise MaskError("segmentation RLE string decodes to a negative count")
        counts.append(value)
    return counts


def _png_mask(path: str, value: int | None, width: int, height: int) -> np.ndarray:
    # Pillow, not OpenCV: cv2 expands an indexed PNG to colours, and VOC's instance ids are the indices
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.size != (width, height):  # checked before the pixels are decoded
                raise MaskError(f"mask {path} is {image.size[0]}x{image.size[1]} but the image is {width}x{height}")
            pixels = np.asarray(image)
    except MaskError:
        raise
    except Exception as exc:  # Pillow raises many types on damaged files (OSError, SyntaxError, bombs...)
        raise MaskError(f"cannot read mask {path}: {type(exc).__name__}: {exc}") from exc
    if pixels.shape[:2] != (height, width):
        raise MaskError(f"mask {path} is {pixels.shape[1]}x{pixels.shape[0]} but the image is {width}x{height}")
    if value is None:
        return pixels.reshape(height, width, -1).any(axis=2)
    if pixels.ndim != 2:
        raise MaskError(f"mask {path} must be an indexed or grayscale PNG of instance ids, got {pixels.shape[2]} "
                        "channels")
    return pixels == value


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """Nearest-neighbour on pixel centres (see the module doc)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST_EXACT).astype(bool)


def object_region(sample: Sample, decoded_size: tuple[int, int], input_size: tuple[int, int],
                  issues: list[DataIssue]) -> tuple[np.ndarray | None, int]:
    """(bool [H, W] object region at the input size, or None where the boxes alone are the region; region code).

    ``decoded_size`` is the image's (width, height), ``input_size`` the model's (height, width). Annotations
    whose box lies outside the image were dropped by the pipeline and are skipped here too."""
    if not sample.boxes:
        return None, REGION_NONE
    if not any(m is not None for m in sample.masks):
        return None, REGION_BOX
    (w, h), (height, width) = decoded_size, input_size
    scale = np.array([width / w, height / h, width / w, height / h])
    region = np.zeros((height, width), bool)
    used = []  # per kept annotation: True = its mask, False = its box
    for box, ann_id, ref in zip(sample.boxes, sample.annotation_ids, sample.masks, strict=True):
        clipped = clip_box(box, w, h)
        if clipped is None:
            continue
        mask = _annotation_mask(sample, ann_id, ref, w, h, width, height, issues)
        used.append(mask is not None)
        region |= mask if mask is not None else rect_masks(np.array([clipped]) * scale, height, width)
    code = REGION_MASK if all(used) else REGION_MIXED if any(used) else REGION_BOX
    return region, code


def _annotation_mask(sample, ann_id, ref, w, h, width, height, issues) -> np.ndarray | None:
    """The annotation's mask at the input size, or None (no mask, or one recorded as unusable)."""
    if ref is None:
        return None
    try:
        mask = resize_mask(decode_mask(ref, w, h), width, height)
    except MaskError as exc:
        issues.append(_fallback(sample, ann_id, ref, str(exc)))
        return None
    if not mask.any():
        issues.append(_fallback(sample, ann_id, ref, f"the mask covers no pixel at the model's {width}x{height} input"))
        return None
    return mask


def _fallback(sample: Sample, ann_id: str, ref: MaskRef, reason: str) -> DataIssue:
    where = ref.source if ref.kind == "png" else sample.image_path
    return DataIssue(where, ann_id, f"{reason}; its box is used instead", "mask_to_box")
