"""Faithfulness spot check: deletion and insertion AUC (Petsiuk, Das & Saenko 2018, "RISE", BMVC).

A heatmap is faithful when the pixels it calls important are the ones the model uses. Deletion removes the
pixels in order of decreasing heat (replacing them with a baseline image) and follows the true-class
probability: a faithful map destroys the prediction fast, so the area under that curve is LOW. Insertion
starts from the baseline and puts the original pixels back in the same order: a faithful map restores the
prediction fast, so its AUC is HIGH. ``faithfulness_gap = insertion_auc - deletion_auc`` is higher for a
faithful map, near 0 for a map unrelated to the model, and negative for a map that points away from the
evidence. Both curves are sampled at ``steps + 1`` equal fractions of the pixels, 0 to 100 %, and integrated
by the trapezoid rule on x in [0, 1].

Cost: (steps + 1) * 2 forward passes per image, 42 at the default 20 steps (no backward pass), so the gate
runs it on a sample of :data:`DEFAULT_SAMPLES` images rather than on the whole set.

The model is only a callable ``predict(images float32 [N, H, W, C]) -> probabilities [N, classes]``, so the
check is testable with hand-written numpy models whose answer is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import cv2
import numpy as np

from validator.errors import UsageError

DEFAULT_SAMPLES = 50  # images the gate spot-checks: 50 * 42 = 2100 forward passes at the default steps
DEFAULT_STEPS = 20
DEFAULT_BATCH_SIZE = 64
BLUR_SIGMA_FRACTION = 0.05  # blur sigma as a fraction of the longer image side

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


def deletion_insertion(predict: Predict, images, maps, class_ids, *, steps: int = DEFAULT_STEPS,
                       baseline: str = "blur", batch_size: int = DEFAULT_BATCH_SIZE,
                       return_curves: bool = False) -> dict[str, np.ndarray]:
    """Deletion and insertion AUC of each map for its class: per-sample float64 columns.

    ``images`` float [N, H, W, C] in the model's input space, ``maps`` [N, H, W] (heat >= 0, at input
    resolution), ``class_ids`` int [N]: the class whose probability is followed. Pixels are ordered by
    decreasing heat, ties in raster order (stable), so a flat map deletes top-left first.

    Returns ``deletion_auc`` (low = faithful), ``insertion_auc`` (high = faithful) and ``faithfulness_gap``
    (insertion - deletion); with ``return_curves`` also ``deletion_curve`` / ``insertion_curve``
    [N, steps + 1], the probabilities at each step. A dead map (sum <= 0 or non-finite) gets NaN and costs no
    forward pass. ``predict`` is called on at most ``batch_size`` perturbed images at a time (images of
    several samples share a call), so memory is bounded by the batch size, not by N * steps.
    """
    images, maps, class_ids = _check(predict, images, maps, class_ids, steps, baseline, batch_size)
    n = len(images)
    n_points = steps + 1
    deletion = np.full((n, n_points), np.nan)
    insertion = np.full((n, n_points), np.nan)
    flat = maps.reshape(n, maps.shape[1] * maps.shape[2])
    live = np.flatnonzero(np.isfinite(flat).all(axis=1) & (flat.sum(axis=1, dtype=np.float64) > 0))
    if len(live):
        probabilities = _run(predict, images[live], flat[live], class_ids[live], steps, baseline, batch_size)
        deletion[live] = probabilities[:, 0]
        insertion[live] = probabilities[:, 1]
    out = {
        "deletion_auc": curve_auc(deletion),
        "insertion_auc": curve_auc(insertion),
    }
    out["faithfulness_gap"] = out["insertion_auc"] - out["deletion_auc"]
    if return_curves:
        out["deletion_curve"] = deletion
        out["insertion_curve"] = insertion
    return out


def _run(predict: Predict, images: np.ndarray, flat_maps: np.ndarray, class_ids: np.ndarray, steps: int,
         baseline: str, batch_size: int) -> np.ndarray:
    """True-class probability of every perturbed image: [n, 2 (deletion, insertion), steps + 1]."""
    n, height, width, channels = images.shape
    n_pixels = height * width
    # rank[i, p]: position of pixel p in image i's removal order (stable: ties keep raster order)
    order = np.argsort(-flat_maps.astype(np.float64), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(n_pixels)[None], axis=1)
    counts = step_counts(n_pixels, steps)
    base = baseline_images(images, baseline).reshape(n, n_pixels, channels)
    pixels = images.reshape(n, n_pixels, channels)
    rows_per_image = 2 * (steps + 1)
    result = np.empty(n * rows_per_image, dtype=np.float64)
    for start, rows in _row_chunks(n * rows_per_image, batch_size):
        image = rows // rows_per_image
        insert = (rows % rows_per_image) >= steps + 1
        count = counts[rows % (steps + 1)]
        changed = rank[image] < count[:, None]  # [b, pixels]: removed (deletion) or inserted (insertion)
        keep_original = changed == insert[:, None]
        batch = np.where(keep_original[..., None], pixels[image], base[image])
        probabilities = np.asarray(predict(batch.reshape(len(rows), height, width, channels)))
        if probabilities.ndim != 2 or probabilities.shape[0] != len(rows):
            raise UsageError(f"predict must return probabilities [N, classes]; for {len(rows)} images it "
                             f"returned shape {probabilities.shape}")
        wanted = class_ids[image]
        if wanted.max() >= probabilities.shape[1]:
            raise UsageError(f"class id {int(wanted.max())} is out of range: predict returns "
                             f"{probabilities.shape[1]} classes")
        result[start:start + len(rows)] = probabilities[np.arange(len(rows)), wanted]
    return result.reshape(n, 2, steps + 1)


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
