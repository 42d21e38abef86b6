"""The size of a gate's MLflow record (issue 23): metrics, params, tags, artifacts per run, for the demo and for
an 80-class audit, in the default ``--mlflow-detail summary`` and in ``full``.

    .venv/bin/python benchmarks/mlflow_record.py                 # demo (4 runs) + 80 classes, ~1.5 min on 2 cores
    .venv/bin/python benchmarks/mlflow_record.py --classes 80,200 --no-demo

The demo is ``camgate demo`` (its four models on their held-out sets, 2 classes each: disc and square) logged
to a fresh SQLite store. The many-class audits are cheap: one real audit of the demo's watermark model (no
MLflow), whose per-sample table is then resampled into ``K`` classes of 30 rows and judged again under the
same policy (``validator.policy.evaluate`` and the gate's per-slice summary), then recorded like any audit.
Works against an older checkout too (``PYTHONPATH=<old checkout>``: without ``detail``, one record per K),
which is how the "before" numbers were taken.

Per run it prints the counts, the artifact files, and the files stored more than once (same bytes twice).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import _common  # noqa: F401  (quiet TensorFlow, the checkout on sys.path)
import numpy as np


def run_counts(client, run) -> dict:
    """Metrics, params, tags, artifacts and files whose bytes are stored more than once."""
    files = _artifacts(client, run.info.run_id)
    root = run.info.artifact_uri.removeprefix("file://")
    hashes = Counter()
    if os.path.isdir(root):  # a local store: compare contents
        for path in files:
            hashes[hashlib.sha256(Path(root, path).read_bytes()).hexdigest()] += 1
    return {"run": run.info.run_name, "metrics": len(run.data.metrics), "params": len(run.data.params),
            "tags": len(run.data.tags), "artifacts": len(files),
            "duplicated": sum(c - 1 for c in hashes.values() if c > 1),
            "datasets": len(run.inputs.dataset_inputs), "models": len(run.inputs.model_inputs or [])}


def _artifacts(client, run_id, path=None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(_artifacts(client, run_id, info.path) if info.is_dir else [info.path])
    return out


def many_classes(verdict, n_classes: int, per_class: int = 30, seed: int = 0):
    """``verdict`` with its per-sample rows resampled into ``n_classes`` classes and judged again."""
    from validator.gate import _show_judged_intervals, _summarize
    from validator.policy import evaluate, gate_status, load_policy

    policy = load_policy(verdict.policy["content"])
    rng = np.random.default_rng(seed)
    n = per_class * n_classes
    rows = rng.integers(0, len(verdict.table["class_name"]), n)
    table = {k: np.asarray(v)[rows] for k, v in verdict.table.items()}
    names = [f"class{i:03d}" for i in range(n_classes)]
    table["class_name"] = np.repeat(names, per_class).astype(object)
    table["sample_id"] = np.array([f"s{i:06d}" for i in range(n)], dtype=object)
    available = dict.fromkeys(names, per_class)
    summary = {"n_read": n, "n_skipped_read": 0, "n_selected": n, "n_skipped_selected": 0, "n_out_of_scope": 0,
               "n_with_box": int(np.sum(np.isfinite(table["area"]))), "available_per_class": available}
    results = evaluate(policy, table, data_summary=summary, seed=0)
    checks = [r.to_dict() for r in results]
    stats = _summarize(table, names, policy, 0, available)
    _show_judged_intervals(stats, checks)
    status = gate_status(results)
    sample = {**verdict.sample, "class_names": names, "n_explained": n, "n_selected": n}
    return dataclasses.replace(verdict, checks=checks, summary=stats, table=table, status=status,
                               exit_code={"PASS": 0, "WARN": 0, "FAIL": 1}.get(status, 4), sample=sample,
                               tracking={})


def record(verdict, uri: str, experiment: str, detail: str | None):
    import mlflow

    from validator.tracking import TrackingOptions, log_verdict

    options = TrackingOptions(uri=uri, experiment=experiment)
    if detail is not None:
        options.detail = detail
    log_verdict(verdict, options)
    client = mlflow.MlflowClient(uri)
    return run_counts(client, client.get_run(verdict.tracking["run_id"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", default="80", help="comma-separated class counts (default 80)")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--workdir", help="keep the stores here (default: a temporary folder)")
    args = parser.parse_args()
    import mlflow

    from validator.demo import HELDOUT_SEED, run_demo
    from validator.gate import audit
    from validator.tracking import TrackingOptions

    details = ["summary", "full"] if "detail" in {f.name for f in dataclasses.fields(TrackingOptions)} else [None]
    with tempfile.TemporaryDirectory(prefix="camgate-record-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{work / 'mlflow.db'}"
        rows = []
        if not args.no_demo:
            run_demo(work / "demo", tracking_uri=uri)
            client = mlflow.MlflowClient(uri)
            experiment = client.get_experiment_by_name("camgate-demo")
            rows += [("demo", details[0] or "-", run_counts(client, client.get_run(r.info.run_id)))
                     for r in client.search_runs([experiment.experiment_id])]
        from validator.datasets.controls import train_control
        from validator.datasets.synthetic import write_dataset

        data = work / "demo" / "data" / "watermark" / "annotations.json"
        if not data.exists():
            write_dataset(data.parent, 200, seed=HELDOUT_SEED, cue="watermark")
        cache = os.environ.get("CAMGATE_CACHE") or work / "models"
        base = audit(str(train_control("watermark", seed=0, cache_dir=cache).path), str(data), out=work / "base")
        for k in [int(c) for c in args.classes.split(",") if c]:
            for detail in details:
                verdict = many_classes(base, k)
                verdict.out_dir = work / "base"
                rows.append((f"{k} classes", detail or "-", record(verdict, uri, f"classes-{k}", detail)))
    print(f"\nmlflow {mlflow.__version__}, python {sys.version.split()[0]}")
    print(f"{'audit':11} {'detail':8} {'metrics':>7} {'params':>6} {'tags':>4} {'files':>5} {'dup':>4} "
          f"{'datasets':>8} {'models':>6}  run")
    for audit_name, detail, c in rows:
        print(f"{audit_name:11} {detail:8} {c['metrics']:7d} {c['params']:6d} {c['tags']:4d} {c['artifacts']:5d} "
              f"{c['duplicated']:4d} {c['datasets']:8d} {c['models']:6d}  {c['run']}")


if __name__ == "__main__":
    main()
