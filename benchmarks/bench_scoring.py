"""Scoring throughput: ``score_maps`` (NumPy + cv2, host) against ``DeviceScorer`` (TensorFlow) on one machine.

    .venv/bin/python benchmarks/bench_scoring.py                   # 224 px, batch 64, ~1 min on 2 cores
    .venv/bin/python benchmarks/bench_scoring.py --size 112 --batch 256 --repeats 9 --json scoring.json

Maps are Grad-CAM-like: a 7x7 ReLU'd Gaussian field (ResNet50's last conv grid) upsampled bilinearly to the
input size (``cv2.resize``), float32; 1 or 2 boxes per map, 20-74 % of the side. Every contender scores the
same batch with the default settings and returns every column on the host:

- ``score_maps``: ``validator.metrics.score_maps(maps, boxes)`` (NumPy, one cv2 connected-components call per
  map).
- ``device float64`` / ``device float32``: ``DeviceScorer(size, size, dtype=...).function`` (a
  ``tf.function`` traced once) on tensors built once, as inside an explainer's traced function, then
  ``.numpy()`` of every column. TensorFlow places it on the GPU when one is visible (``kernels="auto"``
  then picks the GPU layout of the integer work).
- ``device float64, other layout``: the same with the integer work laid out for the other device
  (on a CPU-only machine: the GPU layout, float64 labels and int64 keys), to show what it costs here.
- ``device from numpy``: ``DeviceScorer.score_numpy(maps, boxes)``: padding the boxes and copying the maps in
  included (what a host caller pays).

Repetitions are interleaved round robin (``_common.interleaved``); the table gives medians and the paired
ratio to ``score_maps`` in the same rounds. Before timing, the device columns are checked against
``score_maps`` on the benchmark batch (the largest deviation is printed).
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import describe_machine, interleaved, machine, median, paired_ratio, table, write_json


def grad_cam_like(rng, n, size, grid=7):
    import cv2

    low = np.maximum(rng.normal(size=(n, grid, grid)), 0.0)
    return np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) for m in low]).astype(np.float32)


def random_boxes(rng, n, size):
    boxes = []
    for _ in range(n):
        k = rng.integers(1, 3)
        wh = rng.uniform(0.2, 0.74, size=(k, 2)) * size
        xy = rng.uniform(0, 1, size=(k, 2)) * (size - wh)
        boxes.append(np.concatenate([xy, xy + wh], axis=1))
    return boxes


def max_deviation(ref: dict, out: dict) -> float:
    worst = 0.0
    for name, expected in ref.items():
        got = out[name]
        if not np.array_equal(np.isnan(got), np.isnan(expected)):
            raise AssertionError(f"{name}: NaN pattern differs from score_maps")
        ok = ~np.isnan(expected)
        diff = np.abs(got[ok] - expected[ok]) / np.maximum(np.abs(expected[ok]), 1.0)  # absolute below 1
        worst = max(worst, float(diff.max(initial=0.0)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="map side in pixels (default 224)")
    parser.add_argument("--batch", type=int, default=64, help="maps per batch (default 64)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--json", metavar="OUT", help="also write the measurements as JSON")
    args = parser.parse_args()

    info = machine()
    from validator._tf import tf
    from validator.metrics import score_maps
    from validator.metrics.device import DeviceScorer, label_components, pad_for_device

    rng = np.random.default_rng(0)
    n, size = args.batch, args.size
    maps = grad_cam_like(rng, n, size)
    boxes = random_boxes(rng, n, size)
    padded, counts = pad_for_device(boxes)
    maps_t, boxes_t, counts_t = tf.constant(maps), tf.constant(padded), tf.constant(counts)
    scorers = {dtype: DeviceScorer(size, size, dtype=dtype) for dtype in ("float64", "float32")}
    other = "cpu" if scorers["float64"]._layout.name == "gpu" else "gpu"
    scorers["other"] = DeviceScorer(size, size, kernels=other)

    ref = score_maps(maps, boxes)
    deviation = {}
    for dtype, scorer in scorers.items():
        out = {k: v.numpy() for k, v in scorer.function(maps_t, boxes_t, counts_t).items()}
        deviation[dtype] = max_deviation(ref, out)
    peak = maps.max(axis=(1, 2), keepdims=True)
    _, iterations = label_components(tf.constant(maps >= 0.2 * peak))

    def on_device(scorer):
        def run():
            out = scorer.function(maps_t, boxes_t, counts_t)
            [v.numpy() for v in out.values()]
            return n
        return run

    def host_numpy():
        score_maps(maps, boxes)
        return n

    def from_numpy():
        scorers["float64"].score_numpy(maps, boxes)
        return n

    contenders = {
        "score_maps": host_numpy,
        "device float64": on_device(scorers["float64"]),
        "device float32": on_device(scorers["float32"]),
        f"device float64, {other} layout": on_device(scorers["other"]),
        "device from numpy": from_numpy,
    }
    rates = interleaved(contenders, repeats=args.repeats)
    base = rates["score_maps"]
    rows = []
    for name, samples in rates.items():
        rate = median(samples)
        rows.append([name, rate, 1000.0 * n / rate, paired_ratio(samples, base)])

    print(f"camgate scoring throughput — {describe_machine(info)}")
    print(f"{n} maps of {size}x{size} per batch, 1-2 boxes per map, {args.repeats} interleaved rounds; "
          f"components converged in {int(iterations)} label-propagation rounds")
    print(f"largest deviation from score_maps (absolute, relative above 1): float64 {deviation['float64']:.1e}, "
          f"float32 {deviation['float32']:.1e}, {other} layout {deviation['other']:.1e}\n")
    print(table(["contender", "maps/s", "ms/batch", "x score_maps"], rows))
    if args.json:
        write_json(args.json, {"machine": info, "size": size, "batch": n, "repeats": args.repeats,
                               "label_rounds": int(iterations), "deviation": deviation,
                               "rates": rates})


if __name__ == "__main__":
    main()
