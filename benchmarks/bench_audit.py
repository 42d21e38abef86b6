"""The audit end to end: wall time by stage, throughput and peak memory against the number of samples.

    .venv/bin/python benchmarks/bench_audit.py                   # N = 200, 1000, 2000 (~2.5 min on 2 cores)
    .venv/bin/python benchmarks/bench_audit.py --quick           # N = 100, 400, one repetition
    .venv/bin/python benchmarks/bench_audit.py --sizes 200,5000 --repeats 2 --json out.json

A synthetic COCO set (64 px, two shape classes) is written once into a temp folder, with a small CNN saved
as ``model.keras`` (random weights: the verdict does not matter here, the work does). Each audit runs in a
FRESH Python process (``validator.gate.audit``, the code behind ``camgate audit``), so its peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that N alone; the default policy with ``--max-samples N``.
Tracking: off (``tracking=None``) and, when ``validator.tracking.TrackingOptions`` exists, an SQLite MLflow
store in the temp folder. After its audit, the same process times the bare ``Explainer`` (gradcam, same
model and batch size, images already in memory) for the "audit >= 0.7x gradcam" ratio: paired, same process.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import describe_machine, machine, median, table, vm_hwm_kib, write_json

SIZES = (200, 1000, 2000)
QUICK_SIZES = (100, 400)
STAGES = ("load", "data", "explain", "metrics", "stats", "overlays", "reports", "mlflow")
BATCH_SIZE = 32


def tracking_available() -> str | None:
    """None when validator.tracking.TrackingOptions imports, else why not."""
    try:
        from validator.tracking import TrackingOptions  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------------------------------------- child ---


def child(args) -> None:
    import resource

    started = time.perf_counter()
    import validator._tf  # noqa: F401 - TF, as camgate imports it; timed apart: a Python caller has paid it
    from validator.gate import audit

    import_seconds = time.perf_counter() - started
    imported_rss = vm_hwm_kib()
    tracking = None
    if args.tracking_uri:
        from validator.tracking import TrackingOptions

        tracking = TrackingOptions(uri=args.tracking_uri, experiment="camgate-bench", run_name=f"bench-n{args.n}")
    started = time.perf_counter()
    verdict = audit(args.model_path, args.data, out=args.out, max_samples=args.n, batch_size=args.batch_size,
                    tracking=tracking)
    wall = time.perf_counter() - started
    peak_rss = vm_hwm_kib()  # before the gradcam timing below
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "n": args.n,
        "tracking": bool(args.tracking_uri),
        "status": verdict.status,
        "error": verdict.error,
        "n_explained": verdict.sample.get("n_explained", 0),
        "wall_seconds": wall,
        "verdict_wall_seconds": verdict.wall_seconds,
        "timings": verdict.timings,
        "import_seconds": import_seconds,
        "peak_rss_mib": peak_rss / 1024,
        "ru_maxrss_mib": max_rss / 1024,
        "rss_after_import_mib": imported_rss / 1024,
    }
    result["gradcam_images_per_s"] = _gradcam_rate(args.model_path, args.batch_size, args.gradcam) if args.gradcam else None
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def _gradcam_rate(model_path: str, batch_size: int, n_images: int, repeats: int = 3) -> float:
    """Bare Explainer throughput (gradcam) on images already in memory: the audit's compute ceiling."""
    import numpy as np

    from validator.explain import Explainer

    explainer = Explainer(model_path, method="gradcam", batch_size=batch_size)
    height, width = explainer.loaded.input_size
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (n_images, height, width, 3)).astype(np.float32)
    class_ids = rng.integers(0, explainer.loaded.num_classes, n_images)
    explainer.explain(images[:batch_size], class_ids[:batch_size])  # warm-up (tracing)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        explainer.explain(images, class_ids)
        rates.append(n_images / (time.perf_counter() - start))
    return median(rates)


# --------------------------------------------------------------------------------------------- parent ---


def prepare(args) -> None:
    """Child: write the data set and the model, describe the machine (TensorFlow never enters the parent)."""
    from validator.datasets.controls import build_small_cnn
    from validator.datasets.synthetic import write_dataset

    root = Path(args.out)
    if args.model_kind == "resnet50":  # the shape the explain goals are set on (slow: for small N)
        from validator._tf import keras

        size, model = 224, keras.applications.ResNet50(weights=None, classes=2)
    else:
        size, model = 64, build_small_cnn(image_size=64, n_classes=2)
    written = write_dataset(root / "data", args.n, seed=0, image_size=size, formats=("coco",))
    model_path = root / "model.keras"
    model.save(model_path)
    result = {"data": str(written.coco_path), "model": str(model_path), "machine": machine(),
              "no_tracking": tracking_available()}
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def _child_result(command: list[str], what: str) -> dict:
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def run_child(n: int, data: str, model: str, out: Path, tracking_uri: str | None, batch_size: int,
              gradcam: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n), "--data", str(data),
               "--model-path", str(model), "--out", str(out), "--batch-size", str(batch_size)]
    if tracking_uri:
        command += ["--tracking-uri", tracking_uri]
    if gradcam:
        command += ["--gradcam", str(gradcam)]
    return _child_result(command, f"audit child for N={n}")


def summarise(runs: list[dict]) -> dict:
    """Median over repetitions of every number of one (N, tracking) configuration."""
    first = runs[0]
    timings = {s: median([r["timings"].get(s, 0.0) for r in runs]) for s in STAGES}
    # wall time no stage timer covers (Explainer construction, building the verdict, ...)
    timings["untimed"] = median([r["wall_seconds"] - sum(r["timings"].values()) for r in runs])
    wall = median([r["wall_seconds"] for r in runs])
    n = first["n_explained"]
    gradcam = median([r["gradcam_images_per_s"] for r in runs if r["gradcam_images_per_s"]])
    throughput = median([r["n_explained"] / r["wall_seconds"] for r in runs])
    streaming = median([r["n_explained"] / max(1e-9, sum(r["timings"].get(s, 0.0) for s in ("data", "explain", "metrics")))
                        for r in runs])
    ratios = [r["n_explained"] / r["wall_seconds"] / r["gradcam_images_per_s"] for r in runs if r["gradcam_images_per_s"]]
    return {
        "n": first["n"], "tracking": first["tracking"], "status": first["status"], "error": first["error"],
        "n_explained": n, "repeats": len(runs), "wall_seconds": wall, "timings": timings,
        "audit_images_per_s": throughput, "streaming_images_per_s": streaming,
        "gradcam_images_per_s": gradcam, "audit_over_gradcam": median(ratios) if ratios else float("nan"),
        "import_seconds": median([r["import_seconds"] for r in runs]),
        "peak_rss_mib": median([r["peak_rss_mib"] for r in runs]),
        "ru_maxrss_mib": median([r["ru_maxrss_mib"] for r in runs]),
        "rss_after_import_mib": median([r["rss_after_import_mib"] for r in runs]),
        "runs": runs,
    }


def render(summaries: list[dict]) -> str:
    rows = []
    for s in summaries:
        t = s["timings"]
        rows.append([s["n"], "sqlite" if s["tracking"] else "off", s["n_explained"], s["import_seconds"],
                     s["wall_seconds"], *(t[k] for k in (*STAGES, "untimed")), s["audit_images_per_s"],
                     s["streaming_images_per_s"], s["gradcam_images_per_s"], s["audit_over_gradcam"],
                     s["streaming_images_per_s"] / s["gradcam_images_per_s"], s["peak_rss_mib"]])
    headers = ["N", "mlflow", "explained", "TF import s", "audit wall s", *(f"{k} s" for k in (*STAGES, "untimed")),
               "audit img/s", "stream img/s", "gradcam img/s", "audit/gradcam", "stream/gradcam", "peak RSS MiB"]
    lines = ["Audit end to end (median of repetitions; stages from verdict.timings, seconds; 'audit wall' is",
             "audit() itself, after importing TF (the 'TF import' column, which the CLI pays on top); 'stream' =",
             "data + explain + metrics, the per-sample loop; peak RSS = VmHWM of the fresh process):", "",
             table(headers, rows), ""]
    for mode in (False, True):
        by_n = {s["n"]: s for s in summaries if s["tracking"] == mode}
        if len(by_n) >= 2:
            small, large = min(by_n), max(by_n)
            ratio = by_n[large]["peak_rss_mib"] / by_n[small]["peak_rss_mib"]
            lines.append(f"peak RSS N={large} / N={small} (mlflow {'sqlite' if mode else 'off'}): {ratio:.3f}"
                         f" ({by_n[large]['peak_rss_mib']:.0f} / {by_n[small]['peak_rss_mib']:.0f} MiB;"
                         f" TF+camgate import alone: {by_n[small]['rss_after_import_mib']:.0f} MiB)")
    return "\n".join(lines)


def goals(summaries: list[dict]) -> list[str]:
    lines = []
    off = {s["n"]: s for s in summaries if not s["tracking"]}
    if off:
        large = off[max(off)]
        r = large["audit_over_gradcam"]
        lines.append(f"goal audit >= 0.7x gradcam (N={large['n']}, mlflow off): {r:.2f} "
                     f"({'met' if r >= 0.7 else 'MISSED'})")
        if len(off) >= 2:
            ratio = large["peak_rss_mib"] / off[min(off)]["peak_rss_mib"]
            lines.append(f"goal peak RSS N={max(off)} <= 1.2x N={min(off)}: {ratio:.3f} "
                         f"({'met' if ratio <= 1.2 else 'MISSED'})")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES}, one repetition")
    parser.add_argument("--sizes", help=f"comma-separated N (default {','.join(map(str, SIZES))})")
    parser.add_argument("--repeats", type=int, help="fresh-process audits per configuration (default 2, quick 1)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--model", dest="model_kind", choices=("small_cnn", "resnet50"), default="small_cnn",
                        help="small_cnn at 64 px (default) or ResNet50 at 224 px (compute-bound; use small N)")
    parser.add_argument("--no-mlflow", action="store_true", help="only tracking=None")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp folder)")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement as JSON")
    # the child process (one audit) -- internal
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--tracking-uri", help=argparse.SUPPRESS)
    parser.add_argument("--gradcam", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    if args.prepare:
        prepare(args)
        return 0

    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if args.quick else SIZES)
    repeats = args.repeats or (1 if args.quick else 2)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="camgate-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        prepared = _child_result([sys.executable, str(Path(__file__).resolve()), "--prepare", "--out", str(root),
                                  "--n", str(max(sizes)), "--model", args.model_kind], "preparing the data set")
        gradcam_images = 64 if args.model_kind == "resnet50" else 1024
        data, model, info, no_tracking = (prepared[k] for k in ("data", "model", "machine", "no_tracking"))
        modes = [False] if (args.no_mlflow or no_tracking) else [False, True]
        log(f"wrote {max(sizes)} samples and the model under {root} in {time.perf_counter() - started:.1f}s")
        runs: dict[tuple[int, bool], list[dict]] = {}
        for rep in range(repeats):  # interleaved: every configuration once per round
            for n in sizes:
                for mode in modes:
                    uri = f"sqlite:///{root / 'mlflow.db'}" if mode else None
                    t0 = time.perf_counter()
                    result = run_child(n, data, model, root / f"out-{n}-{int(mode)}-{rep}", uri, args.batch_size,
                                       gradcam=0 if mode else gradcam_images)
                    runs.setdefault((n, mode), []).append(result)
                    log(f"round {rep + 1}/{repeats} N={n} mlflow={'sqlite' if mode else 'off'}: "
                        f"{result['status']} in {time.perf_counter() - t0:.1f}s (audit {result['wall_seconds']:.1f}s, "
                        f"peak RSS {result['peak_rss_mib']:.0f} MiB)" + (f" ERROR {result['error']}" if result["error"] else ""))
        summaries = [summarise(runs[key]) for key in sorted(runs)]
        # The gradcam ceiling is measured in the tracking-off children; share it with the MLflow rows.
        for s in summaries:
            if s["tracking"]:
                twin = next(t for t in summaries if t["n"] == s["n"] and not t["tracking"])
                s["gradcam_images_per_s"] = twin["gradcam_images_per_s"]
                s["audit_over_gradcam"] = s["audit_images_per_s"] / twin["gradcam_images_per_s"]
    elapsed = time.perf_counter() - started

    command = "python benchmarks/bench_audit.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"camgate audit cost curve ({args.model_kind}) — {describe_machine(info)}")
    print(f"command: {command.strip()}   (ran {elapsed:.0f}s)\n")
    print(render(summaries))
    if no_tracking and not args.no_mlflow:
        print(f"MLflow stage not measured: validator.tracking.TrackingOptions unavailable ({no_tracking})")
    for line in goals(summaries):
        print(line)
    if args.json:
        write_json(args.json, {"machine": info, "command": command, "seconds": elapsed, "results": summaries})
    return 0 if all(not math.isnan(s["wall_seconds"]) for s in summaries) else 1


if __name__ == "__main__":
    raise SystemExit(main())
