"""Cost of the checks that do not trust one heatmap, as ratios against the Explainer in the same run.

    .venv/bin/python benchmarks/bench_probes.py                     # both models (ResNet50 not timed in full mode yet)
    .venv/bin/python benchmarks/bench_probes.py --quick             # ~20 s small CNN + ~100-120 s ResNet50 (2 cores)
    .venv/bin/python benchmarks/bench_probes.py --models small_cnn  # full small CNN only, ~30 s
    .venv/bin/python benchmarks/bench_probes.py --models small_cnn --json probes.json

Components, each timed best-of-k (``time.perf_counter``, after an untimed warm-up), repetitions interleaved
round robin with the Explainer so that load drifts hit every component alike:

- ``explain (gradcam)``: ``validator.explain.Explainer(model, "gradcam").explain(images, class_ids)``, the
  baseline every ratio is taken against (one forward + backward pass per image, maps to numpy).
- ``forward (Predictor)``: ``validator.explain.predict.Predictor(model, 64)(images)``: forward only.
- ``counterfactual, fill=F``: ``validator.probes.counterfactual.probe_scores`` with the explainer's
  probabilities passed in, as the audit does: the fill, then background-only and Mixed-Rand forward passes.
  ``fill F alone`` is ``background_only`` (the fill without the forward passes).
- ``faithfulness``: ``validator.probes.faithfulness.deletion_insertion`` at the default steps (2) with the
  explainer's probabilities passed in, as the audit does: the map and a random order (the map shifted), 4 x
  steps - 3 = 5 forward passes per image (the maps are the explainer's; a dead map would cost nothing, so
  dead maps are replaced). Before issue 20 it was the map alone in 20 steps, 42 passes per image on 50.
- ``hot spot vs random region``: ``validator.probes.hotspot.hotspot_scores`` with the explainer's maps and
  probabilities, as the audit does: the hottest region off the box and a random one of its shape filled, 2
  forward passes per image in one batch (issue 21).
- ``sanity cascade``: ``validator.probes.sanity.cascade`` on 32 images: clone, one explain pass for the
  trained model and one per stage, each on a re-drawn clone (a fresh Explainer, so one trace per cascade).
  Per image = the cascade's seconds / 32.
- ``discovery downsample`` / ``discovery spray``: ``validator.discovery.atlas.downsample`` (grid 16) and
  ``validator.discovery.spray.spray`` on n maps of one class (synthetic Grad-CAM-like blobs at input
  resolution, a fifth of them in a corner, so that spray finds and k-means a split).

Boxes: one per image, ~10 % of the frame (side sqrt(0.1) x image side), seeded random position.

The "default audit" columns scale each measurement to what ``camgate audit`` with the default policy does on
200 images (``validator.policy.model.Probes``): counterfactual on all 200, faithfulness on 32, one sanity
cascade on 32 images with min(2, weighted layers) stages (the default policy), discovery on the 200 maps; the share is that cost
over 200 x the Explainer's per-image cost (the bare explainer, not the audit's slower explain stage). Where
fewer stages were run than the audit would (ResNet50: ``--resnet-stages``), the cascade is extrapolated by
the measured seconds of its first stage (one explain pass + one layer re-drawn) per missing stage.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from _common import ROOT, describe_machine, interleaved, machine, paired_ratio, table, write_json

MODELS = ("small_cnn", "resnet50")
FILLS = ("tile", "mean", "blur", "inpaint")
AUDIT = {"images": 200, "hotspot": 200, "faithfulness": 32, "sanity_images": 32, "sanity_stages": 2, "grid": 16}
FAITH = "faithfulness (steps 2, vs random order)"  # validator.probes.faithfulness.DEFAULT_STEPS
HOTSPOT = "hot spot vs random region"  # validator.probes.hotspot: 2 forward passes per image
PREDICT_BATCH = 64  # the audit's Predictor: max(2 * batch_size, 64) at batch 32
EXPLAIN_BATCH = 32
BOX_AREA = 0.10
# images: explained / probed per measurement; faith: faithfulness images; sanity: cascade images and stages
PLAN = {
    "small_cnn": {"images": 256, "faith": 64, "sanity": 32, "stages": 8, "repeats": 7, "sanity_repeats": 5},
    "resnet50": {"images": 16, "faith": 16, "sanity": 32, "stages": 2, "repeats": 3, "sanity_repeats": 2},
}
QUICK = {
    "small_cnn": {"images": 128, "faith": 16, "sanity": 32, "stages": 8, "repeats": 3, "sanity_repeats": 2},
    "resnet50": {"images": 16, "faith": 8, "sanity": 32, "stages": 2, "repeats": 2, "sanity_repeats": 1},
}
SPRAY_SIZES = (200, 1000)


def build_model(name: str):
    """(keras model, where it came from, (low, high) input range)."""
    from validator._tf import keras

    if name == "resnet50":
        # weights=None: no download; random weights are fine for timing (the work does not depend on them).
        return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=10), \
            "keras.applications.ResNet50(weights=None, classes=10)", (-1.0, 1.0)
    if name == "small_cnn":
        cached = sorted((ROOT / ".camgate-cache").glob("clean-*.keras"), key=lambda p: p.stat().st_mtime)
        if cached:
            return keras.models.load_model(cached[-1]), f"cached control {cached[-1].name}", (0.0, 255.0)
        from validator.datasets.controls import build_small_cnn

        return build_small_cnn(image_size=64, n_classes=2), "build_small_cnn (untrained)", (0.0, 255.0)
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def make_images(name: str, n: int, size: int, value_range, seed: int = 0):
    import numpy as np

    if name == "small_cnn":
        from validator.datasets.synthetic import make_arrays

        arrays = make_arrays(n, seed=seed, image_size=size)
        return arrays.images.astype(np.float32)
    low, high = value_range
    return np.random.default_rng(seed).uniform(low, high, (n, size, size, 3)).astype(np.float32)


def make_boxes(n: int, height: int, width: int, area: float = BOX_AREA, seed: int = 0):
    """One [1, 4] box (x0, y0, x1, y1) per image covering ``area`` of the frame, at a random position."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bw, bh = math.sqrt(area) * width, math.sqrt(area) * height
    x0 = rng.uniform(0, width - bw, n)
    y0 = rng.uniform(0, height - bh, n)
    return [np.array([[x, y, x + bw, y + bh]]) for x, y in zip(x0, y0, strict=True)]


def blob_maps(n: int, height: int, width: int, seed: int = 0):
    """n Grad-CAM-like maps [n, H, W] >= 0: one Gaussian blob each, near the centre, a fifth in the top-left
    corner (a "Clever Hans" subgroup for spray to find)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    corner = rng.random(n) < 0.2
    cy = np.where(corner, rng.uniform(0.03, 0.12, n), rng.uniform(0.3, 0.7, n)) * height
    cx = np.where(corner, rng.uniform(0.03, 0.12, n), rng.uniform(0.3, 0.7, n)) * width
    sigma = rng.uniform(0.08, 0.15, n) * max(height, width)
    out = np.empty((n, height, width), np.float32)
    for i in range(n):
        out[i] = np.exp(-((ys - cy[i]) ** 2 + (xs - cx[i]) ** 2) / (2 * sigma[i] ** 2))
    out += rng.uniform(0, 0.02, out.shape).astype(np.float32)
    return out


def best(rates: list[float]) -> float:
    """Best-of-k: the fastest repetition (items/s), the one least disturbed by the other jobs."""
    return max(rates)


def bench_model(name: str, plan: dict, log) -> dict:
    import numpy as np

    from validator.discovery.atlas import downsample
    from validator.discovery.spray import spray
    from validator.explain import Explainer
    from validator.explain.predict import Predictor
    from validator.probes.counterfactual import background_only, probe_scores
    from validator.probes.faithfulness import DEFAULT_STEPS, deletion_insertion, forward_passes
    from validator.probes.hotspot import FORWARD_PASSES as HOTSPOT_PASSES
    from validator.probes.hotspot import hotspot_scores
    from validator.probes.sanity import cascade, plan_stages, weighted_layers

    started = time.perf_counter()
    model, source, value_range = build_model(name)
    height, width = (int(v) for v in model.input_shape[1:3])
    num_classes = int(model.output_shape[-1])
    explainer = Explainer(model, method="gradcam", batch_size=EXPLAIN_BATCH)
    predictor = Predictor(model, batch_size=PREDICT_BATCH)
    n = plan["images"]
    images = make_images(name, max(n, plan["sanity"]), height, value_range)
    class_ids = np.arange(len(images)) % num_classes
    boxes = make_boxes(len(images), height, width)
    probe_images, probe_ids, probe_boxes = images[:n], class_ids[:n], boxes[:n]
    log(f"[{name}] model ({source}) and inputs ready in {time.perf_counter() - started:.1f}s")

    first = explainer.explain(probe_images, probe_ids)  # also the warm-up (trace) of the explainer
    probabilities = first.probabilities
    maps = first.maps.copy()
    dead = np.asarray(first.dead, bool) | ~np.isfinite(maps.reshape(len(maps), -1)).all(axis=1)
    if dead.any():  # a dead map costs deletion_insertion nothing; the audit runs it on live maps only
        maps[dead] = blob_maps(int(dead.sum()), height, width, seed=1)
    k_faith = plan["faith"]
    faith_images, faith_maps, faith_ids = probe_images[:k_faith], maps[:k_faith], probe_ids[:k_faith]
    faith_probabilities = probabilities[:k_faith]

    def unit(fn, items):
        def call():
            fn()
            return items

        return call

    contenders = {
        "explain (gradcam)": unit(lambda: explainer.explain(probe_images, probe_ids), n),
        "forward (Predictor)": unit(lambda: predictor(probe_images), n),
    }
    for fill in FILLS:
        contenders[f"counterfactual, fill={fill}"] = unit(
            lambda fill=fill: probe_scores(predictor, probe_images, probe_boxes, probe_ids, num_classes, fill=fill,
                                           original_probabilities=probabilities), n)
        contenders[f"fill {fill} alone"] = unit(lambda fill=fill: background_only(probe_images, probe_boxes, fill), n)
    contenders[HOTSPOT] = unit(
        lambda: hotspot_scores(predictor, probe_images, maps, probe_ids, probe_boxes,
                               original_probabilities=probabilities), n)
    contenders[FAITH] = unit(
        lambda: deletion_insertion(predictor, faith_images, faith_maps, faith_ids, steps=DEFAULT_STEPS,
                                   original_probabilities=faith_probabilities), k_faith)
    spray_maps = {m: blob_maps(m, height, width, seed=2) for m in SPRAY_SIZES}
    small_maps = {m: downsample(spray_maps[m], AUDIT["grid"]) for m in SPRAY_SIZES}
    for m in SPRAY_SIZES:
        contenders[f"discovery downsample, {m} maps"] = unit(lambda m=m: downsample(spray_maps[m], AUDIT["grid"]), m)
        contenders[f"discovery spray, {m} maps"] = unit(lambda m=m: spray(small_maps[m], max_clusters=8, seed=0), m)
    warmups = {FAITH: lambda: deletion_insertion(predictor, faith_images[:1], faith_maps[:1], faith_ids[:1],
                                                 steps=DEFAULT_STEPS)}
    started = time.perf_counter()
    rates = interleaved(contenders, repeats=plan["repeats"], warmups=warmups)
    log(f"[{name}] {len(contenders)} components x {plan['repeats']} rounds in {time.perf_counter() - started:.1f}s")

    # The sanity cascade: whole cascades (each clones the model and traces a fresh Explainer, as in the audit).
    n_weighted = len(weighted_layers(model))
    stages = min(plan["stages"], AUDIT["sanity_stages"])
    measured_plan = plan_stages(n_weighted, stages)
    audit_plan = plan_stages(n_weighted, AUDIT["sanity_stages"])
    s_images, s_ids = images[: plan["sanity"]], class_ids[: plan["sanity"]]
    started = time.perf_counter()
    cascade(model, s_images[:2], s_ids[:2], stages=1, batch_size=EXPLAIN_BATCH)  # warm-up: clone path, TF kernels
    cascade_runs = []
    for _ in range(plan["sanity_repeats"]):
        t0 = time.perf_counter()
        result = cascade(model, s_images, s_ids, stages=stages, batch_size=EXPLAIN_BATCH)
        cascade_runs.append({"seconds": time.perf_counter() - t0, "stage_seconds": list(result.seconds)})
    log(f"[{name}] sanity: {plan['sanity_repeats']} cascade(s) of {len(measured_plan)} stages on {len(s_images)} "
        f"images in {time.perf_counter() - started:.1f}s")
    fastest = min(cascade_runs, key=lambda r: r["seconds"])
    missing = len(audit_plan) - len(measured_plan)
    audit_cascade = fastest["seconds"] + max(0, missing) * fastest["stage_seconds"][1]

    explain_ms = 1000.0 / best(rates["explain (gradcam)"])
    audit_explain_s = AUDIT["images"] * explain_ms / 1000.0
    rows = []

    def add(component, per_image_ms, call_s, audit_images, audit_s, ratio_paired=float("nan"), note=""):
        rows.append({
            "component": component, "per_image_ms": per_image_ms, "ratio": per_image_ms / explain_ms,
            "ratio_paired": ratio_paired, "call_s": call_s, "audit_images": audit_images,
            "audit_s": audit_s, "audit_share": audit_s / audit_explain_s if audit_s == audit_s else float("nan"),
            "note": note,
        })

    counts = {"explain (gradcam)": n, "forward (Predictor)": n, FAITH: k_faith}
    for label, samples in rates.items():
        items = counts.get(label, n)
        for m in SPRAY_SIZES:
            if label.endswith(f", {m} maps"):
                items = m
        per_image_ms = 1000.0 / best(samples)
        paired = paired_ratio(rates["explain (gradcam)"], samples)  # (explain img/s) / (component img/s)
        if label.startswith("explain"):
            audit_images, note = AUDIT["images"], "baseline"
        elif label.startswith("forward"):
            audit_images, note = None, "inside the probes"
        elif label.startswith(("counterfactual", "fill")):
            audit_images = AUDIT["images"]
            note = "default fill" if "tile" in label else "if the policy picks it"
        elif label == HOTSPOT:
            audit_images, note = AUDIT["hotspot"], f"{HOTSPOT_PASSES} forward passes per image"
        elif label.startswith("faithfulness"):
            audit_images, note = AUDIT["faithfulness"], f"{forward_passes(DEFAULT_STEPS)} forward passes per image"
        elif label.startswith("discovery"):
            audit_images = AUDIT["images"] if label.endswith(f"{AUDIT['images']} maps") else None
            note = "one class of 200 (upper bound)" if audit_images else "an audit of 1000 images: see below"
        else:
            audit_images, note = None, ""
        audit_s = audit_images * per_image_ms / 1000.0 if audit_images else float("nan")
        add(label, per_image_ms, items * per_image_ms / 1000.0, audit_images, audit_s, paired, note)
    per_image = fastest["seconds"] / len(s_images) * 1000.0
    note = f"{len(measured_plan)} stages (n_top {measured_plan})"
    if missing > 0:
        note += f"; audit's {len(audit_plan)} extrapolated"
    add("sanity cascade, 32 images", per_image, fastest["seconds"], AUDIT["sanity_images"], audit_cascade,
        note=note)
    return {
        "model": name, "source": source, "input": [height, width], "classes": num_classes, "plan": plan,
        "explain_ms": explain_ms, "audit_explain_s": audit_explain_s, "dead_maps_replaced": int(dead.sum()),
        "weighted_layers": n_weighted, "sanity_plan": measured_plan, "audit_sanity_plan": audit_plan,
        "cascades": cascade_runs, "rows": rows, "samples": rates,
    }


def render(all_results: list[dict]) -> str:
    out = []
    headers = ["model", "component", "per image ms", "x explain", "x explain (paired)", "per call s",
               "audit images", "audit s", "share of audit explain", "note"]
    body = []
    for res in all_results:
        for r in res["rows"]:
            body.append([res["model"], r["component"], r["per_image_ms"], r["ratio"], r["ratio_paired"], r["call_s"],
                         r["audit_images"] if r["audit_images"] else "-", r["audit_s"], r["audit_share"], r["note"]])
    out += ["Per-image cost (best of k), ratio to the Explainer's per-image cost in the same run, and the default",
            "audit's spend (200 images; hot spot on 200; faithfulness on 32; sanity on 32 with min(2, layers) stages) as a share",
            "of 200 x the Explainer's per-image cost:", "",
            table(headers, body, aligns="llrrrrrrrl"), ""]
    for res in all_results:
        rows = {r["component"]: r for r in res["rows"]}
        probes = sum(rows[k]["audit_s"] for k in ("counterfactual, fill=tile", HOTSPOT, FAITH,
                                                  "sanity cascade, 32 images", "discovery downsample, 200 maps",
                                                  "discovery spray, 200 maps"))
        cascades = ", ".join(f"{c['seconds']:.1f}" for c in res["cascades"])
        fastest = min(res["cascades"], key=lambda c: c["seconds"])
        stages = ", ".join(f"{v:.2f}" for v in fastest["stage_seconds"])
        big = rows["discovery downsample, 1000 maps"]["call_s"] + rows["discovery spray, 1000 maps"]["call_s"]
        faith = rows[FAITH]["audit_s"]
        out.append(f"{res['model']}: explain {res['explain_ms']:.2f} ms/image -> audit explain "
                   f"{res['audit_explain_s']:.2f} s; default probes + discovery {probes:.2f} s "
                   f"({probes / res['audit_explain_s']:.2f}x the explain time; explain + probes "
                   f"{1 + probes / res['audit_explain_s']:.2f}x), of which faithfulness {faith:.2f} s "
                   f"({faith / res['audit_explain_s']:.2f}x); discovery on 1000 maps of one "
                   f"class {big:.2f} s = {big / (1000 * res['explain_ms'] / 1000):.3f} of a 1000-image explain; "
                   f"sanity cascades {cascades} s (per stage: {stages} s, "
                   f"the first incl. clone + trace); weighted layers {res['weighted_layers']}, "
                   f"dead maps replaced {res['dead_maps_replaced']}")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and repetitions (a smoke run)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated from {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, help="rounds per component (overrides the plan)")
    parser.add_argument("--resnet-stages", type=int, help="sanity stages on ResNet50 (default 2, as the audit)")
    parser.add_argument("--json", metavar="OUT", help="also write every measurement as JSON")
    args = parser.parse_args(argv)
    models = [v.strip() for v in args.models.split(",") if v.strip()]

    def log(message):
        print(message, file=sys.stderr, flush=True)

    info = machine()
    started = time.perf_counter()
    all_results = []
    for name in models:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        plan = dict((QUICK if args.quick else PLAN)[name])
        if args.repeats:
            plan["repeats"] = args.repeats
        if name == "resnet50" and args.resnet_stages:
            plan["stages"] = args.resnet_stages
        all_results.append(bench_model(name, plan, log))
    elapsed = time.perf_counter() - started

    command = "python benchmarks/bench_probes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"camgate probe costs — {describe_machine(info)}")
    print(f"command: {command.strip()}   (ran {elapsed:.0f}s)\n")
    print(render(all_results))
    if args.json:
        write_json(args.json, {"machine": info, "command": command, "seconds": elapsed, "results": all_results})
    ok = all(not math.isnan(r["per_image_ms"]) for res in all_results for r in res["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
