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

The hot spot: heat outside the object pixels, thresholded at ``cam_threshold`` (20%, the localisation scores'
largest-component threshold) of its own maximum, 8-connected components (cv2, as ``largest_component_box``),
the component holding the most heat. A sample without an object region (box-free data, or boxes that
cover no pixel) is not probed (NaN): "off the object" has no meaning there, and a clean model's hottest spot
is then most often the object itself, wherever it sits (a central-quarter stand-in failed a clean control
whose objects are off-centre). Box-free data is judged by the corner and edge scores. The random region is drawn from the run seed and the sample's index
in the whole set (never the batch), so a sample's result does not depend on the batch size.

Cost: 2 forward passes per image (hot spot and random region, in one batch); the explainer's probabilities
give the original prediction. Rows get NaN where there is no object region, no heat outside the object (a
dead map, or all the heat on the object) or no place for the random region clear of the object.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from validator.errors import UsageError
from validator.metrics.localisation import BORDER_FRACTION, CORNER_FRACTION
from validator.probes.counterfactual import _background_only, _call, _check_fill, _check_images, _masks

COLUMNS = ("hotspot_drop", "hotspot_flip", "hotspot_place")
# Where a hot spot sits, in this order of precedence (``hotspot_place`` is the index): touching the object
# (within BESIDE_FRACTION of the shorter side), its heat-weighted centre in a corner square (CORNER_FRACTION
# of each side, the corner scores' squares), in the border band (BORDER_FRACTION, the edge scores' band), or
# elsewhere in the background.
PLACES = ("beside the object", "in a corner", "along an edge", "in the background")
BESIDE_FRACTION = 0.03

FORWARD_PASSES = 2
# Random placements tried per image (drawn at once, so the draw does not depend on which one fits).
PLACEMENT_TRIES = 64


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
    """The spot's shape moved to a random place clear of ``exclude`` (the one overlapping the spot least,
    first drawn on ties); None where no tried place is clear."""
    height, width = spot.shape
    rows, cols = np.flatnonzero(spot.any(axis=1)), np.flatnonzero(spot.any(axis=0))
    crop = spot[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    bh, bw = crop.shape
    ys = rng.integers(0, height - bh + 1, PLACEMENT_TRIES)
    xs = rng.integers(0, width - bw + 1, PLACEMENT_TRIES)
    best, best_overlap = None, np.inf
    for y, x in zip(ys, xs, strict=True):
        if (exclude[y:y + bh, x:x + bw] & crop).any():
            continue
        overlap = (spot[y:y + bh, x:x + bw] & crop).sum()
        if overlap < best_overlap:
            best, best_overlap = (y, x), overlap
            if overlap == 0:
                break
    if best is None:
        return None
    placed = np.zeros_like(spot)
    placed[best[0]:best[0] + bh, best[1]:best[1] + bw] = crop
    return placed


def place(spot: np.ndarray, heat: np.ndarray, exclude: np.ndarray) -> int:
    """Index into ``PLACES`` of where ``spot`` (a non-empty bool mask) sits, ``exclude`` being the object."""
    height, width = spot.shape
    reach = max(1, round(BESIDE_FRACTION * min(height, width)))
    near = cv2.dilate(exclude.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)
    if exclude.any() and (spot & near).any():
        return 0
    weights = np.where(spot, np.maximum(np.nan_to_num(heat), 0.0), 0.0)
    if weights.sum() <= 0:
        weights = spot.astype(float)
    ys, xs = np.indices(spot.shape)
    cy, cx = (ys * weights).sum() / weights.sum() + 0.5, (xs * weights).sum() / weights.sum() + 0.5
    in_x = min(cx, width - cx) < CORNER_FRACTION * width
    in_y = min(cy, height - cy) < CORNER_FRACTION * height
    if in_x and in_y:
        return 1
    if min(cx, width - cx) < BORDER_FRACTION * width or min(cy, height - cy) < BORDER_FRACTION * height:
        return 2
    return 3


def _object_masks(boxes, n: int, height: int, width: int, masks=None) -> np.ndarray:
    """Object pixels per sample: its mask where it has one, else its boxes (all False where it has neither)."""
    if boxes is None:
        return np.zeros((n, height, width), dtype=bool)
    return _masks(boxes, n, height, width, masks)


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
