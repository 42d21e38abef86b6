"""Calibrate the default policy on control models: every shortcut must FAIL, every clean model PASS.

Trains (cached) clean models and shortcut models for each cue family on calibration seeds (100+; the test
suite uses seeds 0..9, so the tests measure generalisation, not memory), audits each on <= 200 held-out
images, and writes docs/calibration.md with one row per (model, held-out set) and the margins of each check.

    python benchmarks/calibrate.py                  # 3 seeds, ~10-15 min on 2 CPU cores the first time
    python benchmarks/calibrate.py --seeds 100 --quick
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

CUES = ("watermark", "weather", "background")
HELDOUT_SEED = 300


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--partial", type=float, nargs="*", default=[0.8], help="partial cue strengths (shape informative)")
    parser.add_argument("--n-heldout", type=int, default=200)
    parser.add_argument("--policy", default=None, help="policy to evaluate (default: the shipped default)")
    parser.add_argument("--workdir", default=".camgate-cache/calibration")
    parser.add_argument("--out", default="docs/calibration.md")
    parser.add_argument("--quick", action="store_true", help="smaller training sets (a smoke run, not a calibration)")
    args = parser.parse_args()

    from validator import audit
    from validator.datasets.controls import train_control
    from validator.datasets.synthetic import write_dataset

    workdir = Path(args.workdir)
    train_kwargs = {"n_train": 1500} if args.quick else {}
    heldout = {}
    for cue in (None, *CUES):
        folder = workdir / "heldout" / (cue or "clean")
        if not (folder / "annotations.json").exists():
            write_dataset(folder, args.n_heldout, seed=HELDOUT_SEED, cue=cue)
        heldout[cue or "clean"] = folder / "annotations.json"

    jobs = []  # (label, expected, control kwargs, held-out sets)
    for seed in args.seeds:
        jobs.append((f"clean s{seed}", "PASS", {"kind": "clean", "seed": seed}, ["clean", *CUES]))
        for cue in CUES:
            jobs.append((f"{cue} s{seed}", "FAIL", {"kind": cue, "seed": seed}, [cue]))
    for strength in args.partial:
        for cue in CUES:
            jobs.append((f"{cue} partial {strength}", "report", {"kind": cue, "seed": args.seeds[0], "cue_strength": strength}, [cue]))

    rows = []
    started = time.perf_counter()
    for label, expected, kwargs, sets in jobs:
        control = train_control(cache_dir=workdir / "models", **kwargs, **train_kwargs)
        for set_name in sets:
            out = workdir / "reports" / f"{label.replace(' ', '_')}-{set_name}"
            verdict = audit(str(control.path), str(heldout[set_name]), policy=args.policy, out=out)
            rows.append(_row(label, expected, set_name, control, verdict))
            print(f"[{time.perf_counter() - started:6.0f}s] {label:22} on {set_name:10} -> {verdict.status:5} "
                  f"{', '.join(sorted({c['check_id'] for c in verdict.failed_checks}))}", flush=True)

    text = _markdown(rows, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    wrong = [r for r in rows if r["expected"] != "report" and (r["status"] in ("PASS", "WARN")) != (r["expected"] == "PASS")]
    for r in wrong:
        print(f"MISCLASSIFIED: {r['label']} on {r['set']}: {r['status']} (expected {r['expected']})", file=sys.stderr)
    return 1 if wrong else 0


def _estimate(verdict, metric, how):
    return verdict.summary.get("overall", {}).get(metric, {}).get(how, {})


def _check(verdict, check_id):
    return next((c for c in verdict.checks if c["check_id"] == check_id and c["slice"] == "overall"), {})


def _row(label, expected, set_name, control, verdict) -> dict:
    lift = _estimate(verdict, "lift", "mean")
    corner = _estimate(verdict, "corner_heat_max", "mean")
    return {
        "label": label,
        "expected": expected,
        "set": set_name,
        "accuracy": control.accuracy,
        "cf_accuracy": control.counterfactual_accuracy,
        "lift": lift.get("value"),
        "lift_lo": lift.get("lo"),
        "lift_hi": lift.get("hi"),
        "share_lo": _check(verdict, "object-heat-share").get("compared"),
        "corner": corner.get("value"),
        "corner_hi": corner.get("hi"),
        "gate_accuracy": _estimate(verdict, "correct", "rate").get("value"),
        "status": verdict.status,
        "failed": sorted({c["check_id"] for c in verdict.failed_checks}),
        "error": verdict.error,
    }


def _f(value, digits=2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _markdown(rows, args) -> str:
    lines = [
        "# Calibration of the default policy",
        "",
        f"Generated by `python benchmarks/calibrate.py --seeds {' '.join(map(str, args.seeds))}"
        f"{' --quick' if args.quick else ''}` on {date.today().isoformat()} "
        f"({args.n_heldout} held-out images per set, held-out seed {HELDOUT_SEED}; policy: {args.policy or 'policies/default.yaml'}).",
        "",
        "Controls are tiny CNNs (GAP -> Dense) trained on synthetic shapes (`validator.datasets`). Shortcut models",
        "are trained where only the cue carries the label; `cf acc` is their accuracy with the cue shuffled",
        "(chance = 0.5), which proves they use the cue. Clean models are audited on held-out sets that carry each",
        "cue too: a gate that failed them there would be measuring the data, not the model. Partial-cue models",
        "(cue agrees with the label 80% of the time, shapes informative) are reported, not required to fail.",
        "",
        "| model | expected | held-out set | test acc | cf acc | mean lift [95% CI] | P(lift>=1) lower | corner heat (upper) | gate acc | verdict | failing checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['expected']} | {r['set']} | {_f(r['accuracy'])} | {_f(r['cf_accuracy'])} "
            f"| {_f(r['lift'])} [{_f(r['lift_lo'])}, {_f(r['lift_hi'])}] | {_f(r['share_lo'])} "
            f"| {_f(r['corner'], 3)} ({_f(r['corner_hi'], 3)}) | {_f(r['gate_accuracy'])} | {r['status']} "
            f"| {', '.join(r['failed']) or (r['error'] or '–')} |"
        )
    clean = [r for r in rows if r["expected"] == "PASS" and r["lift_lo"] is not None]
    shortcut = [r for r in rows if r["expected"] == "FAIL" and r["lift_lo"] is not None]
    lines += ["", "## Margins", ""]
    if clean and shortcut:
        lines.append(f"- lower bound of mean lift: clean models min {_f(min(r['lift_lo'] for r in clean))}, "
                     f"shortcut models max {_f(max(r['lift_lo'] for r in shortcut))} (threshold 1.5).")
        corners = [r for r in clean if r["corner_hi"] is not None]
        wm = [r for r in shortcut if r["label"].startswith("watermark") and r["corner_hi"] is not None]
        if corners and wm:
            lines.append(f"- upper bound of mean corner heat: clean models max {_f(max(r['corner_hi'] for r in corners), 3)}, "
                         f"watermark models min {_f(min(r['corner_hi'] for r in wm), 3)} (threshold 0.15).")
    wrong = [r for r in rows if r["expected"] != "report" and (r["status"] in ("PASS", "WARN")) != (r["expected"] == "PASS")]
    lines.append(f"- misclassified: {len(wrong)} of {sum(r['expected'] != 'report' for r in rows)} required outcomes.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
