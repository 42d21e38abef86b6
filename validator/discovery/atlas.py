"""The heat atlas: every map normalised to one unit of heat and averaged on a fixed grid.

Needs no boxes: a spot that is hot across the set (a corner tag, a border, a ruler) shows up as a cell
whose share of the atlas exceeds its share of the image area. Maps are normalised before averaging so
that each sample gets one vote however strong its raw gradients are.

Regions are fractions of the frame, defined as in ``validator.metrics.localisation``: the corner
``tl`` is the rectangle (0, 0, f*W, f*H), the border band is everything outside (b*W, b*H, W-b*W, H-b*H),
and the centre is the central c*W x c*H rectangle. At full resolution a pixel belongs to a region when
its centre does (``validator.metrics.geometry``); on the coarse grid a boundary cell counts with the
fraction of it that the region covers, so a uniform atlas gives exactly the area share. Where the region
edges fall on cell edges (e.g. 64 px, grid 16, centre 0.5) the two rules agree exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import cv2
import numpy as np

from validator.errors import UsageError
from validator.metrics.geometry import rect_masks
from validator.metrics.localisation import (  # the same rules and regions as the scores
    BORDER_FRACTION,
    CORNER_FRACTION,
    _check_fraction,
    _check_maps,
)
from validator.metrics.registry import CORNERS

DEFAULT_GRID = 16
OVERALL = "overall"
# Region names returned by region_shares; each comes with "area_<name>", its share under a uniform map.
REGIONS = (*(f"corner_{c}" for c in CORNERS), "border", "centre")


def _normalise(arr: np.ndarray) -> np.ndarray:
    """Each map divided by its sum; a dead map (sum <= 0 or any non-finite value) becomes NaN everywhere."""
    finite = np.isfinite(arr).all(axis=(1, 2))
    total = np.where(np.isfinite(arr), arr, 0.0).sum(axis=(1, 2))
    alive = finite & (total > 0)
    out = arr / np.where(alive, total, 1.0)[:, None, None]
    out[~alive] = np.nan
    return out


def downsample(maps: np.ndarray, grid: int = DEFAULT_GRID) -> np.ndarray:
    """Maps [N, H, W] -> float32 [N, grid, grid], each summing to 1 (NaN everywhere for a dead map).

    Mass is preserved so that a cell holds the share of heat of the pixels it covers: block sums when
    grid divides H and W; otherwise cv2.resize with INTER_AREA (area-weighted when shrinking, bilinear
    when the map is smaller than the grid) followed by renormalisation to sum 1.
    """
    grid = int(grid)
    if grid < 1:
        raise UsageError(f"grid must be >= 1, got {grid}")
    unit = _normalise(_check_maps(maps))
    n, height, width = unit.shape
    if height % grid == 0 and width % grid == 0:
        small = unit.reshape(n, grid, height // grid, grid, width // grid).sum(axis=(2, 4))
    else:
        small = np.empty((n, grid, grid), dtype=np.float64)
        for i in range(n):  # INTER_AREA takes at most 4 channels: one map at a time
            small[i] = cv2.resize(unit[i], (grid, grid), interpolation=cv2.INTER_AREA)
        small = _normalise(np.clip(small, 0.0, None))  # NaN maps stay NaN: their sum is non-finite
    return small.astype(np.float32)


class AtlasAccumulator:
    """Streaming mean of unit-sum grid maps per key (class name) and over all maps (``"overall"``).

    Holds one [g, g] sum per key, so memory does not grow with the number of samples. Dead (NaN) maps
    are skipped and not counted.
    """

    def __init__(self) -> None:
        self._sums: dict[str, np.ndarray] = {}
        self._counts: dict[str, int] = {}
        self._shape: tuple[int, int] | None = None
        self.n_dead = 0

    def add(self, small_maps: np.ndarray, keys: Sequence[Hashable]) -> None:
        """Add maps [n, g, g] (from ``downsample``) with their keys (one class name per map)."""
        arr = np.asarray(small_maps, dtype=np.float64)
        if arr.ndim != 3:
            raise ValueError(f"small_maps must have shape [n, g, g], got {arr.shape}")
        if len(keys) != arr.shape[0]:
            raise ValueError(f"got {arr.shape[0]} maps but {len(keys)} keys")
        if self._shape is None:
            self._shape = arr.shape[1:]
        elif arr.shape[1:] != self._shape:
            raise ValueError(f"maps of shape {arr.shape[1:]} added to an atlas of shape {self._shape}")
        names = [str(k) for k in keys]
        if OVERALL in names:
            raise ValueError(f"a class may not be named {OVERALL!r}: the atlas uses that key for all maps")
        alive = np.isfinite(arr).all(axis=(1, 2))
        self.n_dead += int((~alive).sum())
        names_arr = np.asarray(names, dtype=object)
        for key in dict.fromkeys(names):
            self._counts.setdefault(key, 0)
        for key, rows in ((OVERALL, alive), *((k, alive & (names_arr == k)) for k in dict.fromkeys(names))):
            count = int(rows.sum())
            self._counts[key] = self._counts.get(key, 0) + count
            if count:
                total = arr[rows].sum(axis=0)
                self._sums[key] = self._sums[key] + total if key in self._sums else total

    @property
    def counts(self) -> dict[str, int]:
        """Live maps per key (``"overall"`` included); a key seen only with dead maps counts 0."""
        return {OVERALL: self._counts.get(OVERALL, 0), **{k: v for k, v in self._counts.items() if k != OVERALL}}

    def atlas(self) -> dict[str, np.ndarray]:
        """{key: float64 [g, g] summing to 1}: the mean map per key; keys without a live map are left out."""
        out = {}
        for key in self.counts:
            if key in self._sums:
                s = self._sums[key]
                out[key] = s / s.sum()  # each map sums to 1 up to float32 rounding: renormalise the mean
        return out


def _coverage(lo: float, hi: float, size: int) -> np.ndarray:
    """[size]: the fraction of each cell [j, j+1) covered by the interval [lo, hi)."""
    j = np.arange(size, dtype=np.float64)
    return np.clip(np.minimum(hi, j + 1.0) - np.maximum(lo, j), 0.0, 1.0)


def _rect_weights(rect: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    """[H, W] covered fraction of each cell for a rectangle (fx0, fy0, fx1, fy1) in fractions of the frame."""
    fx0, fy0, fx1, fy1 = rect
    return _coverage(fy0 * height, fy1 * height, height)[:, None] * _coverage(fx0 * width, fx1 * width, width)[None, :]


def _region_fractions(corner_fraction, border_fraction, centre_fraction) -> dict[str, tuple]:
    """Region -> (rectangle in fractions, inverted?) for REGIONS (the border is the outside of a rectangle)."""
    f, b, c = corner_fraction, border_fraction, centre_fraction
    lo, hi = (1.0 - c) / 2.0, (1.0 + c) / 2.0
    return {
        "corner_tl": ((0.0, 0.0, f, f), False),
        "corner_tr": ((1.0 - f, 0.0, 1.0, f), False),
        "corner_bl": ((0.0, 1.0 - f, f, 1.0), False),
        "corner_br": ((1.0 - f, 1.0 - f, 1.0, 1.0), False),
        "border": ((b, b, 1.0 - b, 1.0 - b), True),
        "centre": ((lo, lo, hi, hi), False),
    }


def region_shares(
    atlas_or_maps: np.ndarray,
    corner_fraction: float = CORNER_FRACTION,
    border_fraction: float = BORDER_FRACTION,
    centre_fraction: float = 0.5,
) -> dict[str, float | np.ndarray]:
    """Share of heat in each of REGIONS for a grid map [g, g] (floats) or maps [N, g, g] (arrays [N]).

    Also ``area_<region>``: the share a uniform map gets (float), so that lift = share / area. Maps are
    divided by their sum (already 1 for an atlas); a dead map gets NaN shares.
    """
    arr = np.asarray(atlas_or_maps, dtype=np.float64)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a map [g, g] or maps [N, g, g], got shape {np.shape(atlas_or_maps)}")
    corner_fraction = _check_fraction("corner_fraction", corner_fraction, 0.0, 0.5)
    border_fraction = _check_fraction("border_fraction", border_fraction, 0.0, 0.5)
    centre_fraction = _check_fraction("centre_fraction", centre_fraction, 0.0, 1.0)
    height, width = arr.shape[1:]
    unit = _normalise(arr)
    out: dict[str, float | np.ndarray] = {}
    areas = {}
    for name, (rect, inverted) in _region_fractions(corner_fraction, border_fraction, centre_fraction).items():
        weights = _rect_weights(rect, height, width)
        if inverted:
            weights = 1.0 - weights
        share = np.einsum("nhw,hw->n", unit, weights)
        out[name] = float(share[0]) if single else share
        areas[f"area_{name}"] = float(weights.sum() / (height * width))
    out.update(areas)
    return out


def centre_heat(maps: np.ndarray, centre_fraction: float = 0.5) -> np.ndarray:
    """float64 [N]: share of each full-resolution map's heat in the central rectangle; NaN for a dead map.

    The rectangle is ((1-c)/2 W, (1-c)/2 H, (1+c)/2 W, (1+c)/2 H) with the pixel-centre rule that
    ``validator.metrics.localisation`` uses for its corners. No object pixels are excluded: this measures
    where the heat is, not whether it is off the object.
    """
    centre_fraction = _check_fraction("centre_fraction", centre_fraction, 0.0, 1.0)
    unit = _normalise(_check_maps(maps))
    _, height, width = unit.shape
    lo, hi = (1.0 - centre_fraction) / 2.0, (1.0 + centre_fraction) / 2.0
    rect = np.array([[lo * width, lo * height, hi * width, hi * height]])
    mask = rect_masks(rect, height, width)
    return np.sum(unit, axis=(1, 2), where=mask)  # NaN maps sum to NaN
