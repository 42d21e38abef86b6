"""The hot-spot probe's control region and the object's outline zone, measured on the calibration controls.

    python benchmarks/hotspot_control.py            # about 3 min with the calibration's models cached

For each control model on its calibration held-out set (every image, up to 200), the mean ``hotspot_drop``
(± its 95% half-width) under three variants of ``validator.probes.hotspot``:

- ``anywhere``: the control region drawn anywhere clear of the object, the spot taken right up to the
  object's edge (the probe before 2026-12-06);
- ``matched``: the control region matched in its distance from the object (the shipped ``random_region``),
  the spot still right up to the edge;
- ``shipped``: matched, and the object's outline zone (``beside_reach`` px) kept out of the spot, the region
  and the fill (the shipped probe).

The models are the calibration's (``benchmarks/calibrate.py``: trained and cached on first use), the maps
Grad-CAM at the default layer, the fill ``tile``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import calibrate  # noqa: E402

WORKDIR = Path(".camgate-cache/calibration")
# (job label in calibrate.py, held-out set)
CASES = (
    ("digits10 corner_mark partial 0.97", "digits10/corner_mark"),
    ("digits10 corner_mark partial 0.9", "digits10/corner_mark"),
    ("digits10 clean s102", "digits10/clean"),
    ("digits20 clean s102", "digits20/clean"),
    ("clean s102", "shapes/clean"),
    ("marks clean s102", "shapes/random_mark"),
    ("marks clean s102", "shapes/beside_mark"),
    ("large clean s102", "large/clean"),
    ("beside_mark s100", "shapes/beside_mark"),
    ("beside_mark partial 0.9", "shapes/beside_mark"),
    ("beside_mark partial 0.7", "shapes/beside_mark"),
    ("watermark partial 0.9", "shapes/watermark"),
    ("random_mark partial 0.9", "shapes/random_mark"),
    ("edge_strip partial 0.6", "shapes/edge_strip"),
)


def _jobs():
    jobs = [j for s in (100, 101, 102) for j in calibrate.jobs_for(s, calibrate.FAMILIES)]
    jobs += calibrate.partial_jobs(100, [0.6, 0.7, 0.9])
    jobs += calibrate.partial_jobs(100, [0.6, 0.7, 0.9], calibrate.MARK_CUES, "marks/{cue}")
    jobs += calibrate.partial_jobs(100, [0.9, 0.97], ("corner_mark",), "digits10", "digits10",
                                   family="digits", n_classes=10)
    return {j.label: j for j in jobs}


def anywhere_region(spot, exclude, rng):
    """The control before 2026-12-06: 64 random places clear of ``exclude``, the least overlapping the spot."""
    height, width = spot.shape
    rows, cols = np.flatnonzero(spot.any(axis=1)), np.flatnonzero(spot.any(axis=0))
    crop = spot[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    bh, bw = crop.shape
    best, best_overlap = None, np.inf
    for y, x in zip(rng.integers(0, height - bh + 1, 64), rng.integers(0, width - bw + 1, 64), strict=True):
        if (exclude[y:y + bh, x:x + bw] & crop).any():
            continue
        overlap = (spot[y:y + bh, x:x + bw] & crop).sum()
        if overlap < best_overlap:
            best, best_overlap = (y, x), overlap
    if best is None:
        return None
    placed = np.zeros_like(spot)
    placed[best[0]:best[0] + bh, best[1]:best[1] + bw] = crop
    return placed


def main() -> int:
    from validator.datasets.controls import train_control
    from validator.explain.engine import Explainer
    from validator.explain.predict import Predictor
    from validator.probes import hotspot as hs
    from validator.probes.counterfactual import _masks

    jobs = _jobs()
    print("| model | held-out set | n | anywhere | matched | shipped |")
    print("|---|---|---|---|---|---|")
    for label, set_name in CASES:
        job = jobs[label]
        control = train_control(seed=job.seed, cache_dir=WORKDIR / "models", **job.model)
        data = calibrate.write_heldout(set_name, WORKDIR / "heldout" / set_name.replace("/", "-"))
        images, labels, boxes = _read_coco(data, 200)
        explainer = Explainer(str(control.path))
        predict = Predictor(explainer.loaded)
        result = explainer.explain(images, labels)
        maps, n = np.asarray(result.maps), len(images)
        objects = _masks(boxes, n, *images.shape[1:3])
        reach = hs.beside_reach(*images.shape[1:3])
        grown = np.stack([cv2.dilate(o.astype(np.uint8), np.ones((2 * reach + 1,) * 2, np.uint8)).astype(bool)
                          for o in objects])
        cells = []
        for keep_out, place_region in ((objects, anywhere_region), (objects, hs.random_region),
                                       (grown, hs.random_region)):
            spots = np.stack([hs.hot_spot(maps[i], keep_out[i]) for i in range(n)])
            others = [place_region(spots[i], keep_out[i], np.random.default_rng([0, i])) if spots[i].any() else None
                      for i in range(n)]
            ok = np.array([o is not None for o in others])
            others = np.stack([o if o is not None else np.zeros_like(spots[0]) for o in others])
            at = np.arange(n)
            p_hot = predict(hs._filled(images, keep_out, spots, "tile"))[at, labels]
            p_other = predict(hs._filled(images, keep_out, others, "tile"))[at, labels]
            drop = (p_other - p_hot)[ok]
            cells.append(f"{drop.mean():.3f} ± {1.96 * drop.std(ddof=1) / np.sqrt(len(drop)):.3f}")
        print(f"| {label} | {set_name} | {n} | " + " | ".join(cells) + " |", flush=True)
    return 0


def _read_coco(path: Path, limit: int):
    import json

    coco = json.loads(path.read_text())
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    categories = sorted(c["id"] for c in coco["categories"])
    images, labels, boxes = [], [], []
    for ann in coco["annotations"][:limit]:
        bgr = cv2.imread(str(path.parent / files[ann["image_id"]]), cv2.IMREAD_COLOR)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32))
        labels.append(categories.index(ann["category_id"]))
        x, y, w, h = ann["bbox"]
        boxes.append(np.array([[x, y, x + w, y + h]], dtype=float))
    return np.stack(images), np.array(labels), boxes


if __name__ == "__main__":
    raise SystemExit(main())
