"""``--backend ray``: the shards of :mod:`validator.shard` explained on Ray actors, judged on the driver.

Ray Data carries the shards: ``from_items`` of the shard numbers, ``map_batches`` with :class:`ShardWorker`,
a stateful actor class that loads the model once per actor (``num_gpus`` each when asked) and explains one
shard per call (``batch_size=1``: a shard is already a fixed number of whole batches). Each call returns the
shard's ``shard.npz`` bytes; the driver merges them in chunk order, so the verdict is the single-process one.
The driver reads the annotations and draws the sample (the manifest formats are camgate's own readers); the
actors read the images themselves, so the images must be at the same paths on every node (one machine or a
shared file system), as the model file must.
"""

from __future__ import annotations

import time

from validator.errors import UsageError

#: Shards per actor: more than one evens out slow shards; each shard repeats the sanity cascade's set-up.
SHARDS_PER_WORKER = 1


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part used)
    except ImportError as exc:
        raise UsageError("--backend ray needs Ray: pip install 'camgate[ray]'") from exc
    return ray


class ShardWorker:
    """One Ray actor: the model (and baseline) loaded once, then one shard explained per call."""

    def __init__(self, model, baseline, trust: bool, tracking, samples, class_names, settings, regions, probes,
                 baseline_probes, seed: int, count: int, context: dict):
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from validator.mlflow_models import registry_context
        from validator.model import load_model

        with registry_context(tracking):
            self.loaded = load_model(model, trust=trust)
            self.baseline = load_model(baseline, trust=trust) if baseline is not None else None
        self.samples, self.class_names, self.settings = samples, class_names, settings
        self.regions, self.probes, self.seed, self.count, self.context = regions, probes, seed, count, context
        self.baseline_probes = baseline_probes

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from validator.scoring import explain_set
        from validator.shard import ShardSpec, make_partial

        out = []
        for index in batch["shard"]:
            spec = ShardSpec(int(index), self.count)
            runs = {"main": explain_set(self.loaded, self.samples, self.class_names, self.settings,
                                        regions=self.regions, probes=self.probes, seed=self.seed, shard=spec,
                                        partial=True)}
            if self.baseline is not None:
                runs["baseline"] = explain_set(self.baseline, self.samples, self.class_names, self.settings,
                                               regions=self.regions, probes=self.baseline_probes, seed=self.seed,
                                               shard=spec, partial=True)
            out.append(make_partial(spec, self.context, runs).to_bytes())
        return {"shard": np.asarray(batch["shard"], dtype=np.int64), "partial": np.array(out, dtype=object)}


def run_on_ray(prep, verdict, opts, timer) -> list:
    """Every shard's :class:`~validator.shard.Partial`, explained on Ray (a local cluster unless
    ``opts.ray_address``; one started here is shut down here)."""
    from validator.shard import Partial, chunk_range

    source = prep.context["source"]["model"]
    if source is None:
        raise UsageError("--backend ray loads the model on each actor: pass a model path or URI, not a model object")
    ray = _ray()
    started_here = not ray.is_initialized()
    if started_here:
        if opts.ray_address:
            ray.init(address=opts.ray_address, log_to_driver=False)
        else:  # a private local cluster, on the loopback interface only
            ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    try:
        _quiet(ray)
        since = time.perf_counter()
        resources = ray.cluster_resources()
        gpus = float(opts.gpus_per_worker or 0.0)
        if opts.workers is not None:
            workers = int(opts.workers)
        elif gpus > 0:
            workers = max(1, int(resources.get("GPU", 0) // gpus))
        else:
            workers = max(1, int(resources.get("CPU", 1)))
        chunks = chunk_range(len(prep.samples), prep.settings["batch_size"], None)[1]
        count = max(1, min(chunks, workers * SHARDS_PER_WORKER))
        workers = min(workers, count)
        baseline = str(opts.baseline) if prep.baseline is not None else None
        kwargs = {"model": source, "baseline": baseline, "trust": opts.trust_model, "tracking": opts.tracking,
                  "samples": prep.samples, "class_names": list(prep.dataset.class_names), "settings": prep.settings,
                  "regions": prep.policy.regions, "probes": prep.policy.probes,
                  "baseline_probes": prep.policy.baseline_probes, "seed": prep.seed, "count": count,
                  "context": prep.context}
        dataset = ray.data.from_items([{"shard": i} for i in range(count)], override_num_blocks=count)
        results = dataset.map_batches(ShardWorker, fn_constructor_kwargs=kwargs, batch_size=1,
                                      compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                                      num_gpus=gpus or None, batch_format="numpy")
        partials, done = [], 0
        for row in results.iter_rows():
            partial = Partial.from_bytes(bytes(row["partial"]), f"Ray shard {int(row['shard']) + 1}/{count}")
            partials.append(partial)
            done += partial.meta["runs"]["main"]["rows"]
            if opts.progress is not None:
                opts.progress(done, len(prep.samples))
        timer.add("ray", since)
        if len(partials) != count:
            raise UsageError(f"Ray returned {len(partials)} of {count} shards")
        verdict.shards = {"backend": "ray", "workers": workers, "count": count}
        return partials
    finally:
        if started_here:
            ray.shutdown()


def _quiet(ray) -> None:
    """The gate prints its own progress and verdict; Ray Data's per-10-s progress log would drown them."""
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    for name in ("ray.data", "ray"):
        logging.getLogger(name).setLevel(logging.WARNING)
