"""Faithfulness spot check: deletion and insertion (Petsiuk, Das & Saenko 2018, "RISE", BMVC), each map against
a random order on the same image.

A heatmap is faithful when the pixels it calls important are the ones the model uses. Deletion removes the
pixels in order of decreasing heat (replacing them with a baseline image) and follows the true-class
probability: a faithful map destroys the prediction fast, so the area under that curve is LOW. Insertion
starts from the baseline and puts the original pixels back in the same order: a faithful map restores the
prediction fast, so its AUC is HIGH. ``faithfulness_gap = insertion_auc - deletion_auc``. Both curves are
sampled at ``steps + 1`` equal fractions of the pixels, 0 to 100 %, and integrated by the trapezoid rule on
x in [0, 1].

The gap alone cannot fail a map that has nothing to do with the model: its expected value depends on the
image, the baseline and the model, not only on the map. So every image is also run with a random order, and
``faithfulness_gain = faithfulness_gap - (the random order's gap)`` is paired on the same image: > 0 when the
map beats chance, ~0 in expectation for any map independent of the image. The random order is the map itself
shifted cyclically by a seeded random offset of a quarter to three quarters of each side: it has exactly the
map's spatial structure (blobs delete as blobs, noise as noise), only not where the map put it. A random
*pixel* order would compare a blob-shaped deletion with salt-and-pepper noise, which the model reacts to
differently, so a random smooth map could beat it. The offset is drawn from (seed, the sample's id) alone,
never from the batch, so a sample's gain does not depend on which images share a call.

Where the probe learns nothing, the gain is NaN: the class probability moves by less than
:data:`FLAT_TOLERANCE` over every point of both curves of both orders, the whole image deleted included (a
model that does not react to the baseline). Such a sample cannot tell a faithful map from a random one, and a
gain of 0 there would only dilute the mean. The test is symmetric in the two orders, so it cannot favour the
map.

Cost per image: the original image (free when its probabilities are passed in: the explainer already has
them), the baseline image (deletion's last point, insertion's first), and deletion and insertion at the
``steps - 1`` inner points for both orders: ``4 * steps - 3`` forward passes, 5 at the default 2 steps (the
original 21-point curves of the map alone cost 42). Two steps suffice because the gain is a paired difference
and its endpoints cancel: only the inner points carry it (measured on the shapes control, one inner point
separates Grad-CAM from random maps with a wide margin: benchmarks/README.md).

The model is only a callable ``predict(images float32 [N, H, W, C]) -> probabilities [N, classes]``, so the
check is testable with hand-written numpy models whose answer is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np

from validator.errors import UsageError

DEFAULT_SAMPLES = 32  # images the gate spot-checks: 32 * 5 = 160 forward passes at the default steps
DEFAULT_STEPS = 2
DEFAULT_BATCH_SIZE = 64
BLUR_SIGMA_FRACTION = 0.05  # blur sigma as a fraction of the longer image side
# A sample whose class probability stays within this range over every point of both orders' curves taught
# the probe nothing (its gain is NaN): 0.05 is well below the gains a faithful map shows (about 1 on the
# shapes control) and above float noise.
FLAT_TOLERANCE = 0.05

# What a removed pixel becomes. Each is computed per image, in the model's input space.
BASELINES = {
    # Petsiuk's insertion canvas: the image without its fine detail, so inserting pixels adds detail
    # rather than the sharp edges of a black mask the model may react to by itself.
    "blur": "Gaussian blur of the image, sigma = 5 % of the longer side",
    # Zero in the preprocessed space: black for [0, 1] inputs, the dataset mean for standardised inputs.
    "zero": "all zeros in the model's input space",
    # Removes the content but keeps the image's overall brightness and colour.
    "mean": "the image's per-channel mean",
}

Predict = Callable[[np.ndarray], np.ndarray]


def baseline_images(images: np.ndarray, baseline: str = "blur") -> np.ndarray:
    """The baseline each image's removed pixels are replaced with (float32 [N, H, W, C], see BASELINES)."""
    if baseline not in BASELINES:
        raise UsageError(f"unknown faithfulness baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise UsageError(f"images must be [N, H, W, C], got shape {images.shape}")
    if baseline == "zero":
        return np.zeros_like(images)
    if baseline == "mean":
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).astype(np.float32)
    sigma = BLUR_SIGMA_FRACTION * max(images.shape[1:3])
    out = np.empty_like(images)
    # one channel at a time: cv2 handles any channel count that way, and 2-D input keeps the shape
    for i in range(images.shape[0]):
        for c in range(images.shape[3]):
            out[i, :, :, c] = cv2.GaussianBlur(np.ascontiguousarray(images[i, :, :, c]), (0, 0), sigma)
    return out


def step_counts(n_pixels: int, steps: int) -> np.ndarray:
    """Pixels removed (or inserted) at each of the steps + 1 points: round(k * n_pixels / steps), k = 0..steps.

    Integer arithmetic (half rounds up), so the counts are exact and end at n_pixels."""
    k = np.arange(steps + 1, dtype=np.int64)
    return (2 * k * n_pixels + steps) // (2 * steps)


def curve_auc(curves: np.ndarray) -> np.ndarray:
    """Trapezoid area of curves sampled at equal steps on x in [0, 1] ([..., steps + 1] -> [...])."""
    curves = np.asarray(curves, dtype=np.float64)
    steps = curves.shape[-1] - 1
    return (curves.sum(axis=-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps


def forward_passes(steps: int, original_known: bool = True) -> int:
    """Forward passes per image: the baseline, 4 per inner point (two orders x deletion, insertion), and the
    original image unless its probabilities are known."""
    return 4 * (steps - 1) + 1 + (0 if original_known else 1)


def random_shift(height: int, width: int, seed: int, sample_id: int) -> tuple[int, int]:
    """The random order's cyclic offset (dy, dx) for one sample, each in [ceil(side / 4), side - ceil(side / 4)].

    Drawn from (seed, sample_id) alone. At least a quarter of the side on the torus, so the shifted map is not
    a near copy of the map (a 1-pixel shift would make the gain ~0 for a faithful map too); which offset is
    drawn does not matter for a map unrelated to the image, whose gain is ~0 whatever the shift."""
    rng = np.random.default_rng([int(seed) % 2**64, int(sample_id)])
    shift = []
    for side in (height, width):
        lo = -(-side // 4)
        shift.append(int(rng.integers(lo, side - lo + 1)) if side - lo >= lo else 0)
    return shift[0], shift[1]


def deletion_insertion(predict: Predict, images, maps, class_ids, *, steps: int = DEFAULT_STEPS,
                       baseline: str = "blur", batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                       sample_ids=None, original_probabilities=None,
                       return_curves: bool = False) -> dict[str, np.ndarray]:
    """Deletion and insertion AUC of each map for its class, and its gain over a random order: per-sample
    float64 columns.

    ``images`` float [N, H, W, C] in the model's input space, ``maps`` [N, H, W] (heat >= 0, at input
    resolution), ``class_ids`` int [N]: the class whose probability is followed. Pixels are ordered by
    decreasing heat, ties in raster order (stable), so a flat map deletes top-left first. ``sample_ids`` int
    [N] (default 0..N-1) and ``seed`` draw each sample's random order (:func:`random_shift`).
    ``original_probabilities`` [N, classes]: the model's probabilities on the unaltered images, if known
    (saves one forward pass per image).

    Returns ``deletion_auc`` (low = faithful), ``insertion_auc`` (high = faithful), ``faithfulness_gap``
    (insertion - deletion) of the map, ``random_gap`` of the shifted map, and ``faithfulness_gain`` (gap -
    random_gap; NaN where the probe learnt nothing, see :data:`FLAT_TOLERANCE`, and when ``steps`` is 1: the
    orders then share every point); with ``return_curves`` also ``deletion_curve`` / ``insertion_curve`` and
    ``random_deletion_curve`` / ``random_insertion_curve`` [N, steps + 1], the probabilities at each step. A
    dead map (sum <= 0 or non-finite) gets NaN and costs no forward pass. ``predict`` is called on at most
    ``batch_size`` perturbed images at a time (images of several samples share a call), so memory is bounded
    by the batch size, not by N * steps.
    """
    images, maps, class_ids = _check(predict, images, maps, class_ids, steps, baseline, batch_size)
    n = len(images)
    sample_ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids, dtype=np.int64)
    if sample_ids.shape != (n,):
        raise UsageError(f"sample_ids must be [N] = ({n},), got shape {sample_ids.shape}")
    original = None
    if original_probabilities is not None:
        original_probabilities = np.asarray(original_probabilities, dtype=np.float64)
        if original_probabilities.ndim != 2 or len(original_probabilities) != n:
            raise UsageError(f"original_probabilities must be [N, classes] with N = {n}, got shape "
                             f"{original_probabilities.shape}")
        _check_classes(class_ids, original_probabilities.shape[1])
        original = original_probabilities[np.arange(n), class_ids]
    curves = np.full((n, 2, 2, steps + 1), np.nan)  # [sample, order (map, random), (deletion, insertion), k]
    flat = maps.reshape(n, maps.shape[1] * maps.shape[2])
    live = np.flatnonzero(np.isfinite(flat).all(axis=1) & (flat.sum(axis=1, dtype=np.float64) > 0))
    if len(live):
        shifted = np.stack([np.roll(maps[i], random_shift(*maps.shape[1:3], seed, sample_ids[i]), axis=(0, 1))
                            for i in live])
        orders = np.stack([flat[live], shifted.reshape(len(live), -1)], axis=1)
        curves[live] = _run(predict, images[live], orders, class_ids[live], steps, baseline, batch_size,
                            None if original is None else original[live])
    out = {
        "deletion_auc": curve_auc(curves[:, 0, 0]),
        "insertion_auc": curve_auc(curves[:, 0, 1]),
    }
    out["faithfulness_gap"] = out["insertion_auc"] - out["deletion_auc"]
    out["random_gap"] = curve_auc(curves[:, 1, 1]) - curve_auc(curves[:, 1, 0])
    with np.errstate(invalid="ignore"):
        spread = np.ptp(curves.reshape(n, 4 * (steps + 1)), axis=1)  # NaN for dead maps
        learnt = (spread >= FLAT_TOLERANCE) & (steps > 1)
    out["faithfulness_gain"] = np.where(learnt, out["faithfulness_gap"] - out["random_gap"], np.nan)
    if return_curves:
        out["deletion_curve"], out["insertion_curve"] = curves[:, 0, 0], curves[:, 0, 1]
        out["random_deletion_curve"], out["random_insertion_curve"] = curves[:, 1, 0], curves[:, 1, 1]
    return out


def _run(predict: Predict, images: np.ndarray, orders: np.ndarray, class_ids: np.ndarray, steps: int,
         baseline: str, batch_size: int, original: np.ndarray | None) -> np.ndarray:
    """True-class probability along both orders' curves: [n, 2 (map, random), 2 (deletion, insertion), steps + 1].

    ``orders`` [n, 2, pixels]: the map and its shifted copy. Each image needs the original (unless known)
    and the baseline once, shared by every curve's end points, then 4 rows per inner point."""
    n, height, width, channels = images.shape
    n_pixels = height * width
    # rank[i, o, p]: position of pixel p in image i's removal order o (stable: ties keep raster order)
    order = np.argsort(-orders.astype(np.float64), axis=2, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_pixels)[None, None], axis=2)
    counts = step_counts(n_pixels, steps)
    # the rows each image needs: (order, insert, pixels changed); the end points are deletions of 0 or all
    inner = [(o, insert, int(counts[k])) for k in range(1, steps) for o in (0, 1) for insert in (False, True)]
    plan = ([] if original is not None else [(0, False, 0)]) + [(0, False, n_pixels)] + inner
    row_order, row_insert, row_count = (np.array(column) for column in zip(*plan, strict=True))
    base = baseline_images(images, baseline).reshape(n, n_pixels, channels)
    pixels = images.reshape(n, n_pixels, channels)
    rows_per_image = len(plan)
    result = np.empty(n * rows_per_image, dtype=np.float64)
    for start, rows in _row_chunks(n * rows_per_image, batch_size):
        image, kind = rows // rows_per_image, rows % rows_per_image
        insert = row_insert[kind]
        changed = rank[image, row_order[kind]] < row_count[kind][:, None]  # [b, pixels]: removed or inserted
        keep_original = changed == insert[:, None]
        batch = np.where(keep_original[..., None], pixels[image], base[image])
        probabilities = np.asarray(predict(batch.reshape(len(rows), height, width, channels)))
        if probabilities.ndim != 2 or probabilities.shape[0] != len(rows):
            raise UsageError(f"predict must return probabilities [N, classes]; for {len(rows)} images it "
                             f"returned shape {probabilities.shape}")
        wanted = class_ids[image]
        _check_classes(wanted, probabilities.shape[1])
        result[start:start + len(rows)] = probabilities[np.arange(len(rows)), wanted]
    result = result.reshape(n, rows_per_image)
    if original is None:
        original, result = result[:, 0], result[:, 1:]
    curves = np.empty((n, 2, 2, steps + 1))
    curves[:, :, 0, 0] = curves[:, :, 1, steps] = original[:, None]
    curves[:, :, 0, steps] = curves[:, :, 1, 0] = result[:, :1]
    # inner rows are ordered (k, order, insert): reshape to [n, steps - 1, 2, 2] and move k last
    curves[:, :, :, 1:steps] = result[:, 1:].reshape(n, steps - 1, 2, 2).transpose(0, 2, 3, 1)
    return curves


def _check_classes(class_ids: np.ndarray, n_classes: int) -> None:
    if len(class_ids) and class_ids.max() >= n_classes:
        raise UsageError(f"class id {int(class_ids.max())} is out of range: predict returns {n_classes} classes")


def _row_chunks(total: int, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    # Full batches across image boundaries: one predict call per batch_size rows, whatever N and steps are.
    for start in range(0, total, batch_size):
        yield start, np.arange(start, min(start + batch_size, total))


def _check(predict, images, maps, class_ids, steps, baseline, batch_size):
    if not callable(predict):
        raise UsageError(f"predict must be callable images -> probabilities, got {type(predict).__name__}")
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise UsageError(f"{name} must be an integer >= 1, got {value!r}")
    if baseline not in BASELINES:
        raise UsageError(f"unknown faithfulness baseline {baseline!r}; choose one of {', '.join(BASELINES)}")
    images = np.asarray(images, dtype=np.float32)
    maps = np.asarray(maps)
    class_ids = np.asarray(class_ids)
    if images.ndim != 4:
        raise UsageError(f"images must be [N, H, W, C], got shape {images.shape}")
    if maps.shape != images.shape[:3]:
        raise UsageError(f"maps must be [N, H, W] at input resolution {images.shape[:3]}, got {maps.shape}")
    if class_ids.shape != images.shape[:1]:
        raise UsageError(f"class_ids must be [N] = {images.shape[:1]}, got shape {class_ids.shape}")
    if class_ids.size and (not np.issubdtype(class_ids.dtype, np.integer) or class_ids.min() < 0):
        raise UsageError(f"class_ids must be non-negative integers, got {class_ids.dtype} "
                         f"(min {class_ids.min()})")
    return images, maps.astype(np.float64), class_ids.astype(np.int64)
