"""Counterfactual probes: does the model still name the class when the object is gone, or moved elsewhere?

A heatmap can look right while the decision rests on the background. These probes ask the model directly,
with forward passes only (Backgrounds Challenge, Xiao et al. 2020, "Noise or Signal: The Role of Image
Backgrounds in Object Recognition"):

* **background-only** (their Only-BG): the object boxes are filled, so only the background is left. A
  model that still predicts the class is reading the background. ``bg_only_correct`` is that accuracy,
  ``bg_only_skill`` the same rescaled so 0 is chance and 1 is "the background alone always gives the
  class", ``bg_only_confidence`` the true-class probability left, ``confidence_drop`` how much was lost.
* **object-only, Mixed-Rand**: each sample's object is pasted onto the background of a sample of another
  class. ``bg_gap`` = correct(original) - correct(Mixed-Rand): the accuracy lost when the background is
  swapped for another class's, which includes what the paste itself costs (seams, the object's box corners
  on a new background): a clean model loses up to ~0.4 of it on objects of 25-50%.
* **Mixed-Same**, the paste's control: the same object pasted the same way onto the background of another
  image *of its own class*. ``bg_reliance`` = correct(Mixed-Same) - correct(Mixed-Rand); its mean is Xiao et
  al.'s BG-gap (ImageNet-9: 86.2% - 78.9% = 7.3 points for a standard ResNet-50, 0.2 for one trained on
  Mixed-Rand). Both arms pay the paste's cost, so what is left is the accuracy that follows the background's
  class: ~0 for a model that ignores backgrounds, the cue's share of the accuracy for a partial shortcut
  (a cue that agrees with the label in Mixed-Same and contradicts it in Mixed-Rand, as shuffling it would).

Pixel membership follows ``validator.metrics.geometry`` (pixel-centre rule), as the localisation scores
do, so a probe removes exactly the pixels the heat scores call "object". A sample whose boxes cover no
pixel centre (k = 0, slivers) or every pixel (no background to probe) gets NaN in every column. With
``masks`` (one per sample, None where a sample has only boxes) Mixed-Rand and Mixed-Same paste only the mask's
pixels, as the scores count them. The background-only fill removes each object's *box* either way, as
Xiao et al.'s Only-BG does: a mask-shaped hole keeps the object's silhouette, which a model reads (measured on
the shapes controls: clean models' background-only skill 0.32-0.41 with mask-shaped holes, <= 0 with boxes,
and one failed the gate for it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from validator.errors import ModelError, UsageError
from validator.metrics.geometry import pad_boxes, rect_masks
from validator.metrics.localisation import BORDER_FRACTION, with_object_masks

FILLS = ("tile", "mean", "blur", "inpaint")
COLUMNS = ("bg_only_correct", "bg_only_skill", "bg_only_confidence", "object_only_correct", "bg_gap",
           "mixed_same_correct", "bg_reliance", "confidence_drop")
CHANNELS = (1, 3, 4)
# Blur sigma as a share of the longer image side (22 px at 224): wide enough that the blurred box holds
# only a smooth mix of the surrounding background, with no edge or texture at object scale.
BLUR_SIGMA_FRACTION = 0.1
# cv2.inpaint neighbourhood radius (pixels): the usual choice; larger is slower and no better for boxes.
INPAINT_RADIUS = 3

Predict = Callable[[np.ndarray], np.ndarray]


def _check_images(images: np.ndarray) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise UsageError(f"images must have shape [N, H, W, C], got shape {arr.shape}")
    if arr.shape[-1] not in CHANNELS:
        raise UsageError(f"images must have 1, 3 or 4 channels (last axis), got shape {arr.shape}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise UsageError(f"images must have at least one pixel, got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise UsageError("images contain NaN or infinite values (expected preprocessed model inputs)")
    return arr


def _check_fill(fill: str) -> str:
    if fill not in FILLS:
        raise UsageError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    return fill


def _masks(boxes: Sequence[np.ndarray], n: int, height: int, width: int, masks=None) -> np.ndarray:
    """[N, H, W] bool object masks, with the same rounding as the localisation scores (``masks`` where given)."""
    if isinstance(boxes, np.ndarray) and boxes.ndim != 3:
        raise UsageError(f"boxes must be a list of N arrays [k, 4] (or one array [N, k, 4]), "
                         f"got shape {boxes.shape}")
    if len(boxes) != n:
        raise UsageError(f"boxes has {len(boxes)} entries but there are {n} images (one [k, 4] array each)")
    if n == 0:
        return np.zeros((0, height, width), dtype=bool)
    return with_object_masks(rect_masks(pad_boxes(boxes), height, width), masks)


def _check_class_ids(class_ids, n: int, num_classes: int | None = None) -> np.ndarray:
    raw = np.asarray(class_ids)
    if raw.shape != (n,):
        raise UsageError(f"class_ids must have shape [{n}] (one per image), got shape {raw.shape}")
    integral = raw.dtype.kind in "iub" or (
        raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)))
    if not integral:
        raise UsageError(f"class_ids must be integers, got dtype {raw.dtype}")
    ids = raw.astype(np.int64)
    if num_classes is not None and n and (ids.min() < 0 or ids.max() >= num_classes):
        bad = ids[(ids < 0) | (ids >= num_classes)][0]
        raise UsageError(
            f"class id {bad} is out of range for num_classes={num_classes} "
            f"(expected 0..{num_classes - 1})")
    return ids


def _outside_mean(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """[N, C] per-image, per-channel mean of the non-object pixels (float64); all pixels when all is box."""
    outside = ~masks
    none_left = ~outside.any(axis=(1, 2))
    outside[none_left] = True  # no background at all: fall back to the image mean (the probe is NaN anyway)
    return np.mean(images, axis=(1, 2), dtype=np.float64, where=outside[..., None])


def _blur_fill(img: np.ndarray, mask: np.ndarray, mean: np.ndarray) -> np.ndarray:
    flat = np.where(mask[..., None], mean.astype(np.float32), img)
    sigma = BLUR_SIGMA_FRACTION * max(img.shape[0], img.shape[1])
    blurred = cv2.GaussianBlur(flat, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT_101)
    return blurred.reshape(img.shape)


def _inpaint_fill(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.full_like(img, lo)
    scale = (hi - lo) / 255.0
    u8 = np.clip(np.rint((img - lo) / scale), 0, 255).astype(np.uint8)
    m8 = mask.astype(np.uint8)
    # cv2.inpaint takes 8-bit 1- or 3-channel images: a 4th channel is inpainted on its own.
    groups = [slice(0, 3), slice(3, 4)] if img.shape[-1] == 4 else [slice(0, img.shape[-1])]
    out = np.empty_like(u8)
    for g in groups:
        part = np.ascontiguousarray(u8[..., g])
        out[..., g] = cv2.inpaint(part, m8, INPAINT_RADIUS, cv2.INPAINT_TELEA).reshape(part.shape)
    return (out.astype(np.float32) * np.float32(scale) + np.float32(lo)).astype(np.float32)


def _tile_fill(img: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The image tiled with its largest full-width or full-height strip clear of the objects (None: no strip).

    Xiao et al.'s Only-BG-T: the removed object becomes background texture, with no flat patch whose edges a
    shape detector can read (a mean-filled box is a square). The strip is taken inside the frame's border
    band (``BORDER_FRACTION`` of each side) where that leaves one: marks sit on borders and in corners (tags,
    strips, rulers), and tiling them would copy them into the middle of the frame, where even a model that
    never read them may answer to their repeated shapes. A mark stays where it was, outside the fill."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    height, width = mask.shape
    # (top, bottom, left, right) of the four strips beside the objects' bounding rectangle
    strips = [(0, height, 0, x0), (0, height, x1, width), (0, y0, 0, width), (y1, height, 0, width)]
    mh, mw = int(BORDER_FRACTION * height), int(BORDER_FRACTION * width)
    inner = [(max(t, mh), min(b, height - mh), max(le, mw), min(r, width - mw)) for t, b, le, r in strips]
    for candidates in (inner, strips):
        t, b, le, r = max(candidates, key=lambda s: max(0, s[1] - s[0]) * max(0, s[3] - s[2]))
        if b > t and r > le:
            strip = img[t:b, le:r]
            reps = (-(-height // strip.shape[0]), -(-width // strip.shape[1]), 1)
            return np.tile(strip, reps)[:height, :width]
    return None


def _background_only(images: np.ndarray, masks: np.ndarray, fill: str) -> np.ndarray:
    means = _outside_mean(images, masks)
    if fill == "tile":
        out = np.where(masks[..., None], means[:, None, None, :].astype(np.float32), images)
        for i in np.flatnonzero(masks.any(axis=(1, 2))):
            tiled = _tile_fill(images[i], masks[i])
            if tiled is not None:  # else the objects span the whole image both ways: the mean fill stays
                out[i][masks[i]] = tiled[masks[i]]
        return out
    if fill == "mean":
        return np.where(masks[..., None], means[:, None, None, :].astype(np.float32), images)
    out = images.copy()
    for i in np.flatnonzero(masks.any(axis=(1, 2))):
        if fill == "blur":
            filled = _blur_fill(images[i], masks[i], means[i])
        else:
            filled = _inpaint_fill(images[i], masks[i])
        out[i][masks[i]] = filled[masks[i]]
    return out


def background_only(images: np.ndarray, boxes: Sequence[np.ndarray], fill: str = "tile") -> np.ndarray:
    """The images with their object boxes filled, so only the background is left (a new float32 array).

    Pixels outside the boxes are returned unchanged; an image without box pixels comes back as it was.
    Fills (cost per 224x224x3 image, timed on 32-image batches on a shared 2-core CPU; a CPU forward pass
    of a ResNet-50 costs more than any of them):

    * ``"tile"`` (the default): the box pixels are taken from the image tiled with its largest full-width or
      full-height strip outside the boxes' bounding rectangle (Xiao et al.'s Only-BG-T): background texture,
      no flat patch, and the cues the background carries (a colour cast, a texture) stay. Falls back to
      ``"mean"`` when the objects span the image both ways. Numpy slicing, about as cheap as ``"mean"``.
    * ``"mean"``: each box pixel becomes the image's per-channel mean over the pixels outside the boxes.
      Removes the object, keeps the global colour cast; vectorised over the batch, about 3 ms.
    * ``"blur"``: the box pixels are first set to that mean, then the image is blurred with a Gaussian of
      sigma ``BLUR_SIGMA_FRACTION`` x the longer side and the box takes the blurred values: the nearby
      background bleeds smoothly into the box and no object detail survives (it was removed before the
      blur). A separable filter per image, about 9 ms whatever the box size.
    * ``"inpaint"``: ``cv2.inpaint`` (Telea fast marching, radius ``INPAINT_RADIUS``) on a copy scaled to
      uint8 over the image's own min..max and mapped back, so box pixels carry a quantisation error of up
      to (max - min) / 510. The most natural-looking fill and the slowest: its cost grows with the number
      of box pixels: about 5 ms for a box of 4% of the image, 12 ms for one of 25%, more for larger.
    """
    arr = _check_images(images)
    fill = _check_fill(fill)
    regions = _masks(boxes, arr.shape[0], arr.shape[1], arr.shape[2])
    return _background_only(arr, regions, fill)


def _donors(class_ids: np.ndarray, usable: np.ndarray, seed: int, groups: np.ndarray | None = None,
            same_class: bool = False) -> np.ndarray:
    """Per sample, a seeded random sample of another class (``same_class``: of its own class) and another
    group (image), -1 when none or the sample is not probed."""
    n = len(class_ids)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    # One uniform draw per sample, used or not: a sample's donor does not depend on the other samples' boxes.
    # Mixed-Same draws from its own stream, so adding it leaves every Mixed-Rand donor as it was.
    draws = np.random.default_rng([int(seed) & 0xFFFFFFFF, 1] if same_class else seed).random(n)
    donor = np.full(n, -1, dtype=np.int64)
    for i in np.flatnonzero(usable):
        classes = (class_ids == class_ids[i]) if same_class else (class_ids != class_ids[i])
        candidates = np.flatnonzero(classes & (groups != groups[i]))
        if len(candidates):
            donor[i] = candidates[min(int(draws[i] * len(candidates)), len(candidates) - 1)]
    return donor


def _sample_draw(seed: int, sample_id: str, *stream: int) -> float:
    """One uniform draw seeded by the run seed and the sample's identity (``stream``: another, independent one)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(sample_id.encode("utf-8")), *stream]).random()


def draw_donors(samples: Sequence, seed: int) -> np.ndarray:
    """The Mixed-Rand donor of every sample of the whole audited set (index into ``samples``, -1: none).

    A donor is a labelled sample of another class from another image, and that image holds no object of
    the recipient's class (else the "other" background would still show the class). The draw is seeded by
    ``seed`` and the sample's identity (``sample_id``) and the candidates are ordered by identity, so a
    sample's donor depends neither on the batch it lands in, nor the shard, nor the order of the files."""
    n = len(samples)
    donor = np.full(n, -1, dtype=np.int64)
    labelled = [i for i, s in enumerate(samples) if s.class_id is not None]
    if not labelled:
        return donor
    # candidates by (class, identity): "every class but c" is the list with c's one contiguous block cut out
    ordered = sorted(labelled, key=lambda i: (samples[i].class_id, samples[i].sample_id))
    ids = [samples[i].class_id for i in ordered]
    start = {c: ids.index(c) for c in dict.fromkeys(ids)}
    count = {c: ids.count(c) for c in start}
    classes_on: dict[str, set] = {}
    for i in labelled:
        classes_on.setdefault(samples[i].image_path, set()).add(samples[i].class_id)
    for i in labelled:
        mine = samples[i]
        c, others = mine.class_id, len(ordered) - count[mine.class_id]
        if others == 0:
            continue
        first = min(int(_sample_draw(seed, mine.sample_id) * others), others - 1)
        for step in range(others):  # the next candidate (cyclically) whose image shows none of class c
            k = (first + step) % others
            j = ordered[k if k < start[c] else k + count[c]]
            if c not in classes_on[samples[j].image_path]:
                donor[i] = j
                break
    return donor


def draw_same_donors(samples: Sequence, seed: int) -> np.ndarray:
    """The Mixed-Same donor of every sample of the whole audited set (index into ``samples``, -1: none).

    A donor is a labelled sample of the recipient's own class from another image, drawn like
    ``draw_donors`` (seeded by ``seed`` and the sample's identity, candidates ordered by identity, its own
    random stream), so it depends neither on the batch, nor the shard, nor the order of the files. A class
    whose samples all sit on one image has no Mixed-Same donor: its rows get NaN ``bg_reliance``."""
    donor = np.full(len(samples), -1, dtype=np.int64)
    by_class: dict = {}
    for i, s in enumerate(samples):
        if s.class_id is not None:
            by_class.setdefault(s.class_id, []).append(i)
    for members in by_class.values():
        members.sort(key=lambda i: samples[i].sample_id)
        for i in members:
            mine = samples[i]
            first = min(int(_sample_draw(seed, mine.sample_id, 1) * len(members)), len(members) - 1)
            for step in range(len(members)):  # the next candidate (cyclically) on another image
                j = members[(first + step) % len(members)]
                if samples[j].image_path != mine.image_path:
                    donor[i] = j
                    break
    return donor


def _object_only(images, masks, class_ids, fill, seed, background, groups=None, same_class=False):
    """``masks``: the pixels pasted; ``background``: every sample's background-only image (its boxes filled)."""
    usable = _probed(masks)
    donor = _donors(class_ids, usable, seed, groups, same_class)
    # Fallback (donor -1): the object on its own filled background, which is the original image again.
    base = background[np.where(donor >= 0, donor, np.arange(len(donor)))]
    return np.where(masks[..., None], images, base), donor, base


def _paste_on_donors(images, masks, donor_images, donor_boxes, has_donor, fill):
    """Each object pasted onto its own donor's background-only image (donors given by the caller)."""
    donor_arr = _check_images(donor_images)
    if donor_arr.shape != images.shape:
        raise UsageError(f"donor_images has shape {donor_arr.shape}, expected {images.shape} (one per image)")
    background = _background_only(donor_arr, _masks(donor_boxes, *donor_arr.shape[:3]), fill)
    has_donor = np.asarray(has_donor, dtype=bool) & _probed(masks)
    mixed = np.where(masks[..., None], images, background)
    return mixed, np.where(has_donor, 0, -1), background


def object_only(
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    class_ids: np.ndarray | Sequence[int],
    fill: str = "tile",
    seed: int = 0,
    groups: Sequence | None = None,
    masks=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mixed-Rand: each sample's box pixels pasted onto the background-only image of a donor of another class.

    The donor is drawn from the same batch, among samples whose class differs (and, with ``groups``, e.g. the
    image each sample comes from, whose group differs: two samples of one image are never each other's
    donor), with ``seed`` (the same inputs and seed give the same donors). The audit draws donors from the
    whole set instead (``draw_donors``), so that no result depends on the batch. A donor without a box is
    fine: its whole image is background.
    Returns (images [N, H, W, C] float32, donor_index [N] int64). donor_index is -1 when no sample in the
    batch has another class, or the sample has no box pixels (or is all box); such a sample's object is
    pasted onto its own filled background, which gives back the original image, so it carries no
    Mixed-Rand information (``probe_scores`` reports NaN for it). Batches drawn one class at a time leave
    every donor at -1: probe a shuffled set.
    """
    arr = _check_images(images)
    fill = _check_fill(fill)
    objects = _masks(boxes, arr.shape[0], arr.shape[1], arr.shape[2], masks)
    ids = _check_class_ids(class_ids, arr.shape[0])
    if groups is not None and len(groups) != arr.shape[0]:
        raise UsageError(f"groups has {len(groups)} entries but there are {arr.shape[0]} images")
    background = _background_only(arr, _masks(boxes, arr.shape[0], arr.shape[1], arr.shape[2]), fill)
    mixed, donor, _ = _object_only(arr, objects, ids, fill, seed, background=background,
                                   groups=None if groups is None else np.asarray(groups))
    return mixed, donor


def _probed(masks: np.ndarray) -> np.ndarray:
    """Samples with both object and background pixels: the only ones the probes say anything about."""
    return masks.any(axis=(1, 2)) & ~masks.all(axis=(1, 2))


def _call(predict: Predict, batch: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    probs = np.asarray(predict(batch))
    expected = (batch.shape[0], num_classes)
    if probs.shape != expected:
        raise UsageError(f"predict returned shape {probs.shape} on the {what} images, expected {expected} "
                         f"(N, num_classes): is num_classes right?")
    probs = probs.astype(np.float64)
    if not np.isfinite(probs).all():
        raise ModelError(f"predict returned NaN or infinite probabilities on the {what} images")
    return probs


def probe_scores(
    predict: Predict,
    images: np.ndarray,
    boxes: Sequence[np.ndarray],
    class_ids: np.ndarray | Sequence[int],
    num_classes: int,
    fill: str = "tile",
    seed: int = 0,
    original_probabilities: np.ndarray | None = None,
    multi_label: bool = False,
    donors: tuple | None = None,
    masks=None,
    same_donors: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Per-sample probe columns (float64 [N], NaN where the sample is not probed; see the module doc).

    ``predict`` maps float32 [N, H, W, C] model inputs to probabilities [N, num_classes]; it is called
    exactly four times, on the originals, on all background-only, on all Mixed-Rand and on all Mixed-Same
    images, so the caller chooses N to fit memory. ``original_probabilities`` [N, num_classes], when the caller already has
    them (the explainer computes them), saves the first call. ``multi_label`` (K independent sigmoid units):
    a label counts as given when its probability is >= 0.5, not by the argmax, and chance is 0, so
    ``bg_only_skill`` is the share of labels still detected with the object removed. ``object_only_correct`` and ``bg_gap`` are also NaN where no donor of
    another class exists (see ``object_only``): counting those as "no gap" would dilute the BG-gap.
    ``donors``: ``(donor_images [N, H, W, C], donor_boxes, has_donor [N] bool)``, each sample's Mixed-Rand
    donor chosen by the caller (the audit's ``draw_donors``); without it, donors come from this batch. A
    fill removes the donors' boxes.
    ``same_donors``: the same for Mixed-Same (donors of the sample's own class, the audit's
    ``draw_same_donors``); without it, from this batch. ``mixed_same_correct`` and ``bg_reliance`` are NaN
    where a sample has no donor of either kind.
    ``masks``: per sample its object mask or None (its boxes), see the module doc.
    """
    if not callable(predict):
        raise UsageError(f"predict must be a callable images -> probabilities, got {type(predict).__name__}")
    arr = _check_images(images)
    fill = _check_fill(fill)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise UsageError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    num_classes = int(num_classes)
    n = arr.shape[0]
    objects = _masks(boxes, n, arr.shape[1], arr.shape[2], masks)  # what the pastes carry
    removed = _masks(boxes, n, arr.shape[1], arr.shape[2])  # what background-only removes: the boxes
    ids = _check_class_ids(class_ids, n, num_classes)
    if n == 0:
        return {name: np.zeros(0) for name in COLUMNS}

    background = _background_only(arr, removed, fill)

    def pasted(given_donors, same_class):
        if given_donors is None:
            return _object_only(arr, objects, ids, fill, seed, background=background, same_class=same_class)
        donor_images, donor_boxes, has_donor = given_donors
        return _paste_on_donors(arr, objects, donor_images, donor_boxes, has_donor, fill)

    mixed, donor, rand_base = pasted(donors, False)
    mixed_same, same_donor, same_base = pasted(same_donors, True)
    rows = np.arange(n)
    # A copy: a predict that preprocesses in place (keras.applications' preprocess_input does) must not
    # change the caller's images.
    if original_probabilities is None:
        p_orig = _call(predict, arr.copy(), num_classes, "original")
    else:
        p_orig = np.asarray(original_probabilities, dtype=np.float64)
        if p_orig.shape != (n, num_classes):
            raise UsageError(f"original_probabilities has shape {p_orig.shape}, expected {(n, num_classes)}")
    p_bg = _call(predict, background, num_classes, "background-only")
    p_obj = _call(predict, mixed, num_classes, "object-only (Mixed-Rand)")
    p_same = _call(predict, mixed_same, num_classes, "Mixed-Same")

    probed = _probed(objects) & _probed(removed)  # an object to paste and a background left once the box is gone
    mixed_ok = probed & (donor >= 0)
    same_ok = probed & (same_donor >= 0)
    def given(probs):
        if multi_label:
            return (probs[rows, ids] >= 0.5).astype(np.float64)
        return (probs.argmax(axis=1) == ids).astype(np.float64)

    correct, bg_correct, obj_correct, same_correct = given(p_orig), given(p_bg), given(p_obj), given(p_same)
    chance = 0.0 if multi_label else 1.0 / num_classes

    def only(values, valid):
        return np.where(valid, values, np.nan).astype(np.float64)

    return {
        "bg_only_correct": only(bg_correct, probed),
        "bg_only_skill": only((bg_correct - chance) / (1.0 - chance), probed),
        "bg_only_confidence": only(p_bg[rows, ids], probed),
        "object_only_correct": only(obj_correct, mixed_ok),
        "bg_gap": only(correct - obj_correct, mixed_ok),
        "mixed_same_correct": only(same_correct, same_ok),
        "bg_reliance": only(same_correct - obj_correct, mixed_ok & same_ok),
        "confidence_drop": only(p_orig[rows, ids] - p_bg[rows, ids], probed),
    }
