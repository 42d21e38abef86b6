"""Cost of scoring maps and of judging a policy with many classes (Bonferroni-adjusted intervals).

    python benchmarks/bench_policy.py

Random maps and tables: the numbers depend only on shapes, not on what a model learned.
"""

from __future__ import annotations

import time

import numpy as np

from validator.metrics import score_maps
from validator.policy import default_policy_path, evaluate, load_policy


def main() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((32, 224, 224)).astype(np.float32)
    boxes = [np.array([[50, 60, 150, 170.0]])] * 32
    score_maps(maps, boxes)
    started = time.perf_counter()
    for _ in range(10):
        score_maps(maps, boxes)
    print(f"score_maps 32x224x224: {(time.perf_counter() - started) / 10 * 1000:.1f} ms per batch")
    policy = load_policy(default_policy_path())
    for k in (2, 10, 20, 80):
        n = 30
        table = {"class_name": np.repeat([f"c{i}" for i in range(k)], n).astype(object), "area": np.full(k * n, 0.1)}
        for metric in ("relative_lift", "lift", "corner_lift_max"):
            table[metric] = rng.random(k * n)
        for metric in ("dead", "correct"):
            table[metric] = (rng.random(k * n) > 0.5).astype(float)
        started = time.perf_counter()
        evaluate(policy, table, data_summary={"n_records": k * n, "n_skipped": 0})
        print(f"evaluate default policy, {k} classes x {n}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
