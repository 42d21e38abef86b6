"""Before/after figures of issue 20 (verdicts you can trust), on the cached control models.

    python benchmarks/trust_checks.py            # about 2 min with the controls cached (tests' cache)

Audits the clean and watermark shapes controls on 96 held-out watermark images (seed 21) with the default
policy at --batch-size 1 and 32 (how many BG-gaps are defined, and the background-swap outcome), the clean
model against itself under policies/example.yaml's change checks, and a change check on a probe column
(bg_only_skill) with a baseline. Run it on two checkouts (PYTHONPATH=<checkout>) to compare them.
"""

from __future__ import annotations

import os
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

from validator.datasets.controls import train_control
from validator.datasets.synthetic import write_dataset
from validator.gate import audit
from validator.policy import default_policy_path, load_policy

ROOT = Path(__file__).resolve().parents[1]
TODAY = date(2026, 12, 6)


def overall(verdict, ids) -> list:
    return [(c["check_id"], c["outcome"], None if c.get("compared") is None else round(c["compared"], 4))
            for c in verdict.to_dict()["checks"] if c["slice"] == "overall" and c["check_id"] in ids]


def main() -> None:
    cache = Path(os.environ.get("CAMGATE_CACHE", ROOT / ".camgate-cache"))
    clean = str(train_control("clean", seed=0, cache_dir=cache).path)
    watermark = str(train_control("watermark", seed=0, cache_dir=cache).path)
    root = Path(tempfile.mkdtemp())
    coco = str(write_dataset(root / "d", 96, formats=("coco",), seed=21, cue="watermark").coco_path)
    for name, model in (("clean", clean), ("watermark", watermark)):
        for batch in (1, 32):
            v = audit(model, coco, out=root / f"{name}{batch}", today=TODAY, batch_size=batch)
            finite = int(np.isfinite(v.table["bg_gap"]).sum())
            print(f"{name} --batch-size {batch}: bg_gap defined {finite}/{len(v.table['bg_gap'])}",
                  overall(v, {"background-swap", "background-only", "object-heat"}))
    example = load_policy(ROOT / "policies" / "example.yaml").to_dict()
    example.pop("classes", None)  # the example names a two-class model; the shapes controls have three
    example["regions"] = {}
    example["checks"] = [c for c in example["checks"] if not c["metric"].startswith("region_")]
    v = audit(clean, coco, out=root / "self", today=TODAY, policy=example, baseline=clean)
    print("clean vs itself, example.yaml:", v.status, v.error or "",
          overall(v, {"no-heat-regression", "corner-heat-regression"}))
    policy = load_policy(default_policy_path()).to_dict()
    policy["checks"].append({"id": "bg-skill-regression", "metric": "bg_only_skill", "aggregate": "mean",
                             "bound": "upper", "change": {"absolute": 0.05}, "severity": "fail"})
    v = audit(clean, coco, out=root / "probe", today=TODAY, policy=policy, baseline=clean)
    print("change check on bg_only_skill with --baseline:", v.status, v.error or "",
          overall(v, {"bg-skill-regression"}))


if __name__ == "__main__":
    main()
