"""Box validation and clipping (pure functions on continuous (x0, y0, x1, y1) coordinates)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from validator.data.records import Box


def format_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def box_problem(box: Sequence[float]) -> str | None:
    """Why ``box`` cannot be used (non-finite, inverted, zero-area), or None when it is a proper box."""
    if len(box) != 4:
        return f"box must have 4 coordinates, got {len(box)}"
    if not all(math.isfinite(v) for v in box):
        return f"non-finite box coordinates {format_box(box)}"
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        return f"inverted box {format_box(box)} (x1 < x0 or y1 < y0)"
    if x1 == x0 or y1 == y0:
        return f"zero-area box {format_box(box)}"
    return None


def clip_box(box: Box, width: float, height: float) -> Box | None:
    """Clip ``box`` to the image [0, width) x [0, height); None when nothing of it lies inside."""
    x0, y0, x1, y1 = box
    clipped = (max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None
    return tuple(float(v) for v in clipped)  # type: ignore[return-value]


def scale_box(box: Box, sx: float, sy: float) -> Box:
    """Scale a box by the resize factors (exact for continuous coordinates)."""
    x0, y0, x1, y1 = box
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
