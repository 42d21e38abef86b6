"""Pixel geometry shared by the metrics: boxes, rectangles, distances, IoU.

Coordinate convention (used everywhere in camgate): a box is (x0, y0, x1, y1) in continuous pixel
coordinates of the map, x along columns, y along rows, x1/y1 exclusive. Pixel (r, c) covers the square
[c, c+1) x [r, r+1) and belongs to a box when its centre (c + 0.5, r + 0.5) satisfies
x0 <= c + 0.5 < x1 and y0 <= r + 0.5 < y1. So (0, 0, 2, 2) covers pixels 0..1 in both directions, and
a box narrower than a pixel that straddles no centre covers nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from validator.errors import DataError


def as_boxes(boxes: np.ndarray | Sequence, *, where: str = "boxes") -> np.ndarray:
    """Validate and return boxes as float64 [k, 4]; k may be 0."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(f"{where}: expected an array of shape [k, 4] (x0, y0, x1, y1), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: box coordinates must be finite, got {arr[~np.isfinite(arr).all(1)][0]}")
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        raise DataError(f"{where}: box {arr[bad][0].tolist()} has x1 < x0 or y1 < y0 (expected x0, y0, x1, y1)")
    return arr


def pad_boxes(boxes: Sequence[np.ndarray]) -> np.ndarray:
    """Stack per-sample boxes into [N, K, 4]; padding rows are empty boxes at +inf (cover nothing, infinitely far)."""
    checked = [as_boxes(b, where=f"boxes[{i}]") for i, b in enumerate(boxes)]
    k_max = max((len(b) for b in checked), default=0)
    out = np.full((len(checked), max(k_max, 1), 4), np.inf)
    for i, b in enumerate(checked):
        out[i, : len(b)] = b
    return out


def _intervals(lo: np.ndarray, hi: np.ndarray, size: int) -> np.ndarray:
    """[..., size] bool: which pixel centres (j + 0.5) fall in [lo, hi)."""
    centres = np.arange(size) + 0.5
    return (centres >= lo[..., None]) & (centres < hi[..., None])


def rect_masks(rects: np.ndarray, height: int, width: int) -> np.ndarray:
    """[..., K, 4] rectangles -> [..., H, W] bool, the union over K (pixel-centre rule)."""
    rects = np.asarray(rects, dtype=np.float64)
    in_x = _intervals(rects[..., 0], rects[..., 2], width)  # [..., K, W]
    in_y = _intervals(rects[..., 1], rects[..., 3], height)  # [..., K, H]
    mask = np.zeros(rects.shape[:-2] + (height, width), dtype=bool)
    # Loop over K (boxes per image, small) rather than materialising [..., K, H, W].
    for k in range(rects.shape[-2]):
        mask |= in_y[..., k, :, None] & in_x[..., k, None, :]
    return mask


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool [H, W]: union of the boxes (x0, y0, x1, y1), pixel (r, c) inside when its centre is (see module doc)."""
    arr = as_boxes(boxes)
    if len(arr) == 0:
        return np.zeros((height, width), dtype=bool)
    return rect_masks(arr, height, width)


def distance_to_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Euclidean distance from points [M, 2] (x, y) to the union of closed rectangles boxes [M, K, 4].

    0 inside or on an edge; +inf when a row holds only padding boxes.
    """
    x = points[:, 0, None]
    y = points[:, 1, None]
    # Padding boxes are all +inf: x0 - x = inf, so dx = inf and the padding never wins the minimum.
    dx = np.maximum(np.maximum(boxes[..., 0] - x, x - boxes[..., 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[..., 1] - y, y - boxes[..., 3]), 0.0)
    return np.hypot(dx, dy).min(axis=-1)


def best_iou(box: np.ndarray, gt: np.ndarray, height: int, width: int) -> float:
    """Largest IoU of one box [4] against the rows of gt [k, 4] (continuous areas, gt clipped to the image)."""
    if len(gt) == 0:
        return float("nan")
    g = gt.copy()
    g[:, [0, 2]] = np.clip(g[:, [0, 2]], 0, width)
    g[:, [1, 3]] = np.clip(g[:, [1, 3]], 0, height)
    iw = np.clip(np.minimum(box[2], g[:, 2]) - np.maximum(box[0], g[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], g[:, 3]) - np.maximum(box[1], g[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return float(iou.max())


def with_object_masks(in_box: np.ndarray, masks: Sequence[np.ndarray | None] | None) -> np.ndarray:
    """[N, H, W] object regions: each sample's mask where it has one, its box union (``in_box``) otherwise."""
    if masks is None:
        return in_box
    if len(masks) != len(in_box):
        raise DataError(f"got {len(masks)} object masks for {len(in_box)} samples (None where a sample has none)")
    out = in_box.copy()
    for i, mask in enumerate(masks):
        if mask is not None:
            if np.shape(mask) != in_box.shape[1:]:
                raise DataError(f"masks[{i}]: expected shape {in_box.shape[1:]}, got {np.shape(mask)}")
            out[i] = np.asarray(mask, dtype=bool)
    return out


def mask_distances(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from points [M, 2] (x, y) to the nearest pixel of ``mask`` [H, W] (0 inside, +inf: no pixel).

    Measured to the pixel's square [c, c+1) x [r, r+1), as ``distance_to_boxes`` measures to a rectangle, so
    a mask that fills a box's pixels scores like the box."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.full(len(points), np.inf)
    dx = np.maximum(np.maximum(cols[None, :] - points[:, 0, None], points[:, 0, None] - cols[None, :] - 1), 0.0)
    dy = np.maximum(np.maximum(rows[None, :] - points[:, 1, None], points[:, 1, None] - rows[None, :] - 1), 0.0)
    return np.hypot(dx, dy).min(axis=1)


def near_mask(mask: np.ndarray, tolerance: float) -> np.ndarray:
    """Bool [H, W]: pixels whose centre lies within ``tolerance`` of a pixel of ``mask`` (``mask_distances``'s
    rule, for every pixel at once: a dilation by the pixel offsets within reach, for maps with many maxima)."""
    reach = int(np.ceil(tolerance + 0.5))
    offsets = np.abs(np.arange(-reach, reach + 1, dtype=np.float64))
    gap = np.maximum(offsets - 0.5, 0.0)
    kernel = (np.hypot(gap[:, None], gap[None, :]) <= tolerance).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
