"""Per-sample localisation scores: how much of a heatmap's evidence lies on the annotated object.

Inputs are raw maps H >= 0 at input resolution (never min-max normalised: subtracting the minimum changes
the inside/outside ratio) and per-sample boxes in the convention of ``validator.metrics.geometry``.
Every column is a float array [N] (booleans as 0.0 / 1.0) with NaN where the score is undefined:

* a dead map (sum <= 0 or any non-finite value) gets NaN for every map-derived score and ``dead`` = 1;
* a sample whose boxes cover no pixel centre (k = 0, or slivers) gets NaN for every ``needs_box`` score.

Region heats (corners, edges, border, named regions) exclude object pixels and need no box: without one
there is nothing to exclude.

``masks`` (optional, one per sample, None where a sample has only boxes): the object region is the mask
instead of the union of the boxes for every score but ``area`` and the CAM-box IoU, which stay the boxes'
(the area bins and the IoU need a box); ``object_area`` is then the A of the formulas (the mask's share).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from validator.errors import UsageError
from validator.metrics.geometry import (
    as_boxes,
    best_iou,
    distance_to_boxes,
    mask_distances,
    near_mask,
    pad_boxes,
    rect_masks,
    with_object_masks,
)
from validator.metrics.registry import CORNERS, EDGES, REGION_PREFIX

# A corner (or edge band) whose free (non-object) part is below this share of it has too few pixels for its
# lift.
# The corner squares and the border band (whose four sides are the edges), as shares of each side: the heat
# scores, the atlas, the hot-spot probe's placing and the tile fill's margin all use these.
CORNER_FRACTION = 0.125
BORDER_FRACTION = 0.1
MIN_FREE_CORNER = 0.25
# Region heat columns that get a lift (heat share / free-area share) under the second name.
LIFT_PREFIXES = {"corner_heat_": "corner_lift_", "edge_heat_": "edge_lift_"}
# relative_lift needs room above chance: a box covering (almost) the whole image has none.
MAX_RELATIVE_LIFT_AREA = 0.99

# Pointing-game tolerance of Zhang et al. (2016): 15 px at 224 px, scaled with the image.
POINTING_TOLERANCE_PX = 15.0
POINTING_REFERENCE_SIZE = 224.0

# The ring around each object box (``ring_heat`` / ``ring_lift``): a mark *beside* the object pulls heat
# just outside the box, where the box score cannot see it and the corner score does not look. The ring is
# the box grown by half its mean side, (w + h) / 4 (a mark touching the object sits within about half an
# object of its edge, and the width scales with the object, so a 2% and a 50% box get the same relative
# neighbourhood), capped at 1/8 of the frame's shorter side (the corner size: the ring of a 50% object stays
# its neighbourhood instead of becoming the whole background, which ``lift`` already measures), clipped to the
# frame, minus every object pixel.
RING_WIDTH = 0.25  # x (w + h) of the box
RING_MAX_WIDTH = 0.125  # x min(H, W)
# Which side of the object the ring heat sits on (``ring_side_lift`` / ``ring_one_sided``): a mark beside the
# object puts its heat just outside the object on *one* side, while a clean model's boundary heat (Grad-CAM's
# blur) spreads around it. The ring here is every pixel within RING_SIDE_WIDTH of the shorter side (Chebyshev
# distance) of an object pixel, minus the object, cut into 8 octants about the object's centre; the lift is
# the hottest octant's heat density over the octants' mean density (1 = even, 8 = all in one octant). On the
# calibration controls the share of images above RING_ONE_SIDED has an upper bound <= 0.096 for clean models
# and 0.47-0.50 for mark-beside-object shortcuts (docs/calibration.md, the default ``beside-heat`` check).
RING_SIDE_WIDTH = 0.1  # x min(H, W), rounded to whole pixels, at least 1
RING_SIDE_MIN_PX = 4  # ring pixels an octant needs to count (a sliver's density is noise)
RING_ONE_SIDED = 4.0  # ring_side_lift above this: the ring's heat sits on one side


def default_pointing_tolerance(height: int, width: int) -> float:
    """15 px at 224 px, scaled linearly with the larger image side."""
    return POINTING_TOLERANCE_PX * max(height, width) / POINTING_REFERENCE_SIZE


def _check_fraction(name: str, value: float, lo: float, hi: float) -> float:
    value = float(value)
    if not lo < value <= hi:
        raise UsageError(f"{name} must be in ({lo}, {hi}], got {value}")
    return value


def _check_maps(maps: np.ndarray) -> np.ndarray:
    arr = np.asarray(maps)
    if arr.ndim != 3:
        raise ValueError(f"maps must have shape [N, H, W], got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if np.any(arr < 0):  # NaN compares False: non-finite maps are handled as dead, not rejected
        raise ValueError(f"maps must be >= 0 (clip negatives after resampling); minimum is {np.nanmin(arr)}")
    return arr


def _check_regions(regions: Mapping[str, Sequence[float]] | None) -> dict[str, np.ndarray]:
    checked = {}
    for name, rect in (regions or {}).items():
        r = np.asarray(rect, dtype=np.float64)
        if not name or r.shape != (4,) or not np.all(np.isfinite(r)):
            raise UsageError(f"region {name!r}: expected a name and four fractions (fx0, fy0, fx1, fy1), got {rect!r}")
        if np.any(r < 0) or np.any(r > 1) or r[0] >= r[2] or r[1] >= r[3]:
            raise UsageError(
                f"region {name!r}: fractions must satisfy 0 <= fx0 < fx1 <= 1 and 0 <= fy0 < fy1 <= 1, got {rect!r}"
            )
        checked[name] = r
    return checked


def _pointing(heat, alive, padded, tolerance, masks=None) -> np.ndarray:
    """1.0 when every pixel attaining the map's maximum has its centre within `tolerance` of a box (of the
    sample's mask, where it has one).

    Tie rule: all tied maxima must hit, so a flat map (or one with equal peaks on and off the object)
    is not credited with a hit it did not single out.
    """
    n = heat.shape[0]
    peak = heat.max(axis=(1, 2), initial=0.0)
    is_max = (heat == peak[:, None, None]) & alive[:, None, None]
    idx_n, idx_r, idx_c = np.nonzero(is_max)
    centres = np.stack([idx_c + 0.5, idx_r + 0.5], axis=1)
    far = distance_to_boxes(centres, padded[idx_n]) > tolerance
    for i, mask in enumerate(masks or ()):
        if mask is not None:
            far[idx_n == i] = _far_from_mask(mask, idx_r[idx_n == i], idx_c[idx_n == i], tolerance)
    misses = np.bincount(idx_n[far], minlength=n)
    return (misses == 0).astype(np.float64)


# Above this many tied maxima, one dilation of the mask is cheaper than a distance per maximum and pixel.
_MAX_DIRECT_PEAKS = 64


def _far_from_mask(mask, rows, cols, tolerance) -> np.ndarray:
    """Per maximum, True when it misses the mask; only whether any misses counts (see ``_pointing``)."""
    far = np.zeros(len(rows), bool)
    head = slice(0, _MAX_DIRECT_PEAKS)
    far[head] = mask_distances(mask, np.stack([cols[head] + 0.5, rows[head] + 0.5], axis=1)) > tolerance
    if len(rows) > _MAX_DIRECT_PEAKS and not far.any():  # a flat map usually misses early; else dilate once
        far = ~near_mask(mask, tolerance)[rows, cols]
    return far


def _rank_accuracy(heat, in_box, box_px) -> np.ndarray:
    """|top-K pixels ∩ B| / K with K = |B|.

    Ties at the K-th value are shared: of the e pixels equal to the cut value t, K - g are needed
    (g = pixels hotter than t), and each tied pixel counts with weight (K - g) / e. This is the expected
    score under a random tie break, so a flat map scores A, like chance.
    """
    n = heat.shape[0]
    flat = heat.reshape(n, heat.shape[1] * heat.shape[2])  # explicit size: -1 is ambiguous when n == 0
    inside = in_box.reshape(flat.shape)
    k = box_px
    ordered = np.sort(flat, axis=1)
    cut_index = flat.shape[1] - np.maximum(k, 1)
    cut = np.take_along_axis(ordered, cut_index[:, None], axis=1)
    hotter = flat > cut
    tied = flat == cut
    n_hotter = hotter.sum(axis=1)
    n_tied = tied.sum(axis=1)
    hit = (hotter & inside).sum(axis=1) + (k - n_hotter) * (tied & inside).sum(axis=1) / np.maximum(n_tied, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return hit / k


def largest_component_box(heat: np.ndarray, cam_threshold: float) -> np.ndarray:
    """Box (x0, y0, x1, y1) of the largest 8-connected component of heat >= cam_threshold * max(heat).

    Ties in area go to the component that cv2 labels first: its default 8-connectivity algorithm scans 2x2
    blocks, so that is the raster order of each component's first 2x2 block, not of its first pixel (a
    component starting at row 1, column 0 comes before one at row 0, column 5; validator.metrics.device
    reproduces it).
    """
    binary = (heat >= cam_threshold * heat.max()).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))  # label 0 is the background
    x, y = stats[j, cv2.CC_STAT_LEFT], stats[j, cv2.CC_STAT_TOP]
    return np.array([x, y, x + stats[j, cv2.CC_STAT_WIDTH], y + stats[j, cv2.CC_STAT_HEIGHT]], dtype=np.float64)


def ring_rects(padded: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, K, 4] boxes grown by their ring width (see ``RING_WIDTH``); padding rows (+inf) stay empty (NaN)."""
    with np.errstate(invalid="ignore"):  # inf - inf = NaN: a padding row covers nothing either way
        grow = np.minimum(RING_WIDTH * ((padded[..., 2] - padded[..., 0]) + (padded[..., 3] - padded[..., 1])),
                          RING_MAX_WIDTH * min(height, width))
        return np.stack([padded[..., 0] - grow, padded[..., 1] - grow, padded[..., 2] + grow,
                         padded[..., 3] + grow], axis=-1)


def _ring_scores(heat, in_box, padded, scored, safe_total) -> tuple[np.ndarray, np.ndarray]:
    """(ring_heat, ring_lift): heat share of the ring around the objects, and that share over its area share."""
    height, width = in_box.shape[1:]
    ring = rect_masks(ring_rects(padded, height, width), height, width) & ~in_box
    ring_px = ring.sum(axis=(1, 2))
    share = np.sum(heat, axis=(1, 2), where=ring) / safe_total
    ok = scored & (ring_px > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = share / (ring_px / float(height * width))
    return np.where(ok, share, np.nan), np.where(ok, lift, np.nan)


def ring_side_radius(height: int, width: int) -> int:
    """The ring's width in pixels: RING_SIDE_WIDTH x the shorter side, rounded (Python's round: halves to
    even), at least 1."""
    return max(1, round(RING_SIDE_WIDTH * min(height, width)))


def ring_octants(in_box: np.ndarray, rows: np.ndarray, cols: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Octant (0..7) of the pixels (``rows``, ``cols``) of ``samples`` about the centre of their sample's
    object pixels.

    The centre is the mean row and column index of the object pixels (integer sums over the count, in
    float64); octant = 4 * (dy < 0) + 2 * (dx < 0) + (|dy| > |dx|) with dy, dx the pixel's offsets from it:
    comparisons only, so ``validator.metrics.device`` assigns every pixel the same octant.
    """
    n, height, width = in_box.shape
    count = in_box.sum(axis=(1, 2))
    row_sum = (in_box.sum(axis=2) * np.arange(height)).sum(axis=1)  # int64: exact
    col_sum = (in_box.sum(axis=1) * np.arange(width)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = row_sum.astype(np.float64) / count
        cx = col_sum.astype(np.float64) / count
    dy = rows.astype(np.float64) - cy[samples]
    dx = cols.astype(np.float64) - cx[samples]
    return 4 * (dy < 0) + 2 * (dx < 0) + (np.abs(dy) > np.abs(dx))


def _ring_side_scores(heat, in_box, scored) -> tuple[np.ndarray, np.ndarray]:
    """(ring_side_lift, ring_one_sided): the hottest octant of the ring around the object region over the
    octants' mean heat density, and whether it exceeds RING_ONE_SIDED (see ``RING_SIDE_WIDTH``).

    The ring is the object region dilated by a (2r + 1) x (2r + 1) square (every pixel within Chebyshev
    distance r of an object pixel, inside the frame) minus the object. An octant counts with at least
    RING_SIDE_MIN_PX ring pixels; its density is its ring heat over its ring pixels. NaN where the sample is
    not scored, no octant counts, or the ring holds no heat.
    """
    n, height, width = in_box.shape
    r = ring_side_radius(height, width)
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    ring = np.zeros_like(in_box)
    for i in np.flatnonzero(scored):  # cv2's default border: pixels outside the frame are no object pixels
        ring[i] = cv2.dilate(in_box[i].astype(np.uint8), kernel).astype(bool) & ~in_box[i]
    # only the ring pixels: one bincount per sample and octant instead of 8 full-frame masks
    flat = np.flatnonzero(ring)
    samples, pixel = np.divmod(flat, height * width)
    octant = ring_octants(in_box, pixel // width, pixel % width, samples)
    key = samples * 8 + octant
    heat_sums = np.bincount(key, weights=heat.reshape(-1)[flat], minlength=8 * n).reshape(n, 8).T
    pixels = np.bincount(key, minlength=8 * n).reshape(n, 8).T
    counting = pixels >= RING_SIDE_MIN_PX
    density = np.where(counting, heat_sums / np.maximum(pixels, 1), 0.0)
    total = np.zeros(n)
    for s in range(8):  # the densities are added in this fixed order here and on the device: the same mean
        total = total + density[s]
    sectors = counting.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / sectors
        lift = density.max(axis=0) / mean  # heat >= 0: the max over all octants is the counting octants' max
    ok = scored & (sectors > 0) & (mean > 0)
    return np.where(ok, lift, np.nan), np.where(ok, (lift > RING_ONE_SIDED).astype(np.float64), np.nan)


def _edge_rects(height, width, border_fraction) -> dict[str, tuple[float, float, float, float]]:
    """The four sides of the border band, each the full length of its side: the corner squares of the band
    belong to two edges (top and left both hold the top-left one), so a corner mark lifts two edges while a
    strip along one side lifts one."""
    bw, bh = border_fraction * width, border_fraction * height
    return {
        "top": (0, 0, width, bh),
        "bottom": (0, height - bh, width, height),
        "left": (0, 0, bw, height),
        "right": (width - bw, 0, width, height),
    }


def _region_rects(height, width, corner_fraction, regions, border_fraction=None) -> dict[str, np.ndarray]:
    """Named rectangles in pixel coordinates (corners, edges when ``border_fraction`` is given, and user
    regions) as [1, 4] arrays."""
    cw, ch = corner_fraction * width, corner_fraction * height
    corners = {
        "tl": (0, 0, cw, ch),
        "tr": (width - cw, 0, width, ch),
        "bl": (0, height - ch, cw, height),
        "br": (width - cw, height - ch, width, height),
    }
    rects = {f"corner_heat_{c}": np.array([corners[c]], dtype=np.float64) for c in CORNERS}
    if border_fraction is not None:
        edges = _edge_rects(height, width, border_fraction)
        rects.update({f"edge_heat_{e}": np.array([edges[e]], dtype=np.float64) for e in EDGES})
    scale = np.array([width, height, width, height], dtype=np.float64)
    for name, frac in regions.items():
        rects[f"{REGION_PREFIX}{name}"] = (frac * scale)[None, :]
    return rects


def score_maps(
    maps: np.ndarray,
    boxes: Sequence[np.ndarray],
    *,
    regions: Mapping[str, tuple[float, float, float, float]] | None = None,
    corner_fraction: float = CORNER_FRACTION,
    border_fraction: float = BORDER_FRACTION,
    pointing_tolerance: float | None = None,
    cam_threshold: float = 0.2,
    iou_hit: float = 0.5,
    masks: Sequence[np.ndarray | None] | None = None,
) -> dict[str, np.ndarray]:
    """Score a batch of heatmaps [N, H, W] against per-sample boxes (each [k, 4], k may be 0).

    Returns {metric: float array [N]} with the columns registered in ``METRICS`` plus ``region_<name>``
    for each region (fractions fx0, fy0, fx1, fy1 of width and height). ``pointing_tolerance`` defaults to
    15 * max(H, W) / 224 pixels, measured from a pixel centre to the nearest (closed) box rectangle.
    """
    heat = _check_maps(maps)
    n, height, width = heat.shape
    if len(boxes) != n:
        raise ValueError(f"got {n} maps but {len(boxes)} box arrays")
    corner_fraction = _check_fraction("corner_fraction", corner_fraction, 0.0, 0.5)
    border_fraction = _check_fraction("border_fraction", border_fraction, 0.0, 0.5)
    cam_threshold = _check_fraction("cam_threshold", cam_threshold, 0.0, 1.0)
    iou_hit = _check_fraction("iou_hit", iou_hit, 0.0, 1.0)
    region_fracs = _check_regions(regions)
    if pointing_tolerance is None:
        pointing_tolerance = default_pointing_tolerance(height, width)
    elif not pointing_tolerance >= 0:
        raise UsageError(f"pointing_tolerance must be >= 0 pixels, got {pointing_tolerance}")

    finite = np.isfinite(heat).all(axis=(1, 2))
    heat = np.where(np.isfinite(heat), heat, 0.0)  # keep NaN out of the sums; such maps are dead anyway
    total = heat.sum(axis=(1, 2))
    dead = ~finite | ~(total > 0)
    alive = ~dead
    safe_total = np.where(alive, total, 1.0)

    padded = pad_boxes(boxes)
    box_area = rect_masks(padded, height, width).sum(axis=(1, 2)) / float(height * width)
    in_box = with_object_masks(rect_masks(padded, height, width), masks)  # the object region, mask or boxes
    # per sample, its validated mask (None: boxes), for the distances that need a mask rather than rectangles
    masks = None if masks is None else [in_box[i] if m is not None else None for i, m in enumerate(masks)]
    box_px = in_box.sum(axis=(1, 2))
    has_box = box_px > 0
    scored = alive & has_box  # map-derived box scores exist only here

    def only(values, valid):
        return np.where(valid, values, np.nan).astype(np.float64)

    area = box_px / float(height * width)
    energy = np.sum(heat, axis=(1, 2), where=in_box) / safe_total
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = energy / area
        chance = (energy - area) / (1.0 - area)
        # log(lift) / log(max lift = 1/A): lift as a fraction of its ceiling, so a 50% box that holds 80%
        # of the heat (lift 1.6 of at most 2) scores like a 5% box holding 40% (lift 8 of at most 20).
        relative = np.clip(np.log(lift) / np.log(1.0 / area), -1.0, 1.0)

    centre = np.tile([[width / 2.0, height / 2.0]], (n, 1))
    center_hit = distance_to_boxes(centre, padded) <= pointing_tolerance
    for i, mask in enumerate(masks or ()):
        if mask is not None:
            center_hit[i] = mask_distances(mask, centre[:1])[0] <= pointing_tolerance

    iou = np.full(n, np.nan)
    for i in np.flatnonzero(scored):  # connected components have no batched form
        iou[i] = best_iou(largest_component_box(heat[i], cam_threshold), as_boxes(boxes[i]), height, width)

    out = {
        "dead": dead.astype(np.float64),
        "area": only(box_area if masks is not None else area, has_box),
        "energy": only(energy, scored),
        "lift": only(lift, scored),
        "excess": only(energy - area, scored),
        "chance_corrected": only(chance, scored & (box_px < height * width)),
        "relative_lift": only(relative, scored & (area < MAX_RELATIVE_LIFT_AREA)),
        "pointing_hit": only(_pointing(heat, scored, padded, pointing_tolerance, masks), scored),
        "center_hit": only(center_hit, has_box),
        "rank_accuracy": only(_rank_accuracy(heat, in_box, box_px), scored),
        "cam_box_iou": iou,
        "cam_box_hit": only(iou >= iou_hit, scored),
    }
    out["ring_heat"], out["ring_lift"] = _ring_scores(heat, in_box, padded, scored, safe_total)
    out["ring_side_lift"], out["ring_one_sided"] = _ring_side_scores(heat, in_box, scored)

    outside = ~in_box
    region_heat = {}
    lifts = {}
    for name, rect in _region_rects(height, width, corner_fraction, region_fracs, border_fraction).items():
        region = rect_masks(rect, height, width)
        free = region & outside
        region_heat[name] = np.sum(heat, axis=(1, 2), where=free) / safe_total
        prefix = next((p for p in LIFT_PREFIXES if name.startswith(p)), None)
        if prefix is not None:
            # heat share / area share of the region's free pixels: 1 = a uniform map, as lift is for the box
            free_px = free.sum(axis=(1, 2))
            usable = free_px >= MIN_FREE_CORNER * region.sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                share = free_px / float(height * width)
                lifts[name.replace(prefix, LIFT_PREFIXES[prefix])] = np.where(
                    usable, region_heat[name] / share, np.nan)
    bw, bh = border_fraction * width, border_fraction * height
    band = ~rect_masks(np.array([[bw, bh, width - bw, height - bh]]), height, width)
    region_heat["border_heat"] = np.sum(heat, axis=(1, 2), where=band & outside) / safe_total
    corner_cols = [f"corner_heat_{c}" for c in CORNERS]
    region_heat["corner_heat_max"] = np.max([region_heat[c] for c in corner_cols], axis=0, initial=0.0)

    lift_cols = [f"corner_lift_{c}" for c in CORNERS]
    edge_cols = [f"edge_lift_{e}" for e in EDGES]
    region_heat.update(lifts)
    region_heat["corner_lift_max"] = _finite_max(np.stack([lifts[c] for c in lift_cols]))
    region_heat["edge_lift_max"] = _finite_max(np.stack([lifts[c] for c in edge_cols]))

    if masks is not None:  # the column exists only when asked for, so the device scorer's columns stay the same
        out["object_area"] = only(area, has_box)
    ordered = [*corner_cols, "corner_heat_max", *lift_cols, "corner_lift_max", "border_heat",
               *edge_cols, "edge_lift_max", *(k for k in region_heat if k.startswith(REGION_PREFIX))]
    for name in ordered:
        out[name] = only(region_heat[name], alive)
    return out


def _finite_max(stacked: np.ndarray) -> np.ndarray:
    """Per column, the largest finite value of [R, N]; NaN where none is finite."""
    finite = np.isfinite(stacked)
    return np.where(finite.any(axis=0), np.max(np.where(finite, stacked, -np.inf), axis=0), np.nan)
