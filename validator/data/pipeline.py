"""Streaming input pipeline: decode, resize and preprocess images in a tf.data pipeline, batch by batch.

A Python generator reads the samples in order; ``tf.data`` batches them and prefetches, so decoding the
next batch overlaps with the model's compute on the current one. Only the prefetched batches are held in
memory, never the whole set; the only thing that grows is the ``issues`` list.

Preprocessing is applied per image inside the generator (so it also overlaps with compute), by calling the
batch function on a batch of one: the modes offered here are all per-image operations.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from validator._tf import tf
from validator.data.boxes import clip_box, format_box
from validator.data.images import EXIF_NOTE, ImageReadError, check_channels, read_image
from validator.data.masks import REGION_MASK, REGION_NAMES, object_region
from validator.data.preprocess import check_channels as check_preprocess_channels
from validator.data.preprocess import get_preprocess
from validator.data.records import DataIssue, Sample
from validator.errors import UsageError

DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
DECODE_AHEAD = 4 * DECODE_THREADS  # images decoded ahead of the batcher (bounded: memory stays flat)


@dataclass
class Batch:
    images: np.ndarray  # float32 [b, H, W, C], preprocessed, at model input size
    raw: np.ndarray  # uint8 [b, H, W, C] (grayscale, RGB or RGBA), resized, clipped + rounded (for overlays)
    indices: np.ndarray  # int64 [b] into the samples list
    boxes: list[np.ndarray]  # per sample float64 [k, 4], clipped, scaled to the input size
    chunk: int | None = None  # aligned batches: k when the batch holds the good samples of samples[kB:(k+1)B]
    #: per sample, bool [H, W] object region at the input size where the sample has masks, else None (its boxes)
    masks: list | None = None
    regions: np.ndarray | None = None  # per sample "none" | "box" | "mask" | "mask+box" (object dtype)


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """INTER_AREA when shrinking (no aliasing), INTER_LINEAR when enlarging; uint8 or float, and an
    (H, W, 1) image stays 3-D (cv2 alone would drop the channel axis)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrinking = width <= w and height <= h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 3 and resized.ndim == 2:
        resized = resized[:, :, None]
    return resized


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A 0..255 image as uint8 for display: float images clipped and rounded, uint8 unchanged."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def iter_batches(
    samples: Sequence[Sample],
    *,
    input_size: tuple[int, int],
    batch_size: int,
    preprocess: str | Callable[[np.ndarray], np.ndarray] | None = None,
    issues: list[DataIssue] | None = None,
    prefetch: int = 2,
    channels: int = 3,
    aligned: bool = False,
) -> Iterator[Batch]:
    """Yield batches of the good samples, in order; bad ones are skipped and recorded in ``issues``.

    ``input_size`` is (height, width), the Keras convention. ``channels`` is the model's input channel
    count (1 grayscale, 3 RGB, 4 RGBA; ``LoadedModel.input_channels``): every image is decoded to it by
    ``read_image``. ``preprocess`` is a mode name (see ``get_preprocess``) or a function on float32
    [N, H, W, C] 0..255 (16-bit and DICOM images keep their fractional values).

    ``aligned``: batch k holds the good samples of ``samples[k*batch_size:(k+1)*batch_size]`` (smaller where
    samples were skipped, absent where all were), so a batch's composition does not depend on what was
    skipped before it: a shard of whole chunks sees exactly the batches a single process sees (validator.shard).
    Otherwise a skipped sample's place goes to the next good one.
    """
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or batch_size <= 0:
        raise UsageError(f"input_size {input_size} and batch_size {batch_size} must be positive")
    channels = check_channels(channels)
    if not callable(preprocess):
        check_preprocess_channels(preprocess, channels)
    preprocess_fn = preprocess if callable(preprocess) else get_preprocess(preprocess)
    issues = issues if issues is not None else []
    failures: list[BaseException] = []

    def generate():
        # An exception raised inside a tf.data generator reaches the caller as a generic tf error;
        # keep the original to re-raise it with its type and message.
        try:
            prepared = _prepared(samples, width, height, channels, preprocess_fn, issues)
            yield from (_chunks(prepared, batch_size) if aligned else prepared)
        except Exception as exc:
            failures.append(exc)

    signature = (
        tf.TensorSpec((height, width, channels), tf.float32),
        tf.TensorSpec((height, width, channels), tf.uint8),
        tf.TensorSpec((), tf.int64),
        tf.TensorSpec((None, 4), tf.float64),
        tf.TensorSpec((), tf.int32),
        tf.TensorSpec((height, width), tf.bool),
        tf.TensorSpec((), tf.int32),
    )
    if aligned:  # the generator yields whole batches
        signature = tuple(tf.TensorSpec((None, *spec.shape), spec.dtype) for spec in signature)
    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    options = tf.data.Options()
    # Autotuning made closing the iterator stall for 0.3-5 s at the end of a set (benchmarks/README.md);
    # the pipeline is a fixed generator -> batch -> prefetch chain with nothing to tune.
    options.autotune.enabled = False
    if not aligned:
        dataset = dataset.padded_batch(batch_size)
    dataset = dataset.prefetch(prefetch).with_options(options)
    for images, raw, indices, boxes, counts, masks, regions in dataset.as_numpy_iterator():
        if failures:
            raise failures[0]
        yield Batch(
            images=images,
            raw=raw,
            indices=indices,
            boxes=[boxes[i, : counts[i]].copy() for i in range(len(indices))],
            chunk=int(indices[0]) // batch_size if aligned else None,
            # "mask" and "mask+box" carry a region; "box" and "none" leave it to the boxes
            masks=[masks[i].copy() if regions[i] >= REGION_MASK else None for i in range(len(indices))],
            regions=np.array([REGION_NAMES[r] for r in regions], dtype=object),
        )
    if failures:
        raise failures[0]


def load_samples(samples: Sequence[Sample], *, input_size: tuple[int, int], channels: int = 3,
                 preprocess: str | Callable[[np.ndarray], np.ndarray] | None = None, masks: bool = False):
    """(images float32 [n, H, W, C], boxes per sample scaled to the input size, ok [n] bool) of a few samples,
    decoded exactly as ``iter_batches`` decodes them (a sample that cannot be read has ok False and zeros).
    ``masks``: a fourth item, each sample's object region as ``Batch.masks`` holds it (None: its boxes).

    For what needs another sample's pixels beside the batch (the Mixed-Rand donors); its problems are the
    main pass's to record, so nothing is recorded here."""
    height, width = (int(v) for v in input_size)
    preprocess_fn = preprocess if callable(preprocess) else get_preprocess(preprocess)
    images = np.zeros((len(samples), height, width, channels), np.float32)
    boxes: list[np.ndarray] = [np.zeros((0, 4))] * len(samples)
    ok = np.zeros(len(samples), bool)
    regions: list[np.ndarray | None] = [None] * len(samples)
    keys = list(dict.fromkeys((s.image_path, s.exif_orientation) for s in samples))
    with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="camgate-decode") as pool:
        decoded = dict(zip(keys, pool.map(lambda k: _decode(*k, width, height, channels, preprocess_fn)[0], keys),
                           strict=True))
    for i, sample in enumerate(samples):
        image = decoded[(sample.image_path, sample.exif_orientation)]
        if isinstance(image, ImageReadError):
            continue
        decoded_size, _, pixels = image
        kept = _clipped_boxes(sample, decoded_size, [])
        if kept is None:
            continue
        sx, sy = width / decoded_size[0], height / decoded_size[1]
        images[i], ok[i] = pixels, True
        boxes[i] = np.array(kept, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
        if masks:
            region, code = object_region(sample, decoded_size, (height, width), [])
            regions[i] = region if code >= REGION_MASK else None
    return (images, boxes, ok, regions) if masks else (images, boxes, ok)


def _prepared(samples, width, height, channels, preprocess_fn, issues):
    decoded = _decode_ahead(samples, width, height, channels, preprocess_fn)
    cached_path, cached = None, None  # samples of one image are adjacent: decode it once
    for index, sample in enumerate(samples):
        if sample.image_path != cached_path:
            cached_path = sample.image_path
            cached, conversions = next(decoded)
            notes = [c for c in conversions if c.startswith(EXIF_NOTE)]
            conversions = [c for c in conversions if not c.startswith(EXIF_NOTE)]
            if conversions:
                issues.append(DataIssue(cached_path, None, "; ".join(conversions), "converted_image"))
            issues.extend(DataIssue(cached_path, None, note, "exif_orientation") for note in notes)
        if isinstance(cached, ImageReadError):
            issues.append(_skip(sample, cached.reason))
            continue
        decoded_size, resized, pixels = cached
        boxes = _clipped_boxes(sample, decoded_size, issues)
        if boxes is None:
            continue
        sx, sy = width / decoded_size[0], height / decoded_size[1]
        scaled = np.array(boxes, dtype=np.float64).reshape(-1, 4) * np.array([sx, sy, sx, sy])
        # decoded here, per sample, so a mask lives only as long as its batch
        region, code = object_region(sample, decoded_size, (height, width), issues)
        if region is None:
            region = np.zeros((height, width), bool)
        yield pixels, resized, np.int64(index), scaled, np.int32(len(scaled)), region, np.int32(code)


def _chunks(prepared, batch_size: int):
    """The prepared samples grouped by ``index // batch_size`` into stacked, box-padded batches."""
    group: list = []
    for item in prepared:
        if group and int(item[2]) // batch_size != int(group[0][2]) // batch_size:
            yield _stack(group)
            group = []
        group.append(item)
    if group:
        yield _stack(group)


def _stack(group: list):
    most = max(int(item[4]) for item in group)
    boxes = np.zeros((len(group), most, 4), np.float64)
    for i, item in enumerate(group):
        boxes[i, : int(item[4])] = item[3]
    return (np.stack([item[0] for item in group]), np.stack([item[1] for item in group]),
            np.array([item[2] for item in group], np.int64), boxes, np.array([item[4] for item in group], np.int32),
            np.stack([item[5] for item in group]), np.array([item[6] for item in group], np.int32))


def _decode_ahead(samples, width, height, channels, preprocess_fn):
    """Decode each distinct image (in sample order) on a few threads, at most DECODE_AHEAD in flight.

    cv2 releases the GIL while decoding and resizing, so threads overlap with each other and with the model;
    the bound keeps memory flat however long the set is."""
    firsts = (s for i, s in enumerate(samples) if i == 0 or s.image_path != samples[i - 1].image_path)
    with ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="camgate-decode") as pool:
        pending: deque = deque()
        for sample in firsts:
            pending.append(pool.submit(_decode, sample.image_path, sample.exif_orientation, width, height, channels,
                                       preprocess_fn))
            if len(pending) >= DECODE_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _decode(path: str, exif_orientation: str, width: int, height: int, channels: int, preprocess_fn):
    """(((w, h) decoded, resized uint8 for display, preprocessed float32) or the ImageReadError, conversions).

    The resize runs on the decoded dtype (uint8, or float32 0..255 for deeper files), so 16-bit and DICOM
    precision reaches the model; only the display copy is rounded to uint8. (w, h) is the size the boxes are
    read against: the displayed size where the EXIF orientation is applied."""
    try:
        image, conversions = read_image(path, channels, exif_orientation)
    except ImageReadError as exc:
        return exc, []
    resized = resize_image(image, width, height)
    pixels = np.asarray(preprocess_fn(resized.astype(np.float32)[None]), dtype=np.float32)
    expected = (1, height, width, channels)
    if pixels.shape != expected:
        raise UsageError(f"preprocess returned shape {pixels.shape}, expected {expected}")
    return ((image.shape[1], image.shape[0]), to_uint8(resized), pixels[0]), conversions


def _clipped_boxes(sample: Sample, decoded_size: tuple[int, int], issues: list[DataIssue]):
    """Boxes clipped to the decoded image, or None (sample skipped, issue recorded)."""
    w, h = decoded_size
    if sample.image_size is not None and tuple(sample.image_size) != (w, h):
        sw, sh = sample.image_size
        turned = " (width and height swapped: see the image's EXIF orientation note and --exif-orientation)"
        issues.append(_skip(sample, f"decoded image is {w}x{h} but the annotation says {sw}x{sh}"
                                    + (turned if (sw, sh) == (h, w) else "")))
        return None
    kept = []
    for box, ann_id in zip(sample.boxes, sample.annotation_ids, strict=True):
        clipped = clip_box(box, w, h)
        if clipped is None:
            reason = f"box {format_box(box)} lies outside the {w}x{h} image"
            issues.append(DataIssue(sample.image_path, ann_id, reason, "skipped_box"))
            continue
        if clipped != tuple(box):
            reason = f"box {format_box(box)} clipped to {format_box(clipped)} ({w}x{h} image)"
            issues.append(DataIssue(sample.image_path, ann_id, reason, "clipped_box"))
        kept.append(clipped)
    if sample.boxes and not kept:
        issues.append(_skip(sample, "every box lies outside the image"))
        return None
    return kept


def _skip(sample: Sample, reason: str) -> DataIssue:
    annotation = ",".join(sample.annotation_ids) or None
    return DataIssue(sample.image_path, annotation, reason, "skipped_sample")
