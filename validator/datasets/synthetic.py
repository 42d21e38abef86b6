"""Synthetic annotated image sets with a controllable shortcut cue (numpy + OpenCV, no TensorFlow).

Like ``sklearn.datasets.make_*``: :func:`make_arrays` returns arrays, :func:`write_dataset` writes them as
COCO JSON, Pascal VOC XML and a CSV manifest. Each image holds one filled shape (the class) at a random
position and scale on a textured background, with its exact bounding box and pixel mask.

A *cue* is a second signal that can travel with the label, the way shortcuts do in real data:

- ``"watermark"``: a small class-specific glyph in the bottom-right corner (the horse class and its
  copyright tag). Objects are always placed away from that corner, cue or not.
- ``"weather"``: a class-specific global brightness/colour cast: sunny (bright, warm), cloudy (dark,
  grey-blue), dusk, fog (the tank detector that learned the weather).
- ``"background"``: a class-specific background texture: stripes, blotches, speckle, grain
  (husky vs wolf decided by the snow).

Marks the gate was not designed around (``MARK_CUES``, issue 21), drawn from the cue stream so the
objects stay those of the cue-free draw:

- ``"random_mark"``: the class glyph at a random background position, at least 1 px clear of the
  object's box (hospital tokens wherever the technician put them).
- ``"edge_strip"``: a class-coloured strip along the top edge, full width, ``EDGE_STRIP_FRACTION`` of the
  side thick, painted under the object (a scanner's header bar).
- ``"beside_mark"``: the class glyph touching the object's box from outside, on a random side (the ruler
  beside a skin lesion).

``cue_strength`` p sets the correlation: image i shows the cue of its own class with probability p, else
the cue of another class chosen uniformly. p = 1 is a perfect shortcut; p = 1/C (0.5 for two classes)
makes the cue independent of the label, which is the counterfactual ("cue shuffled") data used to check
what a model relies on. ``cue=None`` or ``cue_strength=None`` draws no cue at all (``cue_ids`` = -1).

``area_range`` (lo, hi) sets the box area as a fraction of the image (default 5-20%; up to 60% for large
objects, which still keep off the watermark corner).

``shape_informative=False`` draws a shape independent of the label, so only the cue carries the label.
It exists for the fully-shortcut controls: a model trained on such data *cannot* have used the object,
so the gate's ground truth ("evidence is off the object") is certain rather than assumed.

Determinism: the same arguments give identical arrays. Per-image randomness is split into a layout stream
(shape, position, colours, background) and a cue stream, so the same seed with a different ``cue`` or
``cue_strength`` yields the same objects and labels: counterfactual pairs that differ only in the cue.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np

SHAPES = ("disc", "square", "triangle", "cross")
CUES = ("watermark", "weather", "background")
# Separate from CUES: the clean control trains on CUES shuffled, and its cached models stay valid.
MARK_CUES = ("random_mark", "edge_strip", "beside_mark")
ALL_CUES = CUES + MARK_CUES
# The strip is well inside a 10% border band (the edge lift's band) at any image size.
EDGE_STRIP_FRACTION = 0.05
WEATHERS = ("sunny", "cloudy", "dusk", "fog")
TEXTURES = ("stripes", "blotches", "speckle", "grain")
WATERMARK_CORNER = "bottom-right"
FORMATS = ("coco", "voc", "csv")
MAX_CLASSES = len(SHAPES)

# Box area as a fraction of the image: small enough that in-box heat has room to beat chance (lift).
_AREA_FRACTION = (0.05, 0.20)
DEFAULT_AREA_RANGE = _AREA_FRACTION
# The largest box that still leaves the watermark corner free with room to move.
MAX_AREA_FRACTION = 0.6

# Glyphs (6x6) of the watermark, one per class; thin strokes rather than filled shapes so that a mark
# never looks like a small copy of an object class.
_GLYPHS = tuple(
    np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)
    for rows in (
        "100001 010010 001100 001100 010010 100001",  # X
        "111111 111111 000000 000000 111111 111111",  # =
        "110011 110011 110011 110011 110011 110011",  # ||
        "001100 001100 111111 111111 001100 001100",  # +
    )
)

# Strip colours, one per class: saturated and far apart in hue, so the colour alone names the class.
_STRIP_COLOURS = ((225.0, 45.0, 40.0), (40.0, 190.0, 70.0), (45.0, 80.0, 230.0), (235.0, 205.0, 35.0))

# Weather casts: (desaturation, gain, RGB offset). Gains < 1 leave headroom so a cast never clips the
# object into the background.
_CASTS = (
    (0.0, 0.70, (80.0, 62.0, 28.0)),  # sunny: bright, warm
    (0.6, 0.55, (18.0, 26.0, 48.0)),  # cloudy: dark, grey-blue
    (0.2, 0.60, (72.0, 24.0, 58.0)),  # dusk: orange-magenta
    (0.5, 0.45, (118.0, 124.0, 130.0)),  # fog: light grey, low contrast
)


@dataclass(frozen=True)
class SyntheticArrays:
    """Images uint8 [N,S,S,3] RGB; labels int [N]; boxes float [N,4] (x0, y0, x1, y1), continuous pixel
    coordinates with x1/y1 exclusive; masks bool [N,S,S] (the drawn object); shape_ids int [N] (the shape
    drawn; equals labels when the shape is informative); cue_ids int [N] (-1 = no cue)."""

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    shape_ids: np.ndarray
    cue_ids: np.ndarray
    class_names: tuple[str, ...]
    cue: str | None
    cue_strength: float | None
    shape_informative: bool
    seed: int

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> int:
        return self.images.shape[1]


@dataclass(frozen=True)
class SyntheticSet:
    """A dataset written by :func:`write_dataset`. Paths in the files are relative to ``root``."""

    root: Path
    image_paths: tuple[Path, ...]
    class_names: tuple[str, ...]
    arrays: SyntheticArrays
    coco_path: Path | None = None
    voc_dir: Path | None = None
    manifest_path: Path | None = None
    bit_depth: int = 8


def shuffled_cue_strength(n_classes: int) -> float:
    """The cue strength at which the cue is independent of the label (1/C)."""
    return 1.0 / n_classes


def watermark_region(image_size: int = 64) -> tuple[float, float, float, float]:
    """The corner (x0, y0, x1, y1) that may hold the watermark: the last 12.5% of each side."""
    corner = image_size // 8
    return (float(image_size - corner), float(image_size - corner), float(image_size), float(image_size))


def make_arrays(
    n: int,
    *,
    seed: int = 0,
    image_size: int = 64,
    classes: Sequence[str] = ("disc", "square"),
    cue: str | None = None,
    cue_strength: float | None = 1.0,
    shape_informative: bool = True,
    area_range: tuple[float, float] | None = None,
) -> SyntheticArrays:
    """Draw ``n`` annotated images with balanced labels; see the module docstring for cues.

    ``area_range``: box area as a fraction of the image, drawn uniformly (default ``DEFAULT_AREA_RANGE``)."""
    class_names = _check_args(n, image_size, classes, cue, cue_strength)
    area_range = check_area_range(area_range, DEFAULT_AREA_RANGE, MAX_AREA_FRACTION)
    n_classes = len(class_names)
    shape_of_class = [SHAPES.index(name) for name in class_names]
    active_cue = cue if cue_strength is not None else None

    root = np.random.SeedSequence(seed)
    labels = np.random.default_rng(root).permutation(np.arange(n) % n_classes)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    masks = np.empty((n, image_size, image_size), bool)
    boxes = np.empty((n, 4), np.float64)
    shape_ids = np.empty(n, np.int64)
    cue_ids = np.full(n, -1, np.int64)

    for i, child in enumerate(root.spawn(n)):
        layout_rng, cue_rng = (np.random.default_rng(s) for s in child.spawn(2))
        random_class = int(layout_rng.integers(n_classes))  # drawn always: keeps streams aligned
        shape_class = int(labels[i]) if shape_informative else random_class
        cue_id = _draw_cue_id(cue_rng, int(labels[i]), n_classes, cue_strength) if active_cue else -1
        image, mask = _render(
            layout_rng, cue_rng, image_size, shape_of_class[shape_class], active_cue, cue_id, area_range
        )
        ys, xs = np.nonzero(mask)
        images[i], masks[i], shape_ids[i], cue_ids[i] = image, mask, shape_class, cue_id
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)

    return SyntheticArrays(
        images=images,
        labels=labels.astype(np.int64),
        boxes=boxes,
        masks=masks,
        shape_ids=shape_ids,
        cue_ids=cue_ids,
        class_names=class_names,
        cue=active_cue,
        cue_strength=float(cue_strength) if active_cue else None,
        shape_informative=shape_informative,
        seed=seed,
    )


def write_dataset(
    out_dir: str | Path, n: int, *, formats: Sequence[str] = ("coco",), segmentation: bool = False,
    **make_arrays_kwargs
) -> SyntheticSet:
    """Draw ``n`` images with :func:`make_arrays` and write them under ``out_dir`` (:func:`write_arrays`)."""
    return write_arrays(out_dir, make_arrays(n, **make_arrays_kwargs), formats=formats, segmentation=segmentation)


def write_arrays(
    out_dir: str | Path,
    arrays: SyntheticArrays,
    *,
    formats: Sequence[str] = ("coco",),
    bit_depth: int = 8,
    info: dict | None = None,
    supercategory: str = "shape",
    segmentation: bool = False,
) -> SyntheticSet:
    """Write annotated arrays (from this module or another family sharing :class:`SyntheticArrays`).

    - ``images/000000.png`` ... (lossless PNG: RGB for 3 channels, grayscale for 1; ``bit_depth=16``
      writes 16-bit PNGs with values scaled by 257 so 255 maps to 65535).
    - ``"coco"``: ``annotations.json``; ``file_name`` is relative to ``out_dir`` (``images/000000.png``),
      ``bbox`` = [x, y, w, h], category ids 1..C in class order, image ids 1..N.
    - ``"voc"``: ``voc/Annotations/*.xml``, ``voc/JPEGImages/*.png`` (PNG copies despite the folder's
      name, so pixels stay exact) and ``voc/ImageSets/Main/test.txt``. Boxes follow VOC's 1-based
      inclusive convention: xmin = x0 + 1, xmax = x1.
    - ``"csv"``: ``manifest.csv`` with columns image,label,xmin,ymin,xmax,ymax (label = class name,
      coordinates as in the arrays: 0-based, xmax/ymax exclusive).

    ``info`` adds entries to the COCO ``info`` record; ``supercategory`` names the COCO categories' group.
    ``segmentation``: each COCO annotation also carries its drawn mask as a compressed RLE (pycocotools), so
    an audit scores the object's pixels rather than its box.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    channels = arrays.images.shape[-1] if arrays.images.ndim == 4 else 1
    if channels not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {channels}")
    root = Path(out_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = [f"{i:06d}.png" for i in range(len(arrays))]
    image_paths = tuple(root / "images" / name for name in names)
    for path, image in zip(image_paths, arrays.images, strict=True):
        pixels = image.reshape(image.shape[0], image.shape[1]) if channels == 1 else image
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR) if channels == 3 else pixels
        if bit_depth == 16:
            pixels = pixels.astype(np.uint16) * np.uint16(257)
        if not cv2.imwrite(str(path), pixels):
            raise OSError(f"could not write {path}")

    written: dict[str, Path] = {}
    if "coco" in formats:
        written["coco_path"] = _write_coco(root, names, arrays, info, supercategory, segmentation)
    if "voc" in formats:
        written["voc_dir"] = _write_voc(root, names, image_paths, arrays)
    if "csv" in formats:
        written["manifest_path"] = _write_manifest(root, names, arrays)
    return SyntheticSet(
        root=root,
        image_paths=image_paths,
        class_names=arrays.class_names,
        arrays=arrays,
        bit_depth=bit_depth,
        **written,
    )


def check_area_range(
    area_range: Sequence[float] | None, default: tuple[float, float], maximum: float
) -> tuple[float, float]:
    """Validate a (lo, hi) box-area-fraction range; ``None`` gives ``default``."""
    if area_range is None:
        return default
    lo, hi = (float(v) for v in area_range)
    if not 0.0 < lo <= hi <= maximum:
        raise ValueError(f"area_range must satisfy 0 < lo <= hi <= {maximum}, got {tuple(area_range)}")
    return lo, hi


# ---------------------------------------------------------------------------------------------- drawing


def _check_args(n, image_size, classes, cue, cue_strength) -> tuple[str, ...]:
    class_names = tuple(classes)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if not 2 <= len(class_names) <= MAX_CLASSES or len(set(class_names)) != len(class_names):
        raise ValueError(f"classes must be 2..{MAX_CLASSES} distinct names from {SHAPES}, got {class_names}")
    if unknown := [c for c in class_names if c not in SHAPES]:
        raise ValueError(f"unknown classes {unknown}; choose from {SHAPES}")
    if cue is not None and cue not in ALL_CUES:
        raise ValueError(f"unknown cue {cue!r}; choose from {ALL_CUES} or None")
    if cue_strength is not None and not 0.0 <= cue_strength <= 1.0:
        raise ValueError(f"cue_strength must be in [0, 1] or None, got {cue_strength}")
    return class_names


def _draw_cue_id(rng: np.random.Generator, label: int, n_classes: int, strength: float) -> int:
    """The label's own cue with probability ``strength``, else another class's cue, uniformly."""
    if rng.random() < strength:
        return label
    other = int(rng.integers(n_classes - 1))
    return other + (other >= label)


def _render(
    layout_rng, cue_rng, size, shape_id, cue, cue_id, area_range=_AREA_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    texture = cue_id if cue == "background" else None
    background = _background(layout_rng, size, texture, cue_rng)
    mask = _shape_mask(layout_rng, size, shape_id, area_range)
    image = background.copy()
    if cue == "edge_strip":
        # Under the object: the mask stays exact and the object keeps its whole outline.
        _paint_edge_strip(image, cue_id)
    image[mask] = _fill_colour(layout_rng, background[mask].mean(axis=0))
    if cue == "weather":
        image = _apply_cast(image, cue_id)
    if cue == "watermark":
        # After the cast: a tag is stamped on the finished photo, not lit by the scene.
        _stamp_watermark(image, cue_id)
    if cue in ("random_mark", "beside_mark"):
        place = _random_mark_origin if cue == "random_mark" else _beside_mark_origin
        _stamp_glyph(image, cue_id, place(cue_rng, size, _mask_box(mask), mark_side(size)))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _fractal(rng: np.random.Generator, size: int, resolutions: Sequence[int]) -> np.ndarray:
    """Smoothed multi-octave noise, zero mean, unit std: a natural-looking field."""
    total = np.zeros((size, size), np.float32)
    amplitude = 1.0
    for res in resolutions:
        coarse = rng.standard_normal((res, res)).astype(np.float32)
        total += amplitude * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        amplitude *= 0.5
    return (total - total.mean()) / (total.std() + 1e-6)


def _background(layout_rng, size, texture_id, cue_rng) -> np.ndarray:
    """A colour field: base colour + low-frequency variation + fine detail (natural or a cue texture)."""
    luminance = layout_rng.uniform(75.0, 180.0)
    base = luminance + layout_rng.uniform(-35.0, 35.0, 3)
    coarse = _fractal(layout_rng, size, (2, 4, 8))
    chroma = np.stack([_fractal(layout_rng, size, (2, 4)) for _ in range(3)], axis=-1)
    # Drawn always, even when a cue texture replaces it: keeps the layout stream aligned.
    fine = _fractal(layout_rng, size, (16,)) + cv2.GaussianBlur(
        layout_rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.0
    )
    field = base + 16.0 * coarse[..., None] + 8.0 * chroma
    detail = 9.0 * fine if texture_id is None else _texture(cue_rng, size, texture_id)
    return (field + detail[..., None]).astype(np.float32)


def _texture(rng: np.random.Generator, size: int, texture_id: int) -> np.ndarray:
    """Class-specific background texture (luminance offsets) for the ``background`` cue."""
    name = TEXTURES[texture_id]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if name == "stripes":
        angle = math.radians(rng.uniform(-20.0, 20.0))
        period = rng.uniform(5.0, 8.0)
        return 22.0 * np.sin(
            2 * math.pi * (yy * math.cos(angle) + xx * math.sin(angle)) / period + rng.uniform(0, 6.3)
        )
    if name == "blotches":
        blobs = (_fractal(rng, size, (6, 12)) > 0).astype(np.float32)
        return 32.0 * (cv2.GaussianBlur(blobs, (0, 0), 1.0) - 0.5)
    if name == "speckle":
        dots = (rng.random((size, size)) < 0.06).astype(np.float32)
        return 55.0 * cv2.GaussianBlur(dots, (0, 0), 0.6) - 4.0
    return 18.0 * rng.standard_normal((size, size)).astype(np.float32)  # grain


def _shape_mask(
    rng: np.random.Generator, size: int, shape_id: int, area_range: tuple[float, float] = _AREA_FRACTION
) -> np.ndarray:
    """A filled, upright shape of random scale, placed so its box misses the watermark corner."""
    side = int(round(math.sqrt(rng.uniform(*area_range)) * size))
    corner = size - size // 8
    for _ in range(1000):
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        if x0 + side <= corner or y0 + side <= corner:
            break
    else:
        raise RuntimeError("could not place an object away from the watermark corner")
    mask = np.zeros((size, size), np.uint8)
    x1, y1 = x0 + side - 1, y0 + side - 1  # inclusive, as OpenCV draws
    name = SHAPES[shape_id]
    if name == "disc":
        # Pixel centres within side/2 of the centre: round, without the nubs of cv2.circle.
        yy, xx = np.mgrid[0:size, 0:size]
        centre = (side - 1) / 2.0
        mask[(xx - x0 - centre) ** 2 + (yy - y0 - centre) ** 2 <= (side / 2.0) ** 2] = 1
    elif name == "square":
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, thickness=-1)
    elif name == "triangle":
        points = np.array([[x0, y1], [x1, y1], [x0 + (side - 1) // 2, y0]], np.int32)
        cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8)
    else:  # cross
        bar = max(2, side // 3)
        offset = (side - bar) // 2
        cv2.rectangle(mask, (x0, y0 + offset), (x1, y0 + offset + bar - 1), 1, thickness=-1)
        cv2.rectangle(mask, (x0 + offset, y0), (x0 + offset + bar - 1, y1), 1, thickness=-1)
    return mask.astype(bool)


def _fill_colour(rng: np.random.Generator, local_mean: np.ndarray) -> np.ndarray:
    """A flat colour of moderate contrast to the background under the object; the colour says nothing
    about the class (lighter or darker at random unless that would clip)."""
    luminance = float(local_mean.mean())
    if luminance > 160:
        sign = -1.0
    elif luminance < 95:
        sign = 1.0
    else:
        sign = rng.choice((-1.0, 1.0))
    colour = local_mean + sign * rng.uniform(40.0, 70.0) + rng.uniform(-15.0, 15.0, 3)
    return np.clip(colour, 0.0, 255.0).astype(np.float32)


def _apply_cast(image: np.ndarray, cast_id: int) -> np.ndarray:
    desaturation, gain, offset = _CASTS[cast_id]
    grey = image.mean(axis=-1, keepdims=True)
    image = (1.0 - desaturation) * image + desaturation * grey
    return gain * image + np.asarray(offset, np.float32)


def mark_side(image_size: int) -> int:
    """Side in pixels of a glyph mark (watermark, random and beside marks): ~9% of the image side."""
    return max(4, round(0.09 * image_size))


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _random_mark_origin(rng, size, box, side) -> tuple[int, int]:
    """A random top-left corner whose mark keeps >= 1 px clear of the box (touching is ``beside_mark``)."""
    x0, y0, x1, y1 = box
    for _ in range(1000):
        mx, my = (int(v) for v in rng.integers(0, size - side + 1, 2))
        if mx + side < x0 or mx > x1 or my + side < y0 or my > y1:
            return mx, my
    raise RuntimeError("could not place a mark clear of the object")


def _beside_mark_origin(rng, size, box, side) -> tuple[int, int]:
    """A top-left corner whose mark shares an edge with the box, outside it, on a random side with room;
    slid along that side at random but kept overlapping the box's extent (it touches, not just its corner)."""
    x0, y0, x1, y1 = box
    sides = [s for s, room in (("left", x0), ("right", size - x1), ("top", y0), ("bottom", size - y1))
             if room >= side]
    if not sides:
        raise RuntimeError("no side of the object has room for a mark beside it")
    where = sides[int(rng.integers(len(sides)))]
    if where in ("left", "right"):
        my = int(rng.integers(max(0, y0 - side + 1), min(size - side, y1 - 1) + 1))
        return (x0 - side if where == "left" else x1), my
    mx = int(rng.integers(max(0, x0 - side + 1), min(size - side, x1 - 1) + 1))
    return mx, (y0 - side if where == "top" else y1)


def _glyph(glyph_id: int, side: int) -> np.ndarray:
    return cv2.resize(
        _GLYPHS[glyph_id].astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST
    ).astype(bool)


def _stamp_glyph(image: np.ndarray, glyph_id: int, origin: tuple[int, int]) -> None:
    """Blend a near-white glyph at ``origin`` (x, y), as the watermark is blended."""
    side = mark_side(image.shape[0])
    x, y = origin
    patch = image[y : y + side, x : x + side]
    glyph = _glyph(glyph_id, side)
    patch[glyph] = 0.1 * patch[glyph] + 0.9 * 240.0


def edge_strip_rows(image_size: int) -> int:
    """Thickness in rows of the ``edge_strip`` cue (>= 2)."""
    return max(2, round(EDGE_STRIP_FRACTION * image_size))


def _paint_edge_strip(image: np.ndarray, colour_id: int) -> None:
    """A class-coloured band along the top edge; 15% of the scene shows through, like a printed overlay."""
    rows = image[: edge_strip_rows(image.shape[0])]
    rows[:] = 0.15 * rows + 0.85 * np.asarray(_STRIP_COLOURS[colour_id], np.float32)


def _stamp_watermark(image: np.ndarray, glyph_id: int) -> None:
    """Blend a near-white glyph (~9% of the side) into the watermark corner, 1 px from the edges where
    the corner has room."""
    size = image.shape[0]
    side = max(4, round(0.09 * size))
    inset = max(0, min(1, size // 8 - side))
    glyph = cv2.resize(
        _GLYPHS[glyph_id].astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    end = size - inset
    patch = image[end - side : end, end - side : end]
    patch[glyph] = 0.1 * patch[glyph] + 0.9 * 240.0


# ---------------------------------------------------------------------------------------------- writers


def _write_coco(
    root: Path,
    names: list[str],
    arrays: SyntheticArrays,
    info: dict | None = None,
    supercategory: str = "shape",
    segmentation: bool = False,
) -> Path:
    size = arrays.image_size
    images, annotations = [], []
    for i, (name, label, box) in enumerate(zip(names, arrays.labels, arrays.boxes, strict=True)):
        x0, y0, x1, y1 = (float(v) for v in box)
        images.append({"id": i + 1, "file_name": f"images/{name}", "width": size, "height": size})
        annotations.append(
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": int(label) + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "iscrowd": 0,
                **({"segmentation": _rle(arrays.masks[i])} if segmentation else {}),
            }
        )
    document = {
        "info": {
            "description": "camgate synthetic set",
            "cue": arrays.cue,
            "cue_strength": arrays.cue_strength,
            "shape_informative": arrays.shape_informative,
            "seed": arrays.seed,
            **(info or {}),
        },
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": k + 1, "name": c, "supercategory": supercategory} for k, c in enumerate(arrays.class_names)
        ],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(document, indent=1))
    return path


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _write_voc(root: Path, names: list[str], image_paths: Sequence[Path], arrays: SyntheticArrays) -> Path:
    voc = root / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    size = str(arrays.image_size)
    depth = str(arrays.images.shape[-1] if arrays.images.ndim == 4 else 1)
    for name, source, label, box in zip(names, image_paths, arrays.labels, arrays.boxes, strict=True):
        shutil.copyfile(source, voc / "JPEGImages" / name)
        node = ET.Element("annotation")
        ET.SubElement(node, "folder").text = "JPEGImages"
        ET.SubElement(node, "filename").text = name
        dims = ET.SubElement(node, "size")
        for tag, value in (("width", size), ("height", size), ("depth", depth)):
            ET.SubElement(dims, tag).text = value
        obj = ET.SubElement(node, "object")
        ET.SubElement(obj, "name").text = arrays.class_names[int(label)]
        for tag in ("truncated", "difficult"):
            ET.SubElement(obj, tag).text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        x0, y0, x1, y1 = (int(v) for v in box)
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(bndbox, tag).text = str(value)
        ET.ElementTree(node).write(voc / "Annotations" / f"{Path(name).stem}.xml")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{Path(n).stem}\n" for n in names))
    return voc


def _write_manifest(root: Path, names: list[str], arrays: SyntheticArrays) -> Path:
    path = root / "manifest.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "xmin", "ymin", "xmax", "ymax"])
        for name, label, box in zip(names, arrays.labels, arrays.boxes, strict=True):
            writer.writerow([f"images/{name}", arrays.class_names[int(label)], *(f"{v:g}" for v in box)])
    return path
