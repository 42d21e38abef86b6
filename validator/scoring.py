"""Explain a set of samples and score every map: the per-sample table the policy judges.

Streams batches (data -> model -> explain -> metrics); only the table and a running mean map per class (the
heat atlas) grow with the set, never images or maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


class _NoTimer:
    def add(self, stage: str, since: float) -> float:
        return time.perf_counter()


@dataclass
class SetRun:
    table: dict
    n_rows: int
    settings: dict
    issues: list
    atlas: dict  # class name (or "overall") -> mean display-normalised map
    explainer: object = None  # reused for the overlays: a second Explainer would trace its graph again


def explain_set(loaded, samples, class_names, settings: dict, *, regions=None, timer=None,
                progress: Callable[[int, int], None] | None = None) -> SetRun:
    """Stream the samples through the explainer; keep only the per-sample table and the running atlas.

    ``settings``: method, layer, batch_size, preprocess. ``timer.add(stage, since) -> now`` collects the time
    spent per stage (data, explain, metrics) when given."""
    timer = timer or _NoTimer()
    from validator.data import iter_batches
    from validator.explain import Explainer
    from validator.metrics import score_maps

    explainer = Explainer(loaded, method=settings["method"], layer=settings["layer"], batch_size=settings["batch_size"])
    issues: list = []
    chunks: list[dict] = []
    atlas_sum: dict[str, np.ndarray] = {}
    atlas_n: dict[str, int] = {}
    done = 0
    since = time.perf_counter()
    for batch in iter_batches(
        samples,
        input_size=loaded.input_size,
        channels=loaded.input_channels,
        batch_size=settings["batch_size"],
        preprocess=settings["preprocess"],
        issues=issues,
    ):
        since = timer.add("data", since)
        batch_samples = [samples[i] for i in batch.indices]
        # A sample without a label is explained for class 0 only to keep the batch whole; it has no box,
        # so its box metrics are NaN, and it counts only where a label exists.
        class_ids = np.array([s.class_id if s.class_id is not None else 0 for s in batch_samples])
        result = explainer.explain(batch.images, class_ids)
        since = timer.add("explain", since)
        scores = score_maps(result.maps, batch.boxes, regions=regions or None)
        for i, s in enumerate(batch_samples):
            if s.class_id is None:
                for key in scores:
                    scores[key][i] = np.nan
        labelled = np.array([s.class_id is not None for s in batch_samples])
        chunk = {
            "sample_id": np.array([s.sample_id for s in batch_samples], dtype=object),
            "image": np.array([s.image_path for s in batch_samples], dtype=object),
            "class_id": np.array([s.class_id if s.class_id is not None else -1 for s in batch_samples]),
            "class_name": np.array([s.class_name for s in batch_samples], dtype=object),
            "predicted": result.predicted.astype(int),
            "predicted_name": np.array([_name(class_names, p) for p in result.predicted], dtype=object),
            "confidence": result.confidence.astype(float),
            "correct": np.where(labelled, (result.predicted == class_ids).astype(float), np.nan),
            **scores,
        }
        chunk["dead"] = np.where(labelled, result.dead.astype(float), np.nan)
        chunks.append(chunk)
        _accumulate_atlas(atlas_sum, atlas_n, result, batch_samples)
        since = timer.add("metrics", since)
        done += len(batch.indices)
        if progress is not None:
            progress(done, len(samples))
    table = _concat(chunks)
    atlas = {name: atlas_sum[name] / atlas_n[name] for name in atlas_sum}
    return SetRun(table, len(table["sample_id"]), explainer.settings | {"preprocess": settings["preprocess"]}, issues, atlas,
                   explainer)


def _name(class_names, index) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def _accumulate_atlas(sums: dict, counts: dict, result, batch_samples) -> None:
    peaks = result.maps.reshape(len(result.maps), -1).max(axis=1)
    for i, s in enumerate(batch_samples):
        if result.dead[i] or s.class_id is None:
            continue
        normalised = result.maps[i] / peaks[i]  # display normalisation: the atlas shows WHERE, not how much
        for key in ("overall", s.class_name):
            if key not in sums:
                sums[key] = np.zeros_like(normalised, dtype=np.float64)
                counts[key] = 0
            sums[key] += normalised
            counts[key] += 1


def _concat(chunks: list[dict]) -> dict:
    if not chunks:
        from validator.errors import DataError

        raise DataError("no sample could be read: every image was skipped (see the data issues in the report)")
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
