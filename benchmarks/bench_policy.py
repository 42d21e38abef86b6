"""Cost of scoring maps and of judging a policy with many classes (Bonferroni-adjusted intervals).

    python benchmarks/bench_policy.py

Random maps and tables: the numbers depend only on shapes, not on what a model learned. Also the cost of a
post-stratified (weighted) bootstrap of the four aggregates against the unweighted one, in one run: the
overall slice is weighted whenever the sample holds the classes in other shares than the data.
"""

from __future__ import annotations

import time

import numpy as np

from validator.metrics import score_maps
from validator.policy import default_policy_path, evaluate, load_policy
from validator.stats import bootstrap_estimates


def weighted_bootstrap(rng) -> None:
    for n in (300, 2000, 10000):
        x, w = rng.random(n), rng.choice([0.5, 1.0, 3.0], n)
        bootstrap_estimates(x[:50], seed=0, weights=w[:50])  # warm-up
        times = {}
        for label, weights in (("unweighted", None), ("weighted", w)):
            started = time.perf_counter()
            bootstrap_estimates(x, seed=0, weights=weights)
            times[label] = time.perf_counter() - started
        print(f"bootstrap mean/median/p10/p90, n={n}: unweighted {times['unweighted']:.3f} s, "
              f"weighted {times['weighted']:.3f} s ({times['weighted'] / times['unweighted']:.1f}x)")


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
        for check in policy.checks:  # every column the default policy reads; 0/1 where a rate counts them
            binary = check.aggregate == "rate" and check.threshold is None
            table[check.metric] = (rng.random(k * n) > 0.5).astype(float) if binary else rng.random(k * n)
        started = time.perf_counter()
        evaluate(policy, table, data_summary={"n_records": k * n, "n_skipped": 0})
        print(f"evaluate default policy, {k} classes x {n}: {time.perf_counter() - started:.2f} s")
    weighted_bootstrap(rng)


if __name__ == "__main__":
    main()
