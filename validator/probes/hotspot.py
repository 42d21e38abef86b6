"""Hot spots confirmed by ablation: the heatmap proposes, the counterfactual confirms.

A mark beside the object puts its heat on or next to the box, where the heat scores barely see it. This probe
asks the model: for each image it fills the hottest connected region *outside the object* (from the explained
map) with background, and, paired, an equal-area region elsewhere in the background (the same shape, moved
to a seeded random place clear of the object), and compares the explained class's probability on the two:

    hotspot_drop = p(class | random region filled) - p(class | hot spot filled)

that is, the drop the hot spot causes minus the drop any background region of its size causes. A model that
reads a mark anywhere (corner, edge, random position, beside the object) loses the class when the mark's spot
is filled and not when the random region is: a large drop. A model reading the object loses nothing on either.
``hotspot_flip`` is the same difference for the prediction: 1 when filling the hot spot changes a correct
answer and filling the random region does not.

The object keeps its outline: every pixel within ``beside_reach`` (3% of the shorter side, at least 1 px;
2 px at 64, 7 px at 224) of the object region counts as the object here. It is neither in the hot spot nor in
the random region, nor copied into a fill. A clean model's map is often hottest just past the object's edge,
where its outline's contrast is, and filling that edge changes the object itself. On the shapes controls it
turned a square's corner into background often enough that a clean model read as a mark reader (mean drop
0.084 at n=200 without this zone, 0.007 with it).

The hot spot: heat outside the object and its outline, thresholded at ``cam_threshold`` (20%, the
localisation scores' largest-component threshold) of its own maximum, 8-connected components (cv2, as
``largest_component_box``), the component holding the most heat. The random region is matched to it in its
distance from the object (``random_region``): beside the object for a spot beside it, not beside it
otherwise. A sample without an object region (box-free data, or boxes that cover no pixel) is not probed
(NaN): "off the object" has no meaning there, and a clean model's hottest spot is then most often the object
itself, wherever it sits (a central-quarter stand-in failed a clean control whose objects are off-centre).
Box-free data is judged by the corner and edge scores. The random region is drawn from the run seed and the
sample's index in the whole set (never the batch), so a sample's result does not depend on the batch size.

Cost: 2 forward passes per image (hot spot and random region, in one batch); the explainer's probabilities
give the original prediction. Rows get NaN where there is no object region, no heat outside the object (a
dead map, or all the heat on the object) or no place for the random region clear of the object.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from validator.errors import UsageError
from validator.metrics.localisation import BORDER_FRACTION, CORNER_FRACTION, ring_side_radius
from validator.probes.counterfactual import _background_only, _call, _check_fill, _check_images, _masks

COLUMNS = ("hotspot_drop", "hotspot_flip", "hotspot_place")
# Where a hot spot sits (``hotspot_place`` is the index), by its hottest pixel, where the map points most, in
# this order of precedence: beside the object (within the beside-heat check's ring, RING_SIDE_WIDTH of the
# shorter side, of the object), in a corner square (CORNER_FRACTION of each side, the corner scores'
# squares), in the border band (BORDER_FRACTION, the edge scores' band), or elsewhere in the background.
# The hottest pixel, not the spot's extent or centre: a spot often joins the mark to the heat spilling past
# the object, and so touches the object when the mark does not (Decoy-MNIST partial, 59% of its decisive
# spots called "beside" by contact, 36% by the hottest pixel; benchmarks/README.md).
PLACES = ("beside the object", "in a corner", "along an edge", "in the background")
# The object's outline zone, as a share of the shorter side (module doc).
BESIDE_FRACTION = 0.03

FORWARD_PASSES = 2


def hot_spot(heat: np.ndarray, exclude: np.ndarray, cam_threshold: float = 0.2) -> np.ndarray:
    """Bool [H, W]: the 8-connected region of heat >= cam_threshold x its maximum outside ``exclude`` that
    holds the most heat (all False when there is no heat outside)."""
    outside = np.where(exclude, 0.0, np.nan_to_num(heat.astype(np.float64)))
    peak = outside.max(initial=0.0)
    if not peak > 0:
        return np.zeros(heat.shape, dtype=bool)
    binary = (outside >= cam_threshold * peak).astype(np.uint8)
    count, labels = cv2.connectedComponents(binary, connectivity=8)
    sums = np.bincount(labels.ravel(), weights=outside.ravel(), minlength=count)
    sums[0] = -np.inf  # label 0 is what lies below the threshold
    return labels == int(np.argmax(sums))


def random_region(spot: np.ndarray, exclude: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """The spot's shape moved to a random place clear of ``exclude`` and matched in its distance to it; None
    where the shape fits nowhere clear of ``exclude``.

    Filling background right beside an object disturbs a clean model (the fill's seam touches the object's
    outline), so a spot beside ``exclude`` (within ``beside_reach`` px of it, chessboard distance) is
    compared with a region at the same distance from it, and a spot farther off with a region not beside it. Every placement is scored at once; where none matches, those that match most nearly are kept.
    Of those, the ones overlapping the spot least are kept, and ``rng`` draws one."""
    height, width = spot.shape
    rows, cols = np.flatnonzero(spot.any(axis=1)), np.flatnonzero(spot.any(axis=0))
    crop = spot[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    bh, bw = crop.shape
    kernel = crop.astype(np.float32)

    def under(mask):  # [y, x]: pixels of ``mask`` under the crop placed with its top-left corner at (y, x)
        counts = cv2.filter2D(mask.astype(np.float32), -1, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        return np.rint(counts[:height - bh + 1, :width - bw + 1])

    clear = under(exclude) == 0
    if not clear.any():
        return None
    if exclude.any():
        distance = cv2.distanceTransform((~exclude).astype(np.uint8), cv2.DIST_C, 3)  # 1 = touching
        nearest = cv2.erode(distance, crop.astype(np.uint8), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT,
                            borderValue=float(height + width))[:height - bh + 1, :width - bw + 1]
        reach = beside_reach(height, width)
        own = distance[spot].min()
        mismatch = np.abs(nearest - own) if own <= reach else np.maximum(reach + 1 - nearest, 0.0)
        clear &= mismatch <= mismatch[clear].min()
    overlap = np.where(clear, under(spot), np.inf)
    ys, xs = np.nonzero(overlap == overlap.min())
    pick = int(rng.integers(len(ys)))
    placed = np.zeros_like(spot)
    placed[ys[pick]:ys[pick] + bh, xs[pick]:xs[pick] + bw] = crop
    return placed


def beside_reach(height: int, width: int) -> int:
    """Pixels (chessboard distance) within which a spot counts as beside the object."""
    return max(1, round(BESIDE_FRACTION * min(height, width)))


def place(spot: np.ndarray, heat: np.ndarray, exclude: np.ndarray) -> int:
    """Index into ``PLACES`` of where ``spot`` (a non-empty bool mask) sits, by its hottest pixel; ``exclude``
    is the object with its outline zone (``beside_reach`` px), all False for none."""
    height, width = spot.shape
    weights = np.where(spot, np.nan_to_num(heat.astype(np.float64)), -np.inf)
    y, x = np.unravel_index(int(np.argmax(weights)), spot.shape)
    if exclude.any():
        distance = cv2.distanceTransform((~exclude).astype(np.uint8), cv2.DIST_C, 3)[y, x]
        if distance + beside_reach(height, width) <= ring_side_radius(height, width):
            return 0
    cy, cx = y + 0.5, x + 0.5
    in_x = min(cx, width - cx) < CORNER_FRACTION * width
    in_y = min(cy, height - cy) < CORNER_FRACTION * height
    if in_x and in_y:
        return 1
    if min(cx, width - cx) < BORDER_FRACTION * width or min(cy, height - cy) < BORDER_FRACTION * height:
        return 2
    return 3


def _object_masks(boxes, n: int, height: int, width: int, masks=None) -> np.ndarray:
    """Object pixels per sample with their outline (module doc): its mask where it has one, else its boxes,
    grown by ``beside_reach`` px (all False where it has neither)."""
    if boxes is None:
        return np.zeros((n, height, width), dtype=bool)
    objects = _masks(boxes, n, height, width, masks)
    reach = beside_reach(height, width)
    kernel = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    return np.stack([cv2.dilate(o.astype(np.uint8), kernel).astype(bool) for o in objects]) if n else objects


def _filled(images, objects, regions, fill):
    """Each region filled from the background clear of both the object and the region; other pixels kept."""
    background = _background_only(images, objects | regions, fill)
    return np.where(regions[..., None], background, images)


def _regions(maps, objects, seed, sample_ids, cam_threshold):
    n = len(maps)
    spots = np.zeros(objects.shape, dtype=bool)
    others = np.zeros(objects.shape, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    for i in range(n):
        if not objects[i].any():
            continue  # no object region: nothing is "off the object" (module doc)
        spot = hot_spot(maps[i], objects[i], cam_threshold)
        if not spot.any():
            continue
        rng = np.random.default_rng([int(seed) % 2**64, int(sample_ids[i])])
        other = random_region(spot, objects[i], rng)
        if other is not None:
            spots[i], others[i], ok[i] = spot, other, True
    return spots, others, ok


def hotspot_scores(predict, images, maps, class_ids, boxes: Sequence | None = None, *, fill: str = "tile",
                   seed: int = 0, sample_ids=None, original_probabilities=None, multi_label: bool = False,
                   cam_threshold: float = 0.2, masks=None) -> dict[str, np.ndarray]:
    """Per-sample ``hotspot_drop`` and ``hotspot_flip`` (float64 [N], NaN where not probed; module doc).

    ``predict`` maps float32 [N, H, W, C] inputs to probabilities [N, C']; it is called once on the 2N filled
    images (and once on the originals unless ``original_probabilities`` is given). ``maps`` [N, H, W] are the
    explained class's maps; ``sample_ids`` [N] int, each sample's index in the whole set (default 0..N-1), seed
    the random region with ``seed``; ``masks`` [N] (an [H, W] bool array or None each) replace a sample's
    boxes as its object region."""
    arr = _check_images(images)
    fill = _check_fill(fill)
    n, height, width = arr.shape[:3]
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape != (n, height, width):
        raise UsageError(f"maps must have shape {(n, height, width)}, got {maps.shape}")
    ids = np.asarray(class_ids, dtype=np.int64)
    sample_ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    if ids.shape != (n,) or sample_ids.shape != (n,):
        raise UsageError(f"class_ids and sample_ids must have shape ({n},)")
    out = {name: np.full(n, np.nan) for name in COLUMNS}
    objects = _object_masks(boxes, n, height, width, masks)
    spots, others, ok = _regions(maps, objects, seed, sample_ids, cam_threshold)
    if not ok.any():
        return out
    rows = np.flatnonzero(ok)
    batch = np.concatenate([_filled(arr[rows], objects[rows], spots[rows], fill),
                            _filled(arr[rows], objects[rows], others[rows], fill)])
    if original_probabilities is None:
        p_orig = np.asarray(predict(arr[rows].copy()), dtype=np.float64)  # a copy: predict may preprocess in place
    else:
        p_orig = np.asarray(original_probabilities, dtype=np.float64)[rows]
    probs = _call(predict, batch, p_orig.shape[1], "hot-spot / random-region")
    p_hot, p_rand = probs[: len(rows)], probs[len(rows):]
    k = ids[rows]
    at = np.arange(len(rows))

    def given(p):
        return p[at, k] >= 0.5 if multi_label else p.argmax(axis=1) == k

    correct = given(p_orig)
    out["hotspot_drop"][rows] = p_rand[at, k] - p_hot[at, k]
    out["hotspot_flip"][rows] = (correct & ~given(p_hot)).astype(float) - (correct & ~given(p_rand)).astype(float)
    for i in rows:
        out["hotspot_place"][i] = place(spots[i], maps[i], objects[i])
    return out
