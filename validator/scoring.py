"""Explain a set of samples and score every map: the per-sample table the policy judges.

Streams batches (data -> model -> explain -> metrics); only the table, a running mean map per class (the
heat atlas) and a grid x grid copy of each map (for the SpRAy clusters) grow with the set, never images or
full maps. The probes (validator.probes) run on the same batches.
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
    atlas: dict  # class name (or "overall") -> mean of the maps normalised to sum 1, on the discovery grid
    explainer: object = None  # reused for the overlays: a second Explainer would trace its graph again
    probes: dict | None = None  # what the probes ran on and cost (validator.probes.runner)
    discovery: dict | None = None  # atlas region shares and SpRAy clusters per class
    cluster_maps: dict | None = None  # (class, cluster) -> mean map of each cluster flagged off the object
    object_maps: dict | None = None  # atlas key -> mean object-box coverage on the grid (drawn beside the atlas)
    partial: dict | None = None  # a shard's state for the set-level steps (validator.shard), else None


def explain_set(loaded, samples, class_names, settings: dict, *, regions=None, probes=None, seed: int = 0,
                timer=None, progress: Callable[[int, int], None] | None = None, shard=None,
                partial: bool = False) -> SetRun:
    """Stream the samples through the explainer and the probes; keep the per-sample table and the atlas.

    ``settings``: method, layer, batch_size, preprocess. ``probes``: a ``validator.policy.model.Probes`` (None:
    no probes, no discovery). ``timer.add(stage, since) -> now`` collects the time spent per stage (data,
    explain, metrics, probes, discovery) when given.

    Batches are whole chunks of the seeded order (``batch_size`` samples each, see ``iter_batches(aligned=True)``)
    and every seed is per chunk, so a row depends only on its chunk. ``shard`` (a
    :class:`validator.shard.ShardSpec`) explains only that shard's chunks; ``partial`` keeps what the set-level
    steps need (``SetRun.partial``) instead of running them, for :func:`validator.shard.merge_partials`."""
    timer = timer or _NoTimer()
    from validator.data import iter_batches
    from validator.discovery.discover import DiscoveryCollector
    from validator.explain.engine import cached_explainer
    from validator.probes.runner import SANITY_COLUMN, ProbeRunner
    from validator.shard import chunk_range

    samples = mixed_order(samples, seed)
    first_chunk, stop_chunk = chunk_range(len(samples), settings["batch_size"], shard)
    offset = first_chunk * settings["batch_size"]
    mine = samples[offset: stop_chunk * settings["batch_size"]]
    # one traced graph per model and settings: a worker that explains several shards traces once
    explainer = cached_explainer(loaded, method=settings["method"], layer=settings["layer"],
                                 batch_size=settings["batch_size"], options=settings.get("options"))
    runner = None
    if probes is not None:
        runner = ProbeRunner(loaded, samples, probes, seed=seed, method=explainer.method.name,
                             layer=explainer.target.name if explainer.target is not None else None,
                             batch_size=settings["batch_size"], options=explainer.options,
                             preprocess=settings["preprocess"])
    collector = DiscoveryCollector(probes.discovery_grid if probes else 16, probes.max_clusters if probes else 8, seed)
    device = None
    if settings.get("score_on", "host") != "host":
        from validator.scoring_device import DeviceBatchScorer, resolve

        if resolve(settings["score_on"]) == "device":
            device = DeviceBatchScorer(*loaded.input_size, regions=regions or None, grid=collector.grid)
    issues: list = []
    chunks: list[dict] = []
    done = 0
    since = time.perf_counter()
    for batch in iter_batches(
        mine,
        input_size=loaded.input_size,
        channels=loaded.input_channels,
        batch_size=settings["batch_size"],
        preprocess=settings["preprocess"],
        issues=issues,
        aligned=True,
    ):
        batch.indices, batch.chunk = batch.indices + offset, batch.chunk + first_chunk  # into the whole set
        since = timer.add("data", since)
        batch_samples = [samples[i] for i in batch.indices]
        # A sample without a label is explained for class 0 only to keep the batch whole; it has no box,
        # so its box metrics are NaN, and it counts only where a label exists.
        class_ids = np.array([s.class_id if s.class_id is not None else 0 for s in batch_samples])
        small = None
        if device is not None:  # explained and scored on the accelerator: only numbers come back
            result, scores, small = device.score(explainer, batch.images, class_ids, batch.boxes)
            since = timer.add("explain", since)
            scores["object_area"] = scores["area"].copy()  # boxes only: the region is the boxes
            if any(m is not None for m in batch.masks):
                # the device scorer knows rectangles only: a batch with masks is scored on the host (same rows)
                scores = _host_scores(result.maps[np.arange(len(result.maps))], batch, regions)
        else:
            result = explainer.explain(batch.images, class_ids)
            since = timer.add("explain", since)
            scores = _host_scores(result.maps, batch, regions)
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
            # per-label detection for a multi-label head (p >= 0.5), the argmax otherwise
            "correct": np.where(labelled, loaded.detected(result.probabilities, class_ids).astype(float), np.nan),
            "region": batch.regions,  # what the object region is: mask | box (| mask+box | none)
            **scores,
        }
        chunk["dead"] = np.where(labelled, result.dead.astype(float), np.nan)
        names, ids = [s.class_name for s in batch_samples], [s.sample_id for s in batch_samples]
        if small is not None:
            collector.add_grid(small, batch.boxes, *loaded.input_size, names, ids, labelled & ~result.dead,
                               object_masks=batch.masks)
        else:  # host maps (a DeviceMaps comes back whole only where the grid does not divide the map)
            maps = result.maps if device is None else result.maps[np.arange(len(result.maps))]
            collector.add(maps, batch.boxes, names, ids, labelled & ~result.dead, object_masks=batch.masks)
        since = timer.add("metrics", since)
        if runner is not None:
            chunk.update(runner.on_batch(batch, class_ids, labelled, result))
            since = timer.add("probes", since)
        chunks.append(chunk)
        done += len(batch.indices)
        if progress is not None:
            progress(done, len(mine))
    table = _concat(chunks, allow_empty=partial)
    n_rows = len(table.get("sample_id", ()))
    settings_out = explainer.settings | {"preprocess": settings["preprocess"],
                                         "score_on": "device" if device is not None else "host"}
    if partial:
        state = {"collector": collector.state(), "sanity": runner.sanity_state() if runner is not None else None}
        return SetRun(table, n_rows, settings_out, issues, {}, explainer, partial=state)
    probe_summary = None
    if runner is not None:
        since = time.perf_counter()
        table[SANITY_COLUMN], probe_summary = runner.finish(n_rows)
        timer.add("sanity", since)
    since = time.perf_counter()
    atlas, discovery, table["spray_cluster"] = collector.finish()
    timer.add("discovery", since)
    return SetRun(table, n_rows, settings_out, issues, atlas, explainer, probe_summary, discovery,
                  collector.flagged_maps, object_maps=collector.object_maps)


def _host_scores(maps, batch, regions) -> dict:
    from validator.discovery.atlas import centre_heat
    from validator.metrics import score_maps

    scores = score_maps(maps, batch.boxes, regions=regions or None, masks=batch.masks)
    scores["centre_heat"] = centre_heat(maps)
    scores["object_area"] = scores.pop("object_area")  # last, where the device path adds it: one column order
    return scores


def mixed_order(samples, seed: int) -> list:
    """The samples with their images in a seeded random order, samples of one image kept adjacent (decoded once).

    Readers list records by file name, which for class-folder layouts is by class: a batch of one class has
    no donor of another class for the Mixed-Rand probe, and a per-batch anything would see one class only."""
    groups: dict[object, list] = {}
    for s in samples:
        groups.setdefault(s.image_path, []).append(s)
    order = np.random.default_rng(seed).permutation(len(groups))
    keys = list(groups)
    return [s for i in order for s in groups[keys[i]]]


def _name(class_names, index) -> str:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def _concat(chunks: list[dict], allow_empty: bool = False) -> dict:
    if not chunks and allow_empty:  # a shard whose every image was skipped: the merge decides
        return {}
    if not chunks:
        from validator.errors import DataError

        raise DataError("no sample could be read: every image was skipped (see the data issues in the report)")
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
