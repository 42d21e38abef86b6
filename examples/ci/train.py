"""A stand-in training job for CI: writes build/model.keras and a held-out set with boxes.

In your pipeline this is your own training script; what the gate needs from it is a saved `.keras` model (or
an MLflow model URI) and an annotated held-out sample (COCO JSON, VOC folder or CSV manifest).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build")
    parser.add_argument("--kind", default="clean", help="clean, or a shortcut to see the gate fail: watermark|weather|background")
    parser.add_argument("--n-heldout", type=int, default=200)
    args = parser.parse_args()

    from validator.datasets.controls import train_control
    from validator.datasets.synthetic import write_dataset

    out = Path(args.out)
    control = train_control(args.kind, seed=0, cache_dir=os.environ.get("CAMGATE_CACHE") or out / "cache")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(control.path, out / "model.keras")
    cue = None if args.kind == "clean" else args.kind
    write_dataset(out / "heldout", args.n_heldout, seed=21, cue=cue)
    print(f"wrote {out / 'model.keras'} (test accuracy {control.accuracy:.2f}) and {out / 'heldout/annotations.json'}")


if __name__ == "__main__":
    main()
