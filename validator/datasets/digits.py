"""Real handwriting on real photographs: scikit-learn's digits pasted on scikit-image photo crops.

Like :mod:`validator.datasets.synthetic`, but the objects and backgrounds are real data, both bundled with
their libraries (no download): the 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` are
upscaled (cubic), smoothed and thresholded with a soft (anti-aliased) edge into a stroke, then painted in
an ink that contrasts with the local background (luminance difference >= 60) onto a 64x64 random crop of
one of the photographs in :data:`PHOTOS` (``skimage.data``), slightly defocused (as behind a sign
photographed at a shallow depth of field). Each image holds one digit, with its exact box: the bounding
box of the stroke mask (every pixel the ink touches).

Classes: ``n_classes`` <= 10 is the first ``n_classes`` digits ("0", "1", ...). ``n_classes=20`` is the
ten digits x two ink hues, ``"3-red"``, ``"3-blue"``: the colour is on the object, so the evidence still is.

Box area fractions are drawn log-uniformly from ``area_range`` (default 2-50% of the frame), so small
objects are as well represented as large ones.

Handwriting split: digits ``0 .. DIGIT_SPLIT-1`` of the sklearn set are the ``"train"`` pool, the rest
the ``"heldout"`` pool (the default): held-out sets use handwriting that no control model saw.

The cue ``"corner_mark"`` is Decoy MNIST (Ross et al. 2017): a flat square swatch of ~2% of the image
(9x9 px at 64) in one corner, chosen at random per image, whose grey level is ``255 - 25 * class`` for up
to 10 classes (classes 10..19 of the 20-class set use the same levels with the blue channel at a third:
a yellowish swatch). ``cue_strength`` works as in ``synthetic``: the own class's swatch with probability
p, else another class's; p = 1/C is shuffled. The digit is always placed away from the chosen corner,
cue or not. ``digit_informative=False`` draws the digit (and ink) independent of the label.

Determinism: same arguments, same arrays; per-image randomness is split into a layout stream and a cue
stream, so changing ``cue``/``cue_strength`` keeps labels, digits, boxes and backgrounds.
"""

from __future__ import annotations

import functools
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

CUES = ("corner_mark",)
# skimage.data images that load from the package itself (verified: no pooch download).
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "brick",
    "grass",
    "gravel",
    "camera",
    "coins",
    "moon",
    "immunohistochemistry",
    "hubble_deep_field",
)
INKS = ("red", "blue")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
DIGIT_SPLIT = 1200
N_DIGITS = 1797
DEFAULT_AREA_RANGE = (0.02, 0.50)
MAX_AREA_FRACTION = 0.6
SWATCH_FRACTION = 0.02
# Ink per hue: (dark, light) variants; the one contrasting more with the local background is used.
_INK_VARIANTS = {
    "red": ((125.0, 0.0, 0.0), (255.0, 150.0, 150.0)),
    "blue": ((0.0, 10.0, 150.0), (150.0, 180.0, 255.0)),
}
# Aspect ratios (w / h) of a digit's ink box are clamped to this range so thin ones ("1") can be large.
_ASPECT = (0.4, 1.8)
# The stroke's soft edge: coverage ramps from 0 to 1 between these fractions of the field's peak.
_EDGE = (0.4, 0.6)
# Background crops span 1x to _MAX_ZOOM x the image size of the photo (log-uniform) before resizing, and
# are defocused (Gaussian blur, sigma in px at 64): a shallow depth of field behind the digit. Measured
# on the clean 10-class control (20k images, 3 epochs): zoom up to 4x, no blur -> 0.85 held-out accuracy;
# zoom up to 1.5x, blur 1 px -> 0.91. Photo clutter, not the handwriting, is what makes the task slow.
_MAX_ZOOM = 1.5
_DEFOCUS = 1.0
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class DigitArrays(SyntheticArrays):
    """:class:`SyntheticArrays` (``shape_ids`` = the class whose digit/ink is drawn, ``shape_informative``
    = ``digit_informative``) plus ``digit_index`` (index into ``load_digits``), ``corners`` (0..3 in
    :data:`CORNERS`: where the swatch is or would be), ``inks`` (RGB painted), ``contrast`` (luminance
    difference between the ink and the mean background under the digit, >= 60), ``split``."""

    digit_index: np.ndarray
    corners: np.ndarray
    inks: np.ndarray
    contrast: np.ndarray
    split: str
    area_range: tuple[float, float]


def class_names(n_classes: int = 10) -> tuple[str, ...]:
    if n_classes == 20:
        return tuple(f"{d}-{ink}" for ink in INKS for d in range(10))
    if not 2 <= n_classes <= 10:
        raise ValueError(f"n_classes must be 2..10 or 20, got {n_classes}")
    return tuple(str(d) for d in range(n_classes))


def swatch_side(image_size: int = 64) -> int:
    return max(3, round(math.sqrt(SWATCH_FRACTION) * image_size))


def swatch_region(corner: int, image_size: int = 64) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), x1/y1 exclusive, of the swatch in corner ``corner`` (index into CORNERS)."""
    side = swatch_side(image_size)
    x0 = 0 if corner in (0, 2) else image_size - side
    y0 = 0 if corner in (0, 1) else image_size - side
    return x0, y0, x0 + side, y0 + side


def swatch_colour(class_id: int, n_classes: int) -> tuple[int, int, int]:
    """RGB of class ``class_id``'s swatch: grey 255 - 25 * (id % 10); blue at a third for ids >= 10."""
    level = 255 - 25 * (class_id % 10)
    return (level, level, level // 3) if class_id >= 10 else (level, level, level)


def digit_pool(split: str) -> np.ndarray:
    """Indices into ``load_digits`` of the ``"train"`` or ``"heldout"`` handwriting."""
    if split == "train":
        return np.arange(DIGIT_SPLIT)
    if split == "heldout":
        return np.arange(DIGIT_SPLIT, N_DIGITS)
    raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32) / 16.0, bunch.target.astype(np.int64)


@functools.cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3]
    if image.dtype != np.uint8:
        image = (255 * (image.astype(np.float32) / max(1.0, float(image.max())))).astype(np.uint8)
    return np.ascontiguousarray(image)


def make_digits(
    n: int,
    *,
    seed: int = 0,
    n_classes: int = 10,
    image_size: int = 64,
    cue: str | None = None,
    cue_strength: float | None = 1.0,
    digit_informative: bool = True,
    area_range: tuple[float, float] | None = None,
    split: str = "heldout",
    channels: int = 3,
) -> DigitArrays:
    """Draw ``n`` annotated images with balanced labels (see the module docstring).

    ``channels=1`` converts the RGB rendering to luminance (shape (N, S, S, 1))."""
    names = class_names(n_classes)
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
    pool = digit_pool(split)
    digit_images, digit_targets = _digits()
    pool_of_digit = [pool[digit_targets[pool] == d] for d in range(10)]
    active_cue = cue if cue_strength is not None else None

    root = np.random.SeedSequence(seed)
    labels = np.random.default_rng(root).permutation(np.arange(n) % n_classes)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    masks = np.empty((n, image_size, image_size), bool)
    boxes = np.empty((n, 4), np.float64)
    object_ids = np.empty(n, np.int64)
    cue_ids = np.full(n, -1, np.int64)
    digit_index = np.empty(n, np.int64)
    corners = np.empty(n, np.int64)
    inks = np.empty((n, 3), np.uint8)
    contrast = np.empty(n, np.float64)

    for i, child in enumerate(root.spawn(n)):
        layout_rng, cue_rng = (np.random.default_rng(s) for s in child.spawn(2))
        random_class = int(layout_rng.integers(n_classes))  # drawn always: keeps streams aligned
        object_class = int(labels[i]) if digit_informative else random_class
        candidates = pool_of_digit[object_class % 10]
        index = int(candidates[layout_rng.integers(len(candidates))])
        corner = int(layout_rng.integers(4))
        background = _background(layout_rng, image_size)
        alpha = _digit_alpha(layout_rng, digit_images[index], image_size, area_range, corner)
        mask = alpha > 0
        hue = INKS[object_class // 10] if n_classes == 20 else None
        local = background[mask].mean(axis=0)
        ink = _ink(layout_rng, local, hue)
        contrast[i] = abs(float(ink.astype(np.float32) @ _LUMA) - float(local @ _LUMA))
        image = background * (1.0 - alpha[..., None]) + ink.astype(np.float32) * alpha[..., None]
        if active_cue:
            cue_id = _draw_cue_id(cue_rng, int(labels[i]), n_classes, float(cue_strength))
            x0, y0, x1, y1 = swatch_region(corner, image_size)
            image[y0:y1, x0:x1] = swatch_colour(cue_id, n_classes)
            cue_ids[i] = cue_id
        ys, xs = np.nonzero(mask)
        images[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        masks[i], object_ids[i], digit_index[i], corners[i], inks[i] = mask, object_class, index, corner, ink
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    if channels == 1:
        images = np.rint(images.astype(np.float32) @ _LUMA).clip(0, 255).astype(np.uint8)[..., None]
    return DigitArrays(
        images=images,
        labels=labels.astype(np.int64),
        boxes=boxes,
        masks=masks,
        shape_ids=object_ids,
        cue_ids=cue_ids,
        class_names=names,
        cue=active_cue,
        cue_strength=float(cue_strength) if active_cue else None,
        shape_informative=digit_informative,
        seed=seed,
        digit_index=digit_index,
        corners=corners,
        inks=inks,
        contrast=contrast,
        split=split,
        area_range=area_range,
    )


def write_digits(
    out_dir: str | Path, n: int, *, formats: Sequence[str] = ("coco", "csv"), segmentation: bool = False,
    **make_kwargs
) -> SyntheticSet:
    """Draw ``n`` images with :func:`make_digits` and write PNGs + COCO / CSV (/ VOC) under ``out_dir``
    (layout as in :func:`validator.datasets.synthetic.write_dataset`; ``segmentation``: the COCO annotations
    carry the ink's mask as RLE)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    arrays = make_digits(n, **make_kwargs)
    info = {
        "description": "camgate digits-on-photos set",
        "family": "digits",
        "split": arrays.split,
        "area_range": list(arrays.area_range),
    }
    return write_arrays(out_dir, arrays, formats=formats, info=info, supercategory="digit",
                        segmentation=segmentation)


# ---------------------------------------------------------------------------------------------- drawing


def _draw_cue_id(rng: np.random.Generator, label: int, n_classes: int, strength: float) -> int:
    if rng.random() < strength:
        return label
    other = int(rng.integers(n_classes - 1))
    return other + (other >= label)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop (1.._MAX_ZOOM x ``size``, log-uniform) of a random photo, resized, flipped
    at random and defocused."""
    name = PHOTOS[int(rng.integers(len(PHOTOS)))]
    photo = _photo(name)
    height, width = photo.shape[:2]
    biggest = min(height, width, int(_MAX_ZOOM * size))
    side = int(round(math.exp(rng.uniform(math.log(size), math.log(biggest)))))
    y0 = int(rng.integers(0, height - side + 1))
    x0 = int(rng.integers(0, width - side + 1))
    crop = photo[y0 : y0 + side, x0 : x0 + side]
    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.GaussianBlur(crop.astype(np.float32), (0, 0), _DEFOCUS * size / 64.0)


def _digit_alpha(rng, digit: np.ndarray, size: int, area_range, corner: int) -> np.ndarray:
    """The digit's ink coverage (float [S,S] in 0..1; > 0 is the object mask) at a log-uniform box area
    in ``area_range``, away from the corner swatch.

    The 8x8 digit is cropped to its ink, padded by one blank pixel, upscaled (cubic) so the ink box
    becomes the target size, smoothed and thresholded with a soft edge (rescaled a few times if the
    realised box misses the range; redrawn if that fails)."""
    ys, xs = np.nonzero(digit > 0.25)
    crop = digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    padded = np.pad(crop, 1)
    ink_h, ink_w = crop.shape
    lo, hi = area_range
    gap = swatch_side(size) + 1
    max_long, max_short = size - 2, size - gap - 1
    # How the threshold shapes this digit: realised stroke box per requested ink box, at a large scale.
    reference = _stroke(padded, ink_w, ink_h, 6.0 * ink_w, 6.0 * ink_h)
    kx, ky = reference.shape[1] / (6.0 * ink_w), reference.shape[0] / (6.0 * ink_h)
    # A thin digit ("1") is widened as far as needed for the smallest area of the range to fit.
    thinnest = max(_ASPECT[0], 1.15 * lo * size * size / max_long**2)
    natural = reference.shape[1] / reference.shape[0]
    aspect = float(np.clip(natural, thinnest, max(_ASPECT[1], 1.0 / thinnest)))
    for _ in range(100):
        target = math.exp(rng.uniform(math.log(lo), math.log(hi))) * size * size
        # Requested ink box, so that the realised stroke box is ~ target with the chosen aspect.
        h, w = math.sqrt(target / aspect) / ky, math.sqrt(target * aspect) / kx
        realised = 0
        for _refine in range(4):  # the threshold trims a pixel here and there: rescale and redraw
            if max(h * ky, w * kx) > max_long or min(h * ky, w * kx) > max_short:
                break
            stroke = _stroke(padded, ink_w, ink_h, w, h)
            sh, sw = stroke.shape
            realised = sh * sw
            if lo <= realised / (size * size) <= hi:
                break
            h, w = h * math.sqrt(target / realised), w * math.sqrt(target / realised)
        else:
            continue
        if not lo <= realised / (size * size) <= hi or sh > size - 2 or sw > size - 2:
            continue
        position = _place(rng, size, sw, sh, swatch_region(corner, size))
        if position is None:
            continue
        x0, y0 = position
        alpha = np.zeros((size, size), np.float32)
        alpha[y0 : y0 + sh, x0 : x0 + sw] = stroke
        return alpha
    raise RuntimeError("could not draw a digit in the requested area range")


def _stroke(padded: np.ndarray, ink_w: int, ink_h: int, w: float, h: float) -> np.ndarray:
    """The stroke coverage (0..1, anti-aliased over a band of the smoothed field), cropped to where it is
    > 0, of a padded digit rendered so its ink spans ~w x h."""
    out_w = max(3, int(round(w * (ink_w + 2) / ink_w)))
    out_h = max(3, int(round(h * (ink_h + 2) / ink_h)))
    field = cv2.resize(padded, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
    sigma = 0.2 * max(out_w / (ink_w + 2), out_h / (ink_h + 2))
    if sigma > 0.5:
        field = cv2.GaussianBlur(field, (0, 0), sigma)
    stroke = np.clip((field / float(field.max()) - _EDGE[0]) / (_EDGE[1] - _EDGE[0]), 0.0, 1.0)
    sy, sx = np.nonzero(stroke)
    return stroke[sy.min() : sy.max() + 1, sx.min() : sx.max() + 1]


def _place(rng, size: int, w: int, h: int, avoid: tuple[int, int, int, int]) -> tuple[int, int] | None:
    """A top-left corner for a w x h box inside the frame (1 px margin) that keeps 1 px off ``avoid``."""
    ax0, ay0, ax1, ay1 = avoid
    for _ in range(100):
        x0 = int(rng.integers(1, size - w)) if size - w > 1 else 0
        y0 = int(rng.integers(1, size - h)) if size - h > 1 else 0
        if x0 + w < ax0 or x0 > ax1 or y0 + h < ay0 or y0 > ay1:
            return x0, y0
    return None


def _ink(rng: np.random.Generator, local_mean: np.ndarray, hue: str | None) -> np.ndarray:
    """An ink contrasting with the local background (luminance difference >= 60).

    ``hue`` None: any colour (random hue), darker or lighter than the background; a named hue: its dark
    or light variant, whichever contrasts more."""
    local = float(local_mean @ _LUMA)
    if hue is not None:
        dark, light = (np.asarray(v, np.float32) for v in _INK_VARIANTS[hue])
        ink = dark if abs(local - float(dark @ _LUMA)) >= abs(local - float(light @ _LUMA)) else light
        return np.clip(ink + rng.uniform(-12.0, 12.0, 3), 0, 255).astype(np.uint8)
    for _ in range(100):
        colour = rng.uniform(0.0, 255.0, 3).astype(np.float32)
        if abs(float(colour @ _LUMA) - local) >= 70.0:
            return colour.astype(np.uint8)
    return np.full(3, 0 if local > 127 else 255, np.uint8)


__all__ = [
    "CORNERS",
    "CUES",
    "DEFAULT_AREA_RANGE",
    "DIGIT_SPLIT",
    "INKS",
    "PHOTOS",
    "DigitArrays",
    "class_names",
    "digit_pool",
    "make_digits",
    "swatch_colour",
    "swatch_region",
    "swatch_side",
    "write_digits",
]
