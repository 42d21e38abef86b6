"""Localisation scores in TensorFlow: the columns of ``score_maps``, batched, on the device.

On a GPU the NumPy scorer (a few hundred maps/s on one core) would be the bottleneck of an explainer that
makes thousands of maps per second. ``DeviceScorer.score`` computes the same dict of columns from maps
[N, H, W] and padded boxes [N, K, 4] (x0, y0, x1, y1 pixels) with a count per sample [N], with TensorFlow
ops only: it runs eagerly or inside a ``tf.function`` (``DeviceScorer.function`` is one with a fixed input
signature, traced once for every batch size), and only the per-sample columns need to reach the host.

Parity with ``score_maps`` (tests/test_metrics_device.py checks it on random and adversarial maps):

* Exactly equal: every mask and count (box masks by the pixel-centre rule of ``validator.metrics.geometry``,
  ``area``, ``dead``, the NaN pattern of every column), ``rank_accuracy`` (integer counts, then the same
  float64 divisions in the same order), ``pointing_hit`` and ``center_hit`` (float64 geometry),
  ``cam_box_iou`` and ``cam_box_hit`` (the threshold is compared in float64, the component is cv2's,
  the IoU formula is ``best_iou``'s), the ring pixels and octants behind ``ring_side_lift`` (max-pool
  dilation of the 0/1 mask, the centre from exact integer sums, octants by float64 comparisons).
* To rounding: the heat sums (``energy`` and everything derived from it, region and corner heats and
  lifts, ``ring_heat``, ``ring_lift``, ``ring_side_lift``) differ from NumPy's only by summation order:
  ~1e-15 relative with ``dtype="float64"`` (the default), ~1e-6 with ``dtype="float32"`` (sums accumulated
  in float32; ratios still in float64). Differences of near-equal numbers (``excess``, ``chance_corrected``,
  ``relative_lift`` near a uniform map) inherit the absolute, not the relative, error of ``energy``.
* Equal unless at the threshold: ``ring_one_sided`` (``ring_side_lift`` > 4) is equal wherever the two
  lifts fall on the same side of 4; the octant densities are added in the same fixed order on both sides,
  so where the octants' heat sums are exact (integer or dyadic maps) the lifts and the flags are equal bit
  for bit, and only a lift within summation rounding of 4 can flip.

Known divergences, all at the edge of float arithmetic: a distance within one ulp of the pointing
tolerance with both offsets non-zero (``sqrt(dx*dx + dy*dy)`` here, ``np.hypot`` there); a map whose only
positive values are float32 subnormals (TensorFlow flushes them to zero on CPU: dead here, alive there);
with ``dtype="float32"``, a map whose heat sum overflows float32.

The largest component. cv2 (Spaghetti/BBDT, its default for 8-connectivity, in 4.9 as in 5.x) scans the
image in 2x2 blocks, so its labels follow the raster order of each component's first *block*, not of its
first pixel (a component starting at (row 1, col 0) is labelled before one starting at (row 0, col 5)).
Ties in area go to cv2's first label. So the labelling here works on cv2's blocks too (all foreground
pixels of a 2x2 block are 8-adjacent; two blocks are joined when a pixel of one touches a pixel of the
other): every block converges to the raster index of its component's first block, by min-propagation over
the 8 neighbouring blocks, hooking (each block's pooled value is also written to the root its label points
at, a segment minimum) and pointer jumping, inside a ``tf.while_loop`` that runs until nothing changes
(snakes and spirals included: there is no fixed count; a 224 px spiral takes 8 rounds). Areas are segment
sums, the bounding box the extreme occupied rows and columns of the winning component's blocks.

The integer work (labels, the radix select of ``rank_accuracy``'s cut) is laid out for the device
(``kernels``): int32 on a CPU; float64 labels and int64 keys on a GPU, where TensorFlow runs int32
element-wise ops on the host. The layouts give identical results; ``"auto"`` picks by whether
TensorFlow sees a GPU when the scorer is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from validator._tf import tf
from validator.errors import UsageError
from validator.metrics.geometry import as_boxes, rect_masks
from validator.metrics.localisation import (
    BORDER_FRACTION,
    CORNER_FRACTION,
    LIFT_PREFIXES,
    MAX_RELATIVE_LIFT_AREA,
    MIN_FREE_CORNER,
    RING_MAX_WIDTH,
    RING_ONE_SIDED,
    RING_SIDE_MIN_PX,
    RING_WIDTH,
    _check_fraction,
    _check_regions,
    _region_rects,
    default_pointing_tolerance,
    ring_side_radius,
)
from validator.metrics.registry import CORNERS, EDGES, REGION_PREFIX

_F64 = tf.float64


def pad_for_device(boxes: Sequence, max_boxes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample boxes (each [k, 4], k may be 0) -> (padded float64 [N, K, 4], counts int32 [N]).

    Boxes are validated as ``score_maps`` validates them (finite, x0 <= x1, y0 <= y1). K is ``max_boxes``
    when given (a fixed K keeps one shape per batch size), else the largest k, at least 1. Padding rows are
    zeros; the counts say which rows are real.
    """
    checked = [as_boxes(b, where=f"boxes[{i}]") for i, b in enumerate(boxes)]
    k_max = max((len(b) for b in checked), default=0)
    if max_boxes is not None:
        if k_max > max_boxes:
            raise ValueError(f"a sample has {k_max} boxes, more than max_boxes={max_boxes}")
        k_max = max_boxes
    padded = np.zeros((len(checked), max(k_max, 1), 4), dtype=np.float64)
    counts = np.zeros(len(checked), dtype=np.int32)
    for i, b in enumerate(checked):
        padded[i, : len(b)] = b
        counts[i] = len(b)
    return padded, counts


def _exact_div(x, constant: float):
    """x / constant, correctly rounded as NumPy's: inside a tf.function Grappler rewrites a division by a
    constant into a multiplication by its reciprocal (an ulp off); divide_no_nan is left alone."""
    return tf.math.divide_no_nan(x, tf.constant(constant, x.dtype))


@dataclass(frozen=True)
class _Layout:
    """Dtypes of the integer work (labels, radix keys), chosen for the device: same results either way.

    On a GPU TensorFlow runs int32 element-wise ops on the host (its int32 GPU kernels keep their tensors in
    host memory) and has no int64 segment minimum, so labels there are float64 (exact integers up to
    2^53), keys int64, and histograms segment sums (DenseBincount refuses op determinism on a GPU). On a
    CPU int32 and bincount are about twice as fast."""

    name: str
    label: tf.DType
    index: tf.DType
    key: tf.DType
    bincount: bool


_LAYOUTS = {
    "cpu": _Layout("cpu", tf.int32, tf.int32, tf.int32, True),
    "gpu": _Layout("gpu", tf.float64, tf.int64, tf.int64, False),
}


def _layout(kernels: str) -> _Layout:
    if kernels == "auto":
        kernels = "gpu" if tf.config.list_logical_devices("GPU") else "cpu"
    if kernels not in _LAYOUTS:
        raise ValueError(f"kernels must be 'auto', 'cpu' or 'gpu', got {kernels!r}")
    return _LAYOUTS[kernels]


def _pad(x, paddings, fill):
    """tf.pad; bool masks go through float32 (GPU Pad kernels are registered for number types)."""
    if x.dtype != tf.bool:
        return tf.pad(x, paddings, constant_values=fill)
    return tf.pad(tf.cast(x, tf.float32), paddings, constant_values=float(fill)) > 0.5


def _shifts(x, fill):
    """{(dr, dc): y} with y[:, i, j] = x[:, i + dr, j + dc] (fill outside), for the 8 neighbours."""
    padded = _pad(x, [[0, 0], [1, 1], [1, 1]], fill)
    rows, cols = x.shape[1], x.shape[2]
    return {(dr, dc): padded[:, 1 + dr : 1 + dr + rows, 1 + dc : 1 + dc + cols]
            for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc}


def _blocks(fg):
    """cv2's view of masks [N, H, W]: 2x2 blocks (H, W padded to even), each holding one component at most
    (all foreground pixels of a 2x2 block are 8-adjacent). Returns the four pixels of every block, each
    [N, H2/2, W2/2]: top-left, top-right, bottom-left, bottom-right."""
    height, width = fg.shape[1], fg.shape[2]
    if height % 2 or width % 2:
        fg = _pad(fg, [[0, 0], [0, height % 2], [0, width % 2]], False)
    q = tf.reshape(fg, [tf.shape(fg)[0], (height + 1) // 2, 2, (width + 1) // 2, 2])
    return q[:, :, 0, :, 0], q[:, :, 0, :, 1], q[:, :, 1, :, 0], q[:, :, 1, :, 1]


def _label_blocks(tl, tr, bl, br, layout):
    """Connected blocks: each occupied block gets the global raster index (n * blocks + i) of the first
    block of its component, an empty block the sentinel N * blocks. Returns (labels, iterations), the
    labels in ``layout.label``."""
    n, rows, cols = tf.shape(tl)[0], tl.shape[1], tl.shape[2]
    size = rows * cols
    if layout.label == tf.int32:
        tf.debugging.assert_less(tf.cast(n, tf.int64) * size, tf.constant(np.iinfo(np.int32).max, tf.int64),
                                 message="batch too large for int32 labels: split it")
    # two blocks are joined when a foreground pixel of one is 8-adjacent to one of the other
    left, right, top, bottom = tl | bl, tr | br, tl | tr, bl | br
    near = {name: _shifts(side, False) for name, side in
            {"left": left, "right": right, "top": top, "bottom": bottom, "tl": tl, "tr": tr, "bl": bl, "br": br}.items()}
    joined = {
        (0, 1): right & near["left"][0, 1], (0, -1): left & near["right"][0, -1],
        (1, 0): bottom & near["top"][1, 0], (-1, 0): top & near["bottom"][-1, 0],
        (1, 1): br & near["tl"][1, 1], (-1, -1): tl & near["br"][-1, -1],
        (1, -1): bl & near["tr"][1, -1], (-1, 1): tr & near["bl"][-1, 1],
    }
    big = tf.cast(tf.cast(n, tf.int64) * size, layout.label)  # the sentinel slot after every real block
    labels = tf.where(left | right, tf.reshape(tf.range(big, dtype=layout.label), [n, rows, cols]), big)

    def body(labels, changed, iterations):
        # invariant: a label is the index of a block of the same component, never above the block's own
        pooled = labels
        for offset, neighbour in _shifts(labels, big).items():
            pooled = tf.minimum(pooled, tf.where(joined[offset], neighbour, big))
        flat = tf.reshape(pooled, [-1])
        roots = tf.math.unsorted_segment_min(flat, tf.cast(tf.reshape(labels, [-1]), layout.index),
                                             tf.cast(big, layout.index) + 1)
        # hook (a root takes its members' neighbours' labels), then pointer jumping, twice
        merged = tf.minimum(tf.concat([flat, [big]], axis=0), roots)
        merged = tf.gather(merged, tf.cast(merged, layout.index))
        merged = tf.gather(merged, tf.cast(merged, layout.index))
        new = tf.reshape(merged[:-1], [n, rows, cols])
        return new, tf.reduce_any(new != labels), iterations + 1

    labels, _, iterations = tf.while_loop(
        lambda labels, changed, iterations: changed, body, [labels, tf.constant(True), tf.constant(0)])
    return labels, iterations


def label_components(fg, kernels: str = "auto"):
    """8-connected components of a batch of masks [N, H, W] (bool), numbered as cv2 numbers them.

    Returns (labels [N, H, W] int64, iterations): each foreground pixel gets the raster index, on the grid
    of 2x2 blocks, of the first block of its component (-1 for background). cv2's Spaghetti/BBDT scan
    labels components in exactly this order (block raster order, not pixel raster order).
    """
    fg = tf.convert_to_tensor(fg, dtype=tf.bool)
    height, width = fg.shape[1], fg.shape[2]
    if height is None or width is None:
        raise ValueError("label_components needs a static height and width")
    labels, iterations = _label_blocks(*_blocks(fg), _layout(kernels))
    blocks = ((height + 1) // 2) * ((width + 1) // 2)
    labels = tf.cast(labels, tf.int64)
    local = labels - tf.range(tf.shape(fg, out_type=tf.int64)[0])[:, None, None] * blocks
    pixels = tf.repeat(tf.repeat(local, 2, axis=1), 2, axis=2)[:, :height, :width]
    return tf.where(fg, pixels, tf.constant(-1, tf.int64)), iterations


def _largest_component_boxes(fg, layout):
    """[N, 4] float64 box (x0, y0, x1, y1) of the largest component of each mask, ties to cv2's first label.

    Rows without foreground get a meaningless box (the caller masks them)."""
    tl, tr, bl, br = _blocks(fg)
    labels, _ = _label_blocks(tl, tr, bl, br, layout)
    segment = tf.cast(tf.reshape(labels, [-1]), layout.index)
    labels = tf.cast(labels, _F64)  # exact; float64 from here on: per block, cheap next to the propagation
    n, rows, cols = tf.shape(fg)[0], tl.shape[1], tl.shape[2]
    blocks = rows * cols
    count = tf.add_n([tf.cast(p, _F64) for p in (tl, tr, bl, br)])
    area = tf.math.unsorted_segment_sum(tf.reshape(count, [-1]), segment, tf.cast(n * blocks, layout.index) + 1)
    area = tf.reshape(area[:-1], [n, blocks])  # pixels per component, at its first block
    largest = tf.reduce_max(area, axis=1, keepdims=True)
    index = tf.range(blocks, dtype=_F64)[None, :]
    first = tf.reduce_min(tf.where(area == largest, index, float(blocks)), axis=1)
    offset = tf.range(tf.cast(n, _F64), dtype=_F64) * blocks
    chosen = labels == (first + offset)[:, None, None]
    # the component's extreme pixels, from the occupied columns and rows of its blocks
    c = 2 * tf.range(cols, dtype=_F64)[None, None, :]
    r = 2 * tf.range(rows, dtype=_F64)[None, :, None]
    left, right, top, bottom = tl | bl, tr | br, tl | tr, bl | br

    def extreme(reduce, values, fill):
        return reduce(tf.where(chosen, values, fill), axis=[1, 2])

    x0 = extreme(tf.reduce_min, tf.where(left, c, c + 1), np.inf)
    x1 = extreme(tf.reduce_max, tf.where(right, c + 1, c), -np.inf) + 1
    y0 = extreme(tf.reduce_min, tf.where(top, r, r + 1), np.inf)
    y1 = extreme(tf.reduce_max, tf.where(bottom, r + 1, r), -np.inf) + 1
    return tf.stack([x0, y0, x1, y1], axis=1)


def _best_iou(box, gt, valid, height, width):
    """``geometry.best_iou`` batched: box [N, 4], gt [N, K, 4], valid [N, K] -> [N] (-inf without a box)."""
    gx0 = tf.clip_by_value(gt[..., 0], 0.0, float(width))
    gx1 = tf.clip_by_value(gt[..., 2], 0.0, float(width))
    gy0 = tf.clip_by_value(gt[..., 1], 0.0, float(height))
    gy1 = tf.clip_by_value(gt[..., 3], 0.0, float(height))
    b = [box[:, i, None] for i in range(4)]
    iw = tf.maximum(tf.minimum(b[2], gx1) - tf.maximum(b[0], gx0), 0.0)
    ih = tf.maximum(tf.minimum(b[3], gy1) - tf.maximum(b[1], gy0), 0.0)
    inter = iw * ih
    union = (b[2] - b[0]) * (b[3] - b[1]) + (gx1 - gx0) * (gy1 - gy0) - inter
    iou = tf.where(union > 0, inter / tf.where(union > 0, union, 1.0), 0.0)
    return tf.reduce_max(tf.where(valid, iou, -np.inf), axis=1)


def _distance(x, y, boxes, valid):
    """``geometry.distance_to_boxes``: points x, y [M] to the union of boxes [M, K, 4] (valid [M, K])."""
    dx = tf.maximum(tf.maximum(boxes[..., 0] - x[:, None], x[:, None] - boxes[..., 2]), 0.0)
    dy = tf.maximum(tf.maximum(boxes[..., 1] - y[:, None], y[:, None] - boxes[..., 3]), 0.0)
    # exact where an offset is 0 (as hypot is); else within an ulp of np.hypot
    d = tf.where(dy == 0, dx, tf.where(dx == 0, dy, tf.sqrt(dx * dx + dy * dy)))
    return tf.reduce_min(tf.where(valid, d, np.inf), axis=-1)


class DeviceScorer:
    """``score_maps`` for a fixed map size, in TensorFlow (see the module docstring for parity).

    ``score(maps, boxes, counts)`` takes maps [N, H, W] (float32 or float64, >= 0; non-finite maps are
    dead), boxes [N, K, 4] (x0, y0, x1, y1 pixels; rows at or past ``counts[i]`` are ignored) and counts
    [N], and returns ``{column: float64 tensor [N]}`` with the keys of ``score_maps`` in its order.
    The settings are ``score_maps``'s, checked the same way. ``dtype`` is the accumulation type of the heat
    sums ("float64": parity to rounding; "float32": ~1e-6). ``validate`` adds a graph assertion that the
    maps have no negative value (``score_maps`` raises ValueError; here it is an InvalidArgumentError; it
    costs one device-to-host sync per batch). ``kernels`` lays out the integer work for "cpu" or "gpu"
    ("auto": "gpu" when TensorFlow sees a GPU at construction); results are identical.

    Boxes are not validated on the device: ``pad_for_device`` validates them on the host, as ``score_maps``
    does. ``score_numpy`` is the host convenience with ``score_maps``'s arguments (maps cast to float32).
    """

    def __init__(
        self,
        height: int,
        width: int,
        regions: Mapping[str, tuple[float, float, float, float]] | None = None,
        *,
        corner_fraction: float = CORNER_FRACTION,
        border_fraction: float = BORDER_FRACTION,
        pointing_tolerance: float | None = None,
        cam_threshold: float = 0.2,
        iou_hit: float = 0.5,
        dtype: str = "float64",
        validate: bool = True,
        kernels: str = "auto",
    ) -> None:
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"map size must be positive, got {height} x {width}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.dtype = tf.as_dtype(dtype)
        self.corner_fraction = _check_fraction("corner_fraction", corner_fraction, 0.0, 0.5)
        self.border_fraction = _check_fraction("border_fraction", border_fraction, 0.0, 0.5)
        self.cam_threshold = _check_fraction("cam_threshold", cam_threshold, 0.0, 1.0)
        self.iou_hit = _check_fraction("iou_hit", iou_hit, 0.0, 1.0)
        self.regions = _check_regions(regions)
        if pointing_tolerance is None:
            pointing_tolerance = default_pointing_tolerance(self.height, self.width)
        elif not pointing_tolerance >= 0:
            raise UsageError(f"pointing_tolerance must be >= 0 pixels, got {pointing_tolerance}")
        self.pointing_tolerance = float(pointing_tolerance)
        self.validate = bool(validate)
        self._layout = _layout(kernels)

        # Fixed rectangles (corners, user regions, the border band) are host constants, built with the very
        # functions score_maps uses: [H*W, R] 0/1 columns for one matmul per batch.
        h, w = self.height, self.width
        rects = _region_rects(h, w, self.corner_fraction, self.regions, self.border_fraction)
        bw, bh = self.border_fraction * w, self.border_fraction * h
        band = ~rect_masks(np.array([[bw, bh, w - bw, h - bh]]), h, w)
        self._region_names = [*rects, "border_heat"]
        masks = [rect_masks(r, h, w) for r in rects.values()] + [band]
        self._region_px = np.array([m.sum() for m in masks], dtype=np.float64)
        self._region_matrix = np.stack([m.reshape(-1) for m in masks], axis=1).astype(np.float64)
        self._function = None

    @property
    def function(self):
        """``score`` as a ``tf.function`` with signature (float32 [None, H, W], float64 [None, None, 4],
        int32 [None]): traced once, whatever the batch size and K."""
        if self._function is None:
            self._function = tf.function(self.score, input_signature=[
                tf.TensorSpec([None, self.height, self.width], tf.float32, name="maps"),
                tf.TensorSpec([None, None, 4], tf.float64, name="boxes"),
                tf.TensorSpec([None], tf.int32, name="counts"),
            ])
        return self._function

    def score_numpy(self, maps: np.ndarray, boxes: Sequence) -> dict[str, np.ndarray]:
        """Host convenience with ``score_maps``'s arguments: pad, run ``function``, return numpy columns."""
        maps = np.asarray(maps)
        if maps.ndim != 3 or maps.shape[1:] != (self.height, self.width):
            raise ValueError(f"maps must have shape [N, {self.height}, {self.width}], got {maps.shape}")
        if len(boxes) != len(maps):
            raise ValueError(f"got {len(maps)} maps but {len(boxes)} box arrays")
        padded, counts = pad_for_device(boxes)
        out = self.function(tf.constant(maps, tf.float32), tf.constant(padded), tf.constant(counts))
        return {k: v.numpy() for k, v in out.items()}

    def score(self, maps, boxes, counts) -> dict:
        """{column: float64 [N]} for maps [N, H, W], boxes [N, K, 4], counts [N] (TensorFlow ops only)."""
        h, w = self.height, self.width
        maps = tf.convert_to_tensor(maps)
        if not maps.dtype.is_floating:
            maps = tf.cast(maps, tf.float32)
        if maps.shape.rank != 3 or maps.shape[1] not in (None, h) or maps.shape[2] not in (None, w):
            raise ValueError(f"maps must have shape [N, {h}, {w}], got {maps.shape}")
        maps = tf.ensure_shape(maps, [None, h, w])
        boxes = tf.ensure_shape(tf.cast(boxes, _F64), [None, None, 4])
        counts = tf.cast(counts, tf.int64)
        if self.validate:
            tf.debugging.Assert(tf.logical_not(tf.reduce_any(maps < 0)),
                                ["maps must be >= 0 (clip negatives after resampling)"])
        n = tf.shape(maps)[0]
        valid = tf.range(tf.shape(boxes, out_type=tf.int64)[1])[None, :] < counts[:, None]  # [N, K]

        # ------------------------------------------------------------ dead maps
        finite_px = tf.math.is_finite(maps)
        finite = tf.reduce_all(finite_px, axis=[1, 2])
        heat_in = tf.where(finite_px, maps, tf.zeros_like(maps))
        heat = tf.cast(heat_in, self.dtype)
        total = tf.cast(tf.reduce_sum(heat, axis=[1, 2]), _F64)
        alive = finite & (total > 0)
        safe_total = tf.where(alive, total, 1.0)

        # ------------------------------------------------------------ box masks (pixel-centre rule)
        in_box = self._union(boxes, valid)
        box_px = tf.reduce_sum(tf.cast(in_box, _F64), axis=[1, 2])  # integer counts, exact in float64
        has_box = box_px > 0
        scored = alive & has_box

        # ------------------------------------------------------------ mass scores
        image_px = float(h * w)
        in_f = tf.cast(in_box, self.dtype)
        area = _exact_div(box_px, image_px)
        energy = tf.cast(tf.reduce_sum(heat * in_f, axis=[1, 2]), _F64) / safe_total
        lift = energy / area
        chance = (energy - area) / (1.0 - area)
        relative = tf.clip_by_value(tf.math.log(lift) / tf.math.log(1.0 / area), -1.0, 1.0)

        # ------------------------------------------------------------ pointing and centre baseline
        tol = self.pointing_tolerance
        centre_x = tf.fill([n], w / 2.0)
        centre_y = tf.fill([n], h / 2.0)
        center_hit = _distance(tf.cast(centre_x, _F64), tf.cast(centre_y, _F64), boxes, valid) <= tol
        peak = tf.reduce_max(heat_in, axis=[1, 2])
        is_max = (heat_in == peak[:, None, None]) & scored[:, None, None]
        at = tf.where(is_max)  # [M, 3] (n, r, c) of every maximum of a scored map
        far = _distance(tf.cast(at[:, 2], _F64) + 0.5, tf.cast(at[:, 1], _F64) + 0.5,
                        tf.gather(boxes, at[:, 0]), tf.gather(valid, at[:, 0])) > tol
        misses = tf.math.unsorted_segment_sum(tf.cast(far, _F64), at[:, 0], tf.cast(n, tf.int64))
        pointing = tf.cast(misses == 0, _F64)

        # ------------------------------------------------------------ rank accuracy (ties shared)
        rank = self._rank_accuracy(heat_in, in_box, box_px, n)

        # ------------------------------------------------------------ largest component vs boxes
        thresh = self.cam_threshold * tf.cast(peak, _F64)
        fg = (tf.cast(heat_in, _F64) >= thresh[:, None, None]) & scored[:, None, None]
        iou = _best_iou(_largest_component_boxes(fg, self._layout), boxes, valid, h, w)

        def only(values, ok):
            return tf.where(ok, tf.cast(values, _F64), np.nan)

        out = {
            "dead": tf.cast(~alive, _F64),
            "area": only(area, has_box),
            "energy": only(energy, scored),
            "lift": only(lift, scored),
            "excess": only(energy - area, scored),
            "chance_corrected": only(chance, scored & (box_px < h * w)),
            "relative_lift": only(relative, scored & (area < MAX_RELATIVE_LIFT_AREA)),
            "pointing_hit": only(pointing, scored),
            "center_hit": only(center_hit, has_box),
            "rank_accuracy": only(rank, scored),
            "cam_box_iou": only(iou, scored),
            "cam_box_hit": only(iou >= self.iou_hit, scored),
        }
        out["ring_heat"], out["ring_lift"] = self._ring(heat, in_box, boxes, valid, scored, safe_total)
        out["ring_side_lift"], out["ring_one_sided"] = self._ring_side(heat, in_box, scored)

        # ------------------------------------------------------------ region heats (object pixels excluded)
        outside = tf.reshape(1 - in_f, [n, h * w])
        matrix = tf.constant(self._region_matrix, self.dtype)
        sums = tf.cast(tf.matmul(tf.reshape(heat, [n, h * w]) * outside, matrix), _F64) / safe_total[:, None]
        free_px = tf.math.round(tf.cast(tf.matmul(outside, matrix), _F64))  # integer counts
        region_heat = {}
        lifts = {}
        for j, name in enumerate(self._region_names):
            region_heat[name] = sums[:, j]
            prefix = next((p for p in LIFT_PREFIXES if name.startswith(p)), None)
            if prefix is not None:
                usable = free_px[:, j] >= MIN_FREE_CORNER * self._region_px[j]
                share = _exact_div(free_px[:, j], image_px)
                lifts[name.replace(prefix, LIFT_PREFIXES[prefix])] = tf.where(
                    usable, region_heat[name] / share, np.nan)
        corner_cols = [f"corner_heat_{c}" for c in CORNERS]
        region_heat["corner_heat_max"] = tf.reduce_max(
            tf.stack([tf.zeros([n], _F64)] + [region_heat[c] for c in corner_cols], axis=0), axis=0)
        lift_cols = [f"corner_lift_{c}" for c in CORNERS]
        edge_cols = [f"edge_lift_{e}" for e in EDGES]
        region_heat.update(lifts)
        region_heat["corner_lift_max"] = _finite_max(tf.stack([lifts[c] for c in lift_cols], axis=0))
        region_heat["edge_lift_max"] = _finite_max(tf.stack([lifts[c] for c in edge_cols], axis=0))
        ordered = [*corner_cols, "corner_heat_max", *lift_cols, "corner_lift_max", "border_heat",
                   *edge_cols, "edge_lift_max", *(k for k in region_heat if k.startswith(REGION_PREFIX))]
        for name in ordered:
            out[name] = only(region_heat[name], alive)
        return out

    def _union(self, boxes, valid):
        """[N, H, W] bool union of the valid boxes (pixel-centre rule, as ``rect_masks``)."""
        cx = tf.range(self.width, dtype=_F64) + 0.5
        cy = tf.range(self.height, dtype=_F64) + 0.5
        in_x = (cx >= boxes[..., 0, None]) & (cx < boxes[..., 2, None]) & valid[..., None]  # [N, K, W]
        in_y = (cy >= boxes[..., 1, None]) & (cy < boxes[..., 3, None])  # [N, K, H]
        return tf.einsum("nkh,nkw->nhw", tf.cast(in_y, tf.float32), tf.cast(in_x, tf.float32)) > 0

    def _ring(self, heat, in_box, boxes, valid, scored, safe_total):
        """``localisation._ring_scores``: the same grown boxes (same float64 operations), so the same pixels."""
        h, w = self.height, self.width
        grow = tf.minimum(RING_WIDTH * ((boxes[..., 2] - boxes[..., 0]) + (boxes[..., 3] - boxes[..., 1])),
                          tf.constant(RING_MAX_WIDTH * min(h, w), _F64))
        grown = tf.stack([boxes[..., 0] - grow, boxes[..., 1] - grow, boxes[..., 2] + grow, boxes[..., 3] + grow],
                         axis=-1)
        ring = self._union(grown, valid) & ~in_box
        ring_px = tf.reduce_sum(tf.cast(ring, _F64), axis=[1, 2])
        share = tf.cast(tf.reduce_sum(heat * tf.cast(ring, self.dtype), axis=[1, 2]), _F64) / safe_total
        ok = scored & (ring_px > 0)
        lift = share / tf.where(ok, _exact_div(ring_px, float(h * w)), 1.0)
        return tf.where(ok, share, np.nan), tf.where(ok, lift, np.nan)

    def _ring_side(self, heat, in_box, scored):
        """``localisation._ring_side_scores``: the same ring pixels (``dilate_square``), octants and count
        rule; heat sums in ``dtype``, the rest in float64.

        The octants come from float64 comparisons against the centre (exact integer sums over the count),
        written as boolean masks (int32 element-wise ops run on the host on a GPU).
        """
        h, w = self.height, self.width
        ring = dilate_square(in_box, ring_side_radius(h, w)) & ~in_box & scored[:, None, None]
        obj = tf.cast(in_box, _F64)
        rows = tf.range(h, dtype=_F64)
        cols = tf.range(w, dtype=_F64)
        count = tf.reduce_sum(obj, axis=[1, 2])
        cy = tf.reduce_sum(obj * rows[:, None], axis=[1, 2]) / count
        cx = tf.reduce_sum(obj * cols[None, :], axis=[1, 2]) / count
        dy = rows[None, :, None] - cy[:, None, None]
        dx = cols[None, None, :] - cx[:, None, None]
        up, left, steep = dy < 0, dx < 0, tf.abs(dy) > tf.abs(dx)
        zero = tf.zeros_like(count)
        sectors, total, peak = zero, zero, zero
        for s in range(8):  # octant s = 4 * up + 2 * left + steep, densities added in score_maps' order
            sector = ring
            for bit, mask in ((4, up), (2, left), (1, steep)):
                sector = sector & (mask if s & bit else ~mask)
            px = tf.reduce_sum(tf.cast(sector, _F64), axis=[1, 2])
            heat_s = tf.cast(tf.reduce_sum(heat * tf.cast(sector, self.dtype), axis=[1, 2]), _F64)
            counts = px >= RING_SIDE_MIN_PX
            density = tf.where(counts, heat_s / tf.maximum(px, 1.0), 0.0)
            sectors = sectors + tf.cast(counts, _F64)
            total = total + density
            peak = tf.maximum(peak, density)
        ok = scored & (sectors > 0)
        mean = total / tf.where(ok, sectors, 1.0)
        ok = ok & (mean > 0)
        lift = peak / tf.where(ok, mean, 1.0)
        return tf.where(ok, lift, np.nan), tf.where(ok, tf.cast(lift > RING_ONE_SIDED, _F64), np.nan)

    def _rank_accuracy(self, heat, in_box, box_px, n):
        """``localisation._rank_accuracy``: the cut is the max(K, 1)-th largest value; ties at it shared."""
        size = heat.shape[1] * heat.shape[2]
        keys, bits = _order_keys(tf.reshape(heat, [n, size]), self._layout)
        inside = tf.reshape(in_box, [n, size])
        tied = _kth_largest(keys, bits, tf.maximum(box_px, 1.0), self._layout)
        cut = tf.reduce_max(tf.where(tied, keys, keys.dtype.min), axis=1, keepdims=True)
        hotter = keys > cut

        def count(mask):
            return tf.reduce_sum(tf.cast(mask, _F64), axis=1)

        k = box_px
        n_hotter, n_tied = count(hotter), count(tied)
        hit = count(hotter & inside) + (k - n_hotter) * count(tied & inside) / tf.maximum(n_tied, 1.0)
        return hit / k


def dilate_square(mask, radius: int):
    """[N, H, W] bool: ``mask`` dilated by a (2 radius + 1)-square, as cv2.dilate with a square kernel.

    Two max pools (a 1 x (2r + 1) row, then a (2r + 1) x 1 column: a square's maximum, separably), padding
    SAME: the odd window is centred (r each side, also where it is wider than the frame) and positions
    outside the frame take no part, as in cv2.dilate with its default border; on a 0/1 mask even a zero pad
    would give the same maximum."""
    k = 2 * int(radius) + 1
    grown = tf.cast(mask, tf.float32)[..., None]
    grown = tf.nn.max_pool2d(grown, ksize=[1, k], strides=1, padding="SAME")
    grown = tf.nn.max_pool2d(grown, ksize=[k, 1], strides=1, padding="SAME")
    return grown[..., 0] > 0.5


def _finite_max(stacked):
    """``localisation._finite_max``: per column of [R, N], the largest finite value; NaN where none is."""
    finite = tf.math.is_finite(stacked)
    return tf.where(tf.reduce_any(finite, axis=0),
                    tf.reduce_max(tf.where(finite, stacked, -np.inf), axis=0), np.nan)


def _order_keys(values, layout):
    """Integer keys [N, M] ordered as the (non-NaN) float values are, with -0.0 equal to 0.0: int64 for
    float64 values, else ``layout.key``. Returns (keys, bits)."""
    if values.dtype != _F64:
        values = tf.cast(values, tf.float32)  # exact for float16 / bfloat16
    values = tf.where(values == 0, tf.zeros_like(values), values)
    if values.dtype == _F64:
        bits, width = tf.bitcast(values, tf.int64), 64
    else:
        bits, width = tf.cast(tf.bitcast(values, tf.int32), layout.key), 32
    magnitude = tf.constant(np.iinfo(f"int{width}").max, bits.dtype)
    return tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, magnitude), bits), width  # negatives reversed


_DIGIT = 16


def _kth_largest(keys, bits, k, layout):
    """Radix select: [N, M] bool, the entries equal to the k-th largest key of their row (k [N] in 1..M).

    One histogram of 2^16 bins per row and pass over the `bits`-bit keys (2 passes for float32 maps, 4 for
    float64), instead of a sort. Counts are ``layout.label`` (float64 counts are exact).
    """
    count = layout.label
    n = tf.shape(keys, out_type=keys.dtype)[0]
    bins = 1 << _DIGIT
    match = tf.ones_like(keys, tf.bool)  # entries whose digits so far equal the k-th largest's
    remaining = tf.cast(k, count)  # rank of the k-th largest among the entries still matching
    for shift in range(bits - _DIGIT, -1, -_DIGIT):
        digit = tf.bitwise.right_shift(keys, shift)
        # the top digit carries the sign (arithmetic shift: -2^15 .. 2^15 - 1): offset it to 0 .. 2^16 - 1
        top = shift == bits - _DIGIT
        digit = digit + bins // 2 if top else tf.bitwise.bitwise_and(digit, bins - 1)
        if layout.bincount:  # entries that no longer match go to bin `bins`, which maxlength drops
            hist = tf.math.bincount(tf.cast(tf.where(match, digit, bins), tf.int32), minlength=bins,
                                    maxlength=bins, axis=-1, dtype=count)
        else:
            ids = tf.reshape(tf.where(match, digit + tf.range(n)[:, None] * bins, n * bins), [-1])
            hist = tf.math.unsorted_segment_sum(tf.ones_like(ids, tf.int32), ids, n * bins + 1)
            hist = tf.cast(tf.reshape(hist[:-1], [-1, bins]), count)
        at_or_above = tf.cumsum(hist, axis=1, reverse=True)
        chosen = tf.reduce_sum(tf.cast(at_or_above >= remaining[:, None], count), axis=1) - 1
        pick = tf.cast(chosen, layout.index)
        remaining = remaining - (tf.gather(at_or_above, pick, batch_dims=1) - tf.gather(hist, pick, batch_dims=1))
        match = match & (digit == tf.cast(pick, digit.dtype)[:, None])
    return match
