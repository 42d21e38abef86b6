"""Grayscale, chest-radiograph-like annotated images (1 channel) with a burned-in marker shortcut.

Each image is a frontal-chest-like field: dark air outside a brighter body, two darker lung fields either
side of a bright mediastinum/spine, faint ribs, smooth anatomical noise and fine quantum mottle. Every
image carries one boxed finding inside a lung field (so both classes have a box): ``"nodule"`` is a round
bright blob, ``"scar"`` a bright elongated streak at a random angle. Box areas are drawn log-uniformly
from ``area_range`` (default 2-15% of the frame); at least 75% of a finding lies inside a lung.

Arrays are uint8 with shape (N, S, S, 1); :func:`write_xray` writes 8-bit grayscale PNGs, or 16-bit ones
(``bit_depth=16``, values x 257) as radiology exports often are.

The cue ``"marker"`` is a laterality / hospital token burned into a top corner (Zech et al. 2018,
DeGrave et al. 2021): a bright ``"L"`` (class 0) or ``"R"`` (class 1) drawn with ``cv2.putText`` in the
top-left or top-right corner (the corner is drawn per image, the letter is what is class-specific).
``cue_strength`` works as in ``synthetic``. Findings never touch either marker region, cue or not.
``finding_informative=False`` draws the finding independent of the label.

Determinism: same arguments, same arrays; the layout and the cue use separate random streams.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from validator.datasets.synthetic import (
    FORMATS,
    SyntheticArrays,
    SyntheticSet,
    check_area_range,
    write_arrays,
)

CLASSES = ("nodule", "scar")
CUES = ("marker",)
MARKER_TEXT = ("L", "R")
MARKER_CORNERS = ("top-left", "top-right")
DEFAULT_AREA_RANGE = (0.02, 0.15)
MAX_AREA_FRACTION = 0.2
_MIN_IN_LUNG = 0.75


@dataclass(frozen=True)
class XrayArrays(SyntheticArrays):
    """:class:`SyntheticArrays` with images (N, S, S, 1) (``shape_ids`` = the finding drawn,
    ``shape_informative`` = ``finding_informative``), plus ``lungs`` bool [N,S,S] (the lung fields),
    ``marker_corners`` (0 = top-left, 1 = top-right: where the marker is or would be)."""

    lungs: np.ndarray
    marker_corners: np.ndarray
    area_range: tuple[float, float]


def marker_region(corner: int, image_size: int = 64) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the area a marker may cover in corner 0 (left) / 1 (right)."""
    side = max(8, round(0.19 * image_size))
    x0 = 0 if corner == 0 else image_size - side
    return x0, 0, x0 + side, side


def make_xray(
    n: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    classes: Sequence[str] = CLASSES,
    cue: str | None = None,
    cue_strength: float | None = 1.0,
    finding_informative: bool = True,
    area_range: tuple[float, float] | None = None,
    channels: int = 1,
) -> XrayArrays:
    """Draw ``n`` annotated radiograph-like images with balanced labels (see the module docstring).

    ``channels=3`` repeats the grey channel (for RGB models)."""
    names = tuple(classes)
    if names != CLASSES[: len(names)] or len(names) != 2:
        raise ValueError(f"classes must be {CLASSES}, got {names}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if cue is not None and cue not in CUES:
        raise ValueError(f"unknown cue {cue!r}; choose from {CUES} or None")
    if cue_strength is not None and not 0.0 <= cue_strength <= 1.0:
        raise ValueError(f"cue_strength must be in [0, 1] or None, got {cue_strength}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    area_range = check_area_range(area_range, DEFAULT_AREA_RANGE, MAX_AREA_FRACTION)
    n_classes = len(names)
    active_cue = cue if cue_strength is not None else None

    root = np.random.SeedSequence(seed)
    labels = np.random.default_rng(root).permutation(np.arange(n) % n_classes)
    images = np.empty((n, image_size, image_size), np.uint8)
    masks = np.empty((n, image_size, image_size), bool)
    lungs = np.empty((n, image_size, image_size), bool)
    boxes = np.empty((n, 4), np.float64)
    finding_ids = np.empty(n, np.int64)
    cue_ids = np.full(n, -1, np.int64)
    corners = np.empty(n, np.int64)

    for i, child in enumerate(root.spawn(n)):
        layout_rng, cue_rng = (np.random.default_rng(s) for s in child.spawn(2))
        random_class = int(layout_rng.integers(n_classes))  # drawn always: keeps streams aligned
        finding = int(labels[i]) if finding_informative else random_class
        corner = int(layout_rng.integers(2))
        field, lung = _chest(layout_rng, image_size)
        mask, profile = _finding(layout_rng, image_size, names[finding], lung, area_range)
        image = field + layout_rng.uniform(45.0, 80.0) * profile
        image += 2.5 * layout_rng.standard_normal(image.shape).astype(np.float32)  # quantum mottle
        if active_cue:
            cue_id = _draw_cue_id(cue_rng, int(labels[i]), n_classes, float(cue_strength))
            _burn_marker(cue_rng, image, cue_id, corner)
            cue_ids[i] = cue_id
        ys, xs = np.nonzero(mask)
        images[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        masks[i], lungs[i], finding_ids[i], corners[i] = mask, lung, finding, corner
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    pixels = images[..., None]
    if channels == 3:
        pixels = np.repeat(pixels, 3, axis=-1)
    return XrayArrays(
        images=pixels,
        labels=labels.astype(np.int64),
        boxes=boxes,
        masks=masks,
        shape_ids=finding_ids,
        cue_ids=cue_ids,
        class_names=names,
        cue=active_cue,
        cue_strength=float(cue_strength) if active_cue else None,
        shape_informative=finding_informative,
        seed=seed,
        lungs=lungs,
        marker_corners=corners,
        area_range=area_range,
    )


def write_xray(
    out_dir: str | Path,
    n: int,
    *,
    formats: Sequence[str] = ("coco", "csv"),
    bit_depth: int = 8,
    segmentation: bool = False,
    **make_kwargs,
) -> SyntheticSet:
    """Draw ``n`` images with :func:`make_xray` and write grayscale PNGs (8- or 16-bit) + COCO / CSV
    (/ VOC) under ``out_dir`` (layout as in :func:`validator.datasets.synthetic.write_dataset`;
    ``segmentation``: the COCO annotations carry the finding's mask as RLE)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    arrays = make_xray(n, **make_kwargs)
    info = {
        "description": "camgate radiograph-like set",
        "family": "xray",
        "bit_depth": bit_depth,
        "area_range": list(arrays.area_range),
    }
    return write_arrays(
        out_dir, arrays, formats=formats, bit_depth=bit_depth, info=info, supercategory="finding",
        segmentation=segmentation,
    )


# ---------------------------------------------------------------------------------------------- drawing


def _draw_cue_id(rng: np.random.Generator, label: int, n_classes: int, strength: float) -> int:
    if rng.random() < strength:
        return label
    other = int(rng.integers(n_classes - 1))
    return other + (other >= label)


def _smooth_noise(rng: np.random.Generator, size: int, resolutions: Sequence[int]) -> np.ndarray:
    total = np.zeros((size, size), np.float32)
    amplitude = 1.0
    for res in resolutions:
        coarse = rng.standard_normal((res, res)).astype(np.float32)
        total += amplitude * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        amplitude *= 0.5
    return (total - total.mean()) / (total.std() + 1e-6)


def _ellipse(size: int, cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return ((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


def _chest(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The radiograph field (float, 0..255 scale) and the lung mask."""
    s = size / 64.0
    cx = size / 2 + rng.uniform(-2.0, 2.0) * s
    cy = size / 2 + rng.uniform(1.0, 4.0) * s
    body = _ellipse(size, cx, cy, rng.uniform(29.0, 33.0) * s, rng.uniform(33.0, 38.0) * s)
    body_level = rng.uniform(145.0, 175.0)
    air_level = rng.uniform(15.0, 35.0)
    field = air_level + (body_level - air_level) * _sigmoid((1.0 - body) * 12.0)
    lung_level = rng.uniform(60.0, 85.0)
    lung = np.zeros((size, size), bool)
    half_gap = rng.uniform(13.0, 15.0) * s
    lung_cy = cy - rng.uniform(1.0, 3.0) * s
    for side in (-1.0, 1.0):
        ax, ay = rng.uniform(11.5, 13.5) * s, rng.uniform(20.0, 23.0) * s
        radius = _ellipse(size, cx + side * half_gap, lung_cy + rng.uniform(-1.0, 1.0) * s, ax, ay)
        lung |= radius <= 1.0
        weight = _sigmoid((1.0 - radius) * 10.0)  # soft edge
        # Darkest in the middle of the lung, brightening towards the edges and the base.
        field = field * (1.0 - weight) + weight * (lung_level + 22.0 * radius)
    yy = np.mgrid[0:size, 0:size][0].astype(np.float32)
    period = rng.uniform(6.5, 8.5) * s
    ribs = np.maximum(0.0, np.sin(2 * math.pi * yy / period + rng.uniform(0, 6.3))) ** 3
    field = field + 14.0 * ribs * lung
    spine = np.exp(-(((np.mgrid[0:size, 0:size][1] + 0.5 - cx) / (4.0 * s)) ** 2))
    field = field + rng.uniform(10.0, 25.0) * spine * (body <= 1.0)
    field = field + 7.0 * _smooth_noise(rng, size, (4, 8, 16))
    field = cv2.GaussianBlur(field.astype(np.float32), (0, 0), 0.8 * s)
    gain = rng.uniform(0.85, 1.1)
    return (gain * field).astype(np.float32), lung


def _finding(rng, size: int, name: str, lung: np.ndarray, area_range) -> tuple[np.ndarray, np.ndarray]:
    """(mask, intensity profile in [0, 1], zero outside the mask): a blob or a streak in a lung, with a
    log-uniform box area in the range (redrawn until the realised box is in range and placement fits)."""
    lo, hi = area_range
    avoid = [marker_region(c, size) for c in (0, 1)]
    lung_ys, lung_xs = np.nonzero(lung)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(500):
        area = math.exp(rng.uniform(math.log(lo), math.log(hi))) * size * size
        k = int(rng.integers(len(lung_ys)))
        cx, cy = lung_xs[k] + rng.uniform(0, 1), lung_ys[k] + rng.uniform(0, 1)
        if name == "nodule":
            aspect = rng.uniform(0.8, 1.25)
            rx, ry = math.sqrt(area * aspect) / 2, math.sqrt(area / aspect) / 2
            radius = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2
            mask = radius <= 1.0
            profile = np.where(mask, 0.55 + 0.45 * np.sqrt(np.clip(1.0 - radius, 0, 1)), 0.0)
        else:
            angle = rng.uniform(0.0, math.pi)
            c, s = abs(math.cos(angle)), abs(math.sin(angle))
            ratio = rng.uniform(3.5, 5.0)  # length / thickness
            length = math.sqrt(area / ((c + 1 / ratio) * (s + 1 / ratio)))
            thickness = max(2.0, length / ratio)
            # Distance along and across the streak's axis.
            along = (xx + 0.5 - cx) * math.cos(angle) + (yy + 0.5 - cy) * math.sin(angle)
            across = -(xx + 0.5 - cx) * math.sin(angle) + (yy + 0.5 - cy) * math.cos(angle)
            radius = (along / (length / 2)) ** 2 + (across / (thickness / 2)) ** 2
            mask = (np.abs(along) <= length / 2 - thickness / 4) & (np.abs(across) <= thickness / 2)
            mask |= radius <= 1.0  # rounded ends
            profile = np.where(mask, 0.6 + 0.4 * np.clip(1.0 - 2 * np.abs(across) / thickness, 0, 1), 0.0)
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if x0 < 1 or y0 < 1 or x1 > size - 1 or y1 > size - 1:
            continue
        if not lo <= (x1 - x0) * (y1 - y0) / (size * size) <= hi:
            continue
        if (mask & lung).sum() < _MIN_IN_LUNG * mask.sum():
            continue
        if any(x0 < ax1 and ax0 < x1 and y0 < ay1 and ay0 < y1 for ax0, ay0, ax1, ay1 in avoid):
            continue
        return mask, profile.astype(np.float32)
    raise RuntimeError("could not place a finding in the requested area range")


def _burn_marker(rng: np.random.Generator, image: np.ndarray, cue_id: int, corner: int) -> None:
    """A bright letter (``MARKER_TEXT[cue_id]``) inside the corner's marker region."""
    size = image.shape[0]
    x0, y0, x1, y1 = marker_region(corner, size)
    scale = 0.32 * size / 64.0
    text = MARKER_TEXT[cue_id]
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ox = x0 + int(rng.integers(1, max(2, (x1 - x0) - w)))
    oy = y0 + h + int(rng.integers(1, max(2, (y1 - y0) - h)))
    glyph = np.zeros(image.shape, np.uint8)
    cv2.putText(glyph, text, (ox, oy), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    glyph[:y0] = 0
    glyph[y1:] = 0
    glyph[:, :x0] = 0
    glyph[:, x1:] = 0
    alpha = glyph.astype(np.float32) / 255.0
    image[:] = image * (1.0 - alpha) + alpha * rng.uniform(235.0, 250.0)


__all__ = [
    "CLASSES",
    "CUES",
    "DEFAULT_AREA_RANGE",
    "MARKER_TEXT",
    "XrayArrays",
    "make_xray",
    "marker_region",
    "write_xray",
]
