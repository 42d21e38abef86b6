"""Overlays for humans: the heatmap normalised FOR DISPLAY ONLY, colour-mapped, blended, boxes drawn."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from validator.metrics import largest_component_box

GREEN = (0, 200, 0)  # annotation
RED = (230, 0, 0)  # box of the largest component above 20% of the max (Zhou et al.)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """uint8 RGB JET rendering of a map scaled to its own max (display only; metrics never see this)."""
    peak = float(heatmap.max()) if heatmap.size else 0.0
    scaled = heatmap / peak if peak > 0 else np.zeros_like(heatmap)
    jet = cv2.applyColorMap(np.uint8(np.clip(scaled, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.cvtColor(jet, cv2.COLOR_BGR2RGB)


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB for display from a grayscale (H, W) / (H, W, 1), RGB or RGBA image: grey is
    repeated into the three colour channels, alpha is dropped, float 0..255 is clipped and rounded."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"cannot display an image of shape {image.shape}; expected 1, 3 or 4 channels")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float32)), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    boxes=(),
    *,
    cam_threshold: float = 0.2,
    alpha: float = 0.45,
    scale: int | None = None,
) -> np.ndarray:
    """Blend the heatmap over an image; draw annotation boxes green and the CAM box red.

    ``image`` is grayscale, RGB or RGBA (see ``display_rgb``). Small images are enlarged (nearest) so a
    reviewer can see them; ``scale`` overrides the factor.
    """
    image = display_rgb(image)
    height, width = heatmap.shape
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    factor = scale or max(1, 256 // max(height, width))
    blended = cv2.addWeighted(colorize(heatmap), alpha, image, 1 - alpha, 0)
    blended = cv2.resize(blended, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=float).reshape(-1, 4):
        _rect(blended, (x0, y0, x1, y1), factor, GREEN)
    if heatmap.max() > 0:
        _rect(blended, largest_component_box(heatmap, cam_threshold), factor, RED)
    return blended


def _rect(canvas: np.ndarray, box, factor: int, colour) -> None:
    x0, y0, x1, y1 = (int(round(v * factor)) for v in box)
    cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness=max(1, factor // 2))


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or grayscale / RGBA, shown as RGB) image as PNG."""
    rgb = display_rgb(rgb)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # temporary file + rename: a reader never sees half a PNG
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def render_atlas(mean_map: np.ndarray, corner_fraction: float = 0.125) -> np.ndarray:
    """The heat atlas (mean display-normalised map over the set) with the corner regions outlined."""
    atlas = colorize(mean_map)
    height, width = mean_map.shape
    factor = max(1, 256 // max(height, width))
    atlas = cv2.resize(atlas, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    cw, ch = corner_fraction * width, corner_fraction * height
    for box in ((0, 0, cw, ch), (width - cw, 0, width, ch), (0, height - ch, cw, height), (width - cw, height - ch, width, height)):
        _rect(atlas, box, factor, (255, 255, 255))
    return atlas
