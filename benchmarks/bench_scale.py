"""Scale (issue 14): audit throughput and peak memory against N, the Ray backend, shards + merge.

    .venv/bin/python benchmarks/bench_scale.py                  # N = 1k, 10k, 50k within a 25-min budget
    .venv/bin/python benchmarks/bench_scale.py --quick          # N = 200, 1000, fewer variants
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000,50000 --probes-on-max 0 --ray-workers "" --no-shards

On 2 shared CPU cores: the full run took 12 min for 1k and 10k (both policies) and the Ray/shard rows; the
50k probes-off row, estimated at 14 min, did not fit the 25-min budget (``--budget-s``) and was skipped.
``--quick`` took 12.5 min with the cores loaded by other jobs. Writing the 50,000 images (2.6 GB of PNG)
took 16 min with 2 processes, once.

Data: synthetic two-class COCO sets at 224 x 224 px (``validator.datasets.synthetic.write_dataset``), written
once in chunks of 1000 images (seed = chunk number) under ``--workdir`` (default ``.bench-scale/``) and kept
there: a rerun skips the generation. The set of N images is ``coco-N.json``, the first N images of the
chunks (distinct images, not repeats). Model: ``build_small_cnn(image_size=224, n_classes=2)`` (random
weights, seed 0, last_conv 56 x 56 x 32): the verdict does not matter, the work does; the preparation checks
that its Grad-CAM maps are alive on the set's images.

Each audit runs in a FRESH Python process (``validator.gate.audit``, the code behind ``camgate audit``,
``max_samples=N``), reaped with ``os.wait4`` so its ``ru_maxrss`` belongs to that process alone; the child
also reports its VmHWM right after the audit (before the bare-explainer timing below). Policies:

- ``default``: the shipped default policy, probes on (counterfactual, faithfulness on 32, sanity on 32 images,
  discovery);
- ``probes-off``: the default with ``probes: {counterfactual: false, faithfulness: {samples: 0}, sanity:
  {samples: 0}}`` and its four probe checks removed (discovery, the 16 x 16 atlas, has no off switch).

After its audit, the same process times the bare ``Explainer`` (gradcam, same model and batch size, the set's
first images decoded into memory) for the ratio audit / bare explainer. The Ray rows run ``backend="ray"``
with 1 and 2 workers on one set (1000 images; policy probes-off unless ``--ray-policy default``) beside a
local audit of it; the shard rows run ``shard="1/2"`` and ``"2/2"``
one after the other (fresh processes, as two CI jobs would) and then ``merge``. Every distributed verdict's
checks are compared with the local one's. Runs go in order of cost; before each, its time is estimated from
the throughput measured so far and the run is skipped (and listed as not run) when it would overrun
``--budget-s``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _common import describe_machine, table, vm_hwm_kib, write_json

CHUNK = 1000
IMAGE_SIZE = 224
SIZES = (1000, 10000, 50000)
QUICK_SIZES = (200, 1000)
BATCH_SIZE = 32
STAGES = ("load", "data", "explain", "metrics", "probes", "sanity", "discovery", "stats", "overlays", "reports",
          "ray", "merge", "shard")
PROBE_METRICS = ("bg_only_skill", "bg_gap", "sanity_spearman", "faithfulness_gain")
HERE = Path(__file__).resolve()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ data ---


def _write_chunk(args: tuple[str, int]) -> str:
    from validator.datasets.synthetic import write_dataset

    folder, seed = args
    write_dataset(folder, CHUNK, seed=seed, image_size=IMAGE_SIZE, formats=("coco",))
    return folder


def ensure_data(workdir: Path, sizes: list[int], jobs: int) -> dict[int, Path]:
    """coco-N.json for every N, the chunks they need written first (a chunk is done once its
    annotations.json exists: write_arrays writes it after the images)."""
    chunks = -(-max(sizes) // CHUNK)
    todo = [(str(workdir / "chunks" / f"c{k:03d}"), k) for k in range(chunks)
            if not (workdir / "chunks" / f"c{k:03d}" / "annotations.json").exists()]
    if todo:
        started = time.perf_counter()
        log(f"writing {len(todo)} chunk(s) of {CHUNK} images at {IMAGE_SIZE} px under {workdir}/chunks ...")
        with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
            for i, folder in enumerate(pool.map(_write_chunk, todo), 1):
                log(f"  {i}/{len(todo)} {folder} ({time.perf_counter() - started:.0f}s)")
    sets = {}
    for n in sizes:
        path = workdir / f"coco-{n}.json"
        sets[n] = path
        if path.exists():
            continue
        images, annotations, categories = [], [], None
        for k in range(-(-n // CHUNK)):
            doc = json.loads((workdir / "chunks" / f"c{k:03d}" / "annotations.json").read_text())
            categories = doc["categories"]
            by_image = {a["image_id"]: a for a in doc["annotations"]}
            for entry in doc["images"]:
                if len(images) == n:
                    break
                new_id = len(images) + 1
                images.append({**entry, "id": new_id, "file_name": f"chunks/c{k:03d}/{entry['file_name']}"})
                annotations.append({**by_image[entry["id"]], "id": new_id, "image_id": new_id})
        document = {"info": {"description": f"camgate bench_scale: first {n} images of the chunks"},
                    "images": images, "annotations": annotations, "categories": categories}
        path.write_text(json.dumps(document))
    return sets


def write_probes_off_policy(workdir: Path) -> Path:
    import yaml

    from validator.policy import default_policy_path

    raw = yaml.safe_load(Path(default_policy_path()).read_text())
    raw["name"] = "default-probes-off"
    raw["probes"] = {"counterfactual": False, "faithfulness": {"samples": 0}, "sanity": {"samples": 0}}
    raw["checks"] = [c for c in raw["checks"] if c["metric"] not in PROBE_METRICS]
    path = workdir / "policy-probes-off.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------- children ---


def prepare_child(args) -> None:
    """The model (saved once), a dead-map check on the set's images, the machine."""
    import numpy as np
    from _common import machine

    from validator._tf import keras
    from validator.datasets.controls import build_small_cnn
    from validator.explain import Explainer

    model_path = Path(args.model_path)
    if not model_path.exists():
        keras.utils.set_random_seed(0)
        build_small_cnn(image_size=IMAGE_SIZE, n_classes=2).save(model_path)
    images, labels = _decode(args.data, 64)
    explanation = Explainer(str(model_path), method="gradcam", batch_size=BATCH_SIZE).explain(images, labels)
    maps = explanation.maps.reshape(len(images), -1)
    result = {"machine": machine(), "n_checked": len(images), "dead": int(np.sum(explanation.dead)),
              # std / mean of each map: 0 for a flat (uniform) map, which would make the scores trivial
              "map_cv_median": float(np.median(maps.std(axis=1) / np.maximum(maps.mean(axis=1), 1e-12))),
              "predicted_share_class0": float(np.mean(explanation.predicted == 0))}
    print("BENCH_RESULT " + json.dumps(result), flush=True)


def _decode(coco_json: str, n: int):
    """The first n images of the set, RGB float32 0..255 (what the audit feeds the model: preprocess none)."""
    import cv2
    import numpy as np

    doc = json.loads(Path(coco_json).read_text())
    root = Path(coco_json).parent
    labels = {a["image_id"]: a["category_id"] - 1 for a in doc["annotations"]}
    entries = doc["images"][:n]
    images = np.stack([cv2.cvtColor(cv2.imread(str(root / e["file_name"])), cv2.COLOR_BGR2RGB) for e in entries])
    return images.astype(np.float32), np.array([labels[e["id"]] for e in entries])


def audit_child(args) -> None:
    started = time.perf_counter()
    import validator._tf  # noqa: F401 - TF, as camgate imports it; timed apart
    from validator.gate import audit, merge

    import_seconds = time.perf_counter() - started
    started = time.perf_counter()
    if args.merge:
        verdict = merge(args.merge.split(","), out=args.out)
    else:
        options = {"max_samples": args.n, "batch_size": args.batch_size, "backend": args.backend}
        if args.workers:
            options["workers"] = args.workers
        if args.shard:
            options["shard"] = args.shard
        verdict = audit(args.model_path, args.data, policy=args.policy, out=args.out, **options)
    wall = time.perf_counter() - started
    table_bytes = sum(getattr(col, "nbytes", 0) for col in (verdict.table or {}).values())
    checks = json.dumps(verdict.checks, sort_keys=True, default=str)
    result = {
        "status": verdict.status, "error": verdict.error, "wall_seconds": wall, "timings": verdict.timings,
        "import_seconds": import_seconds, "n_explained": (verdict.sample or {}).get("n_explained", 0),
        "n_dead": (verdict.sample or {}).get("n_dead"), "shards": verdict.shards,
        "table_bytes": table_bytes, "checks_sha": hashlib.sha256(checks.encode()).hexdigest()[:12],
        "hwm_mib": vm_hwm_kib() / 1024,
    }
    if args.bare:
        result["bare_images_per_s"] = _bare_rate(args.model_path, args.data, args.batch_size, args.bare)
    print("BENCH_RESULT " + json.dumps(result, default=str), flush=True)


def _bare_rate(model_path: str, coco_json: str, batch_size: int, n_images: int, repeats: int = 3) -> float:
    """The bare Explainer (gradcam) on the set's first images, already decoded: the audit's compute ceiling."""
    from validator.explain import Explainer

    images, labels = _decode(coco_json, n_images)
    explainer = Explainer(model_path, method="gradcam", batch_size=batch_size)
    explainer.explain(images[:batch_size], labels[:batch_size])  # warm-up (tracing)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        explainer.explain(images, labels)
        rates.append(n_images / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


# --------------------------------------------------------------------------------------------- parent ---


def run_child(extra: list[str], what: str) -> dict:
    """One fresh process; its own peak RSS from wait4 (the largest of it and the processes it reaped)."""
    command = [sys.executable, str(HERE), *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): wait4 also returns the child's rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        process_seconds = time.perf_counter() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line.removeprefix("BENCH_RESULT "))
            result["maxrss_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
            result["process_seconds"] = process_seconds
            return result
    raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{stderr[-3000:]}")


class Planner:
    """Runs in order, skipping one whose estimated time would overrun the budget."""

    def __init__(self, budget: float | None):
        self.budget, self.started, self.rates, self.skipped = budget, time.perf_counter(), {}, []

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def allow(self, label: str, n: int, policy: str) -> bool:
        rate = self.rates.get(policy)
        if self.budget is None or rate is None:
            return True
        estimate = n / rate + 25.0  # + start-up (TF import, model load, trace)
        if self.elapsed() + estimate > self.budget:
            self.skipped.append(f"{label}: not run — estimated {estimate:.0f} s at {rate:.1f} images/s (measured "
                                f"at smaller N), {max(0.0, self.budget - self.elapsed()):.0f} s of the "
                                f"{self.budget:.0f} s budget left")
            log("SKIP " + self.skipped[-1])
            return False
        return True

    def record(self, policy: str, n: int, result: dict) -> None:
        if result["status"] != "ERROR" and result["wall_seconds"] > 0:
            self.rates[policy] = n / result["wall_seconds"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 200, 1000; default policy at 200 only; Ray and "
                        "shards on 200 with probes off")
    parser.add_argument("--sizes", help="comma-separated N (default 1000,10000,50000)")
    parser.add_argument("--probes-on-max", type=int, help="largest N also audited with the default policy "
                        "(probes on); default 10000 (quick 200)")
    parser.add_argument("--ray-n", type=int, help="the set the Ray and shard rows use (default 1000, quick 200)")
    parser.add_argument("--ray-workers", default="1,2", help="Ray actor counts (default 1,2; empty: no Ray rows)")
    parser.add_argument("--ray-policy", choices=("default", "probes-off"), default="probes-off",
                        help="policy of the Ray and shard rows (default probes-off: the backends distribute the "
                        "per-sample work; the fixed-size probes would add the same minute to each row)")
    parser.add_argument("--no-shards", action="store_true", help="no shard + merge rows")
    parser.add_argument("--bare-images", type=int, default=256, help="images of the bare-Explainer timing")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--budget-s", type=float, help="skip runs estimated to end past this many seconds "
                        "(default 1500, quick none); data generation does not count")
    parser.add_argument("--gen-jobs", type=int, default=2, help="processes writing the images (first run only)")
    parser.add_argument("--workdir", default=".bench-scale", help="cached data sets, model, outputs")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement as JSON")
    # children -- internal
    parser.add_argument("--child", choices=("prepare", "audit"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model-path", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--shard", help=argparse.SUPPRESS)
    parser.add_argument("--merge", help=argparse.SUPPRESS)
    parser.add_argument("--bare", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "prepare":
        prepare_child(args)
        return 0
    if args.child == "audit":
        audit_child(args)
        return 0

    quick = args.quick
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else list(QUICK_SIZES if quick else SIZES)
    probes_on_max = args.probes_on_max if args.probes_on_max is not None else (200 if quick else 10000)
    ray_n = args.ray_n or (200 if quick else 1000)
    ray_workers = [int(v) for v in args.ray_workers.split(",") if v.strip()]
    ray_policy = args.ray_policy or "probes-off"
    budget = args.budget_s if args.budget_s is not None else (None if quick else 1500.0)
    workdir = Path(args.workdir).resolve()
    (workdir / "out").mkdir(parents=True, exist_ok=True)
    ignore = workdir / ".gitignore"  # gigabytes of PNGs: never in a commit (the folder ignores itself)
    if not ignore.exists():
        ignore.write_text("*\n")

    generation_started = time.perf_counter()
    sets = ensure_data(workdir, sorted({*sizes, ray_n}), args.gen_jobs)
    generation = time.perf_counter() - generation_started
    policies = {"default": "", "probes-off": str(write_probes_off_policy(workdir))}
    model = workdir / "model.keras"
    prepared = run_child(["--child", "prepare", "--model-path", str(model), "--data", str(sets[min(sets)])],
                         "preparing the model")
    log(f"model {model}: {prepared['dead']} dead maps of {prepared['n_checked']}, median map std "
        f"{prepared['map_cv_median']:.2f} of its mean")

    planner = Planner(budget)

    def audit_run(n: int, policy: str, tag: str, bare: int = 0, **extra) -> dict:
        command = ["--child", "audit", "--n", str(n), "--data", str(sets[n]), "--model-path", str(model),
                   "--out", str(workdir / "out" / tag), "--batch-size", str(args.batch_size), "--bare", str(bare)]
        if policies[policy]:
            command += ["--policy", policies[policy]]
        for key, value in extra.items():
            command += [f"--{key}", str(value)]
        t0 = time.perf_counter()
        result = run_child(command, tag)
        result.update(n=n, policy=policy, tag=tag)
        log(f"[{planner.elapsed():5.0f}s] {tag}: {result['status']} in {time.perf_counter() - t0:.1f}s (audit "
            f"{result['wall_seconds']:.1f}s, VmHWM {result['hwm_mib']:.0f} MiB)"
            + (f" ERROR {result['error']}" if result["error"] else ""))
        return result

    # Order: every run on sets up to the Ray set's size, the Ray and shard rows, then the larger sets (probes off
    # first at each N): the budget estimate learns from the small runs, and what the budget cuts is the largest.
    plan = sorted([(n, "probes-off") for n in sizes] + [(n, "default") for n in sizes if n <= probes_on_max],
                  key=lambda item: (item[0], item[1] != "probes-off"))
    scale: list[dict] = []
    distributed: list[dict] = []

    def run_scale(items) -> None:
        for n, policy in items:
            if planner.allow(f"N={n}, {policy}", n, policy):
                result = audit_run(n, policy, f"n{n}-{policy}", bare=min(args.bare_images, n))
                planner.record(policy, n, result)
                scale.append(result)

    def run_distributed() -> None:
        local = next((r for r in scale if r["n"] == ray_n and r["policy"] == ray_policy), None)
        if local is None and planner.allow(f"local N={ray_n}, {ray_policy}", ray_n, ray_policy):
            local = audit_run(ray_n, ray_policy, f"n{ray_n}-{ray_policy}-local")
            planner.record(ray_policy, ray_n, local)
        if local is not None:
            distributed.append({**local, "variant": "local (1 process)"})
        for workers in ray_workers:
            if planner.allow(f"Ray {workers} worker(s)", ray_n, ray_policy):
                result = audit_run(ray_n, ray_policy, f"n{ray_n}-{ray_policy}-ray{workers}", backend="ray",
                                   workers=workers)
                distributed.append({**result, "variant": f"ray, {workers} worker(s)"})
        if args.no_shards or not planner.allow("2 shards + merge", ray_n, ray_policy):
            return
        parts = [audit_run(ray_n, ray_policy, f"n{ray_n}-{ray_policy}-shard{i}of2", shard=f"{i}/2") for i in (1, 2)]
        dirs = ",".join(str(workdir / "out" / p["tag"]) for p in parts)
        merged = run_child(["--child", "audit", "--merge", dirs, "--out",
                            str(workdir / "out" / f"n{ray_n}-{ray_policy}-merged")], "merge")
        merged.update(n=ray_n, policy=ray_policy, tag="merge")
        log(f"[{planner.elapsed():5.0f}s] merge: {merged['status']} (merge {merged['wall_seconds']:.1f}s)")
        for i, part in enumerate(parts, 1):
            distributed.append({**part, "variant": f"shard {i}/2"})
        distributed.append({**merged, "variant": "merge of the 2 shards"})
        everything = (*parts, merged)
        total = {k: sum(p[k] for p in everything) for k in ("wall_seconds", "process_seconds", "import_seconds")}
        distributed.append({**merged, **total, "variant": "2 shards + merge, one after the other", "total": True,
                            "hwm_mib": max(p["hwm_mib"] for p in everything),
                            "maxrss_mib": max(p["maxrss_mib"] for p in everything)})

    run_scale([item for item in plan if item[0] <= ray_n])
    if ray_workers or not args.no_shards:
        run_distributed()
    run_scale([item for item in plan if item[0] > ray_n])
    elapsed = planner.elapsed()

    info = prepared["machine"]
    command = "python benchmarks/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"camgate audit at scale (small CNN, {IMAGE_SIZE} px, batch {args.batch_size}) — {describe_machine(info)}")
    print(f"command: {command.strip()}   (ran {elapsed:.0f}s; data generation {generation:.0f}s, cached in "
          f"{workdir})")
    print(f"model: build_small_cnn(image_size={IMAGE_SIZE}, n_classes=2), random weights (seed 0); on "
          f"{prepared['n_checked']} of the set's images: {prepared['dead']} dead Grad-CAM maps, median per-map std "
          f"{prepared['map_cv_median']:.2f} x its mean (0 = a flat map), predicted class 0 on "
          f"{prepared['predicted_share_class0']:.0%}\n")
    print(render_scale(scale))
    print()
    print(render_distributed(distributed))
    for line in planner.skipped:
        print(line)
    if args.json:
        write_json(args.json, {"machine": info, "command": command, "seconds": elapsed, "generation": generation,
                               "model_check": prepared, "scale": scale, "distributed": distributed,
                               "skipped": planner.skipped})
    errors = [r for r in (*scale, *distributed) if r["status"] == "ERROR"]
    return 1 if errors else 0


def _stage(result: dict, *names: str) -> float:
    return sum(result["timings"].get(name, 0.0) for name in names)


def render_scale(results: list[dict]) -> str:
    if not results:
        return "(no audit against N was run)"
    rows = []
    for r in results:
        t = r["timings"]
        stream = _stage(r, "data", "explain", "metrics")
        untimed = r["wall_seconds"] - sum(t.values())
        rate = r["n_explained"] / r["wall_seconds"]
        bare = r.get("bare_images_per_s") or float("nan")
        rows.append([r["n"], r["policy"], r["status"], r["n_explained"], r["wall_seconds"],
                     *(t.get(s, 0.0) for s in ("load", "data", "explain", "metrics")),
                     _stage(r, "probes", "sanity"), t.get("discovery", 0.0), t.get("stats", 0.0),
                     _stage(r, "overlays", "reports"), untimed, rate, r["n_explained"] / stream if stream else float("nan"),
                     bare, rate / bare, (r["n_explained"] / stream) / bare if stream else float("nan"),
                     r["hwm_mib"], r["maxrss_mib"], r["table_bytes"] / max(1, r["n_explained"])])
    headers = ["N", "policy", "status", "explained", "audit s", "load s", "data s", "explain s", "metrics s",
               "probes+sanity s", "discovery s", "stats s", "overlays+reports s", "untimed s", "audit img/s",
               "stream img/s", "bare img/s", "audit/bare", "stream/bare", "VmHWM MiB", "maxrss MiB",
               "table B/sample"]
    lines = ["Audit against N (one fresh process per row; stages from verdict.timings, seconds; 'audit s' is audit()",
             "itself, after the TF import; stream = data + explain + metrics, the per-sample loop; bare = the bare",
             "gradcam Explainer in the same process, same model and batch, the set's first images in memory;",
             "VmHWM = the process's peak RSS right after the audit; maxrss = wait4's ru_maxrss, which also covers",
             "the bare-explainer timing that follows):", "", table(headers, rows, "llrlrrrrrrrrrrrrrrrrrr"), ""]
    for policy in ("probes-off", "default"):
        by_n = {r["n"]: r for r in results if r["policy"] == policy and r["status"] != "ERROR"}
        if len(by_n) >= 2:
            small, large = min(by_n), max(by_n)
            grow = by_n[large]["hwm_mib"] - by_n[small]["hwm_mib"]
            per_10k = grow / (large - small) * 10000
            table_10k = (by_n[large]["table_bytes"] - by_n[small]["table_bytes"]) / (large - small) * 10000 / 2**20
            lines.append(f"{policy}: VmHWM N={large} / N={small} = {by_n[large]['hwm_mib'] / by_n[small]['hwm_mib']:.3f}"
                         f" ({by_n[large]['hwm_mib']:.0f} / {by_n[small]['hwm_mib']:.0f} MiB): {per_10k:+.0f} MiB per 10k "
                         f"images (the per-sample table alone: {table_10k:.1f} MiB per 10k)")
    return "\n".join(lines)


def render_distributed(results: list[dict]) -> str:
    if not results:
        return "(no Ray or shard rows were run)"
    local = next((r for r in results if r["variant"].startswith("local")), None)
    rows = []
    for r in results:
        t = r["timings"]
        shard = r["variant"].startswith(("shard", "merge"))  # parts: no rate or speed-up of their own
        untimed = r["wall_seconds"] - sum(t.values()) if not r.get("total") else float("nan")
        n = (r.get("shards") or {}).get("rows", 0) if r["variant"].startswith("shard") else r["n_explained"]
        same = "-" if local is None or r["variant"].startswith("shard") else (
            "yes" if r["checks_sha"] == local["checks_sha"] else "NO")
        rows.append([r["variant"], r["status"], n, r["wall_seconds"], r["import_seconds"],
                     _stage(r, "data", "explain", "metrics", "probes", "sanity", "discovery") if not r.get("total") else float("nan"),
                     t.get("ray", 0.0) if not r.get("total") else float("nan"),
                     t.get("merge", 0.0) if not r.get("total") else float("nan"),
                     t.get("stats", 0.0) if not r.get("total") else float("nan"),
                     untimed, r["n"] / r["wall_seconds"] if not shard else float("nan"),
                     local["wall_seconds"] / r["wall_seconds"] if local and not shard else float("nan"),
                     r["hwm_mib"], r["maxrss_mib"], same])
    headers = ["variant", "status", "rows", "audit s", "TF import s", "local stages s", "ray s", "merge s",
               "stats s", "untimed s", "img/s", "speed-up vs local", "VmHWM MiB", "maxrss MiB", "same checks"]
    n, policy = results[0]["n"], results[0]["policy"]
    return "\n".join([
        f"Ray workers and shards on the {n}-image set, policy {policy} (fresh process per row; 'local stages' =",
        "data+explain+metrics+probes+sanity+discovery run in the audited process itself; 'ray' = Ray Data from",
        "cluster_resources to the last shard back, the actors' explaining inside it; 'untimed' includes ray.init",
        "and shutdown; VmHWM is the driver's; maxrss (wait4) is the largest single process the driver reaped,",
        "Ray actors are reaped by the raylet, not the driver, so their memory is not in it; 'same checks' = the",
        "verdict's checks are identical (JSON hash) to the local audit's):", "",
        table(headers, rows, "llrrrrrrrrrrrrl")])


if __name__ == "__main__":
    raise SystemExit(main())
