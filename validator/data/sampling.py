"""Deterministic stratified subsampling of the held-out set."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from validator.data.records import Sample


def _class_key(class_id: int | None) -> tuple[bool, int]:
    return (class_id is None, class_id or 0)  # None (no-box, unlabelled) sorts last


def allocate(sizes: dict, total: int) -> dict:
    """Per-stratum counts summing to ``min(total, sum(sizes))``: proportional (largest remainder),
    at least one per stratum where ``total`` allows (largest strata first when it does not).
    Ties go to the larger stratum, then to the smaller class id."""
    n_all = sum(sizes.values())
    total = min(total, n_all)
    keys = sorted(sizes, key=lambda k: (-sizes[k], _class_key(k)))
    if total < len(keys):
        return {k: int(i < total) for i, k in enumerate(keys)}
    # Exact fractions: float quotas would break ties between equal remainders by rounding noise.
    quotas = {k: Fraction(total * sizes[k], n_all) for k in keys}
    counts = {k: min(sizes[k], max(1, math.floor(quotas[k]))) for k in keys}
    # The minimum of one can push the sum over the total: take back from the largest allocations.
    while sum(counts.values()) > total:
        reducible = [k for k in keys if counts[k] > 1]
        k = max(reducible, key=lambda k: (counts[k] - quotas[k], counts[k]))
        counts[k] -= 1
    # Hand out what is left by largest remainder, never more than a stratum holds.
    while sum(counts.values()) < total:
        open_keys = [k for k in keys if counts[k] < sizes[k]]
        k = max(open_keys, key=lambda k: quotas[k] - counts[k])
        counts[k] += 1
    return counts


def quota(sizes: dict, max_samples: int | None, min_per_class: int = 0) -> dict:
    """Per-class counts: proportional allocation of ``max_samples``, then every labelled class topped up to
    ``min_per_class`` where it has that many records (else all of them). The total can therefore exceed
    ``max_samples``: with many classes, judging each class needs ``min_per_class`` of each (a 200-sample
    budget over 10 classes would leave 20 per class and no class could be judged)."""
    if max_samples is None or max_samples <= 0:
        return dict(sizes)
    counts = allocate(sizes, max_samples)
    for key, size in sizes.items():
        if key is not None:  # unlabelled records are never judged per class
            counts[key] = max(counts[key], min(size, min_per_class))
    return counts


def select_samples(samples: Sequence[Sample], max_samples: int | None, seed: int,
                   min_per_class: int = 0) -> list[Sample]:
    """Stratified-by-class subset, sorted by sample_id: ``quota(...)`` samples of each class.

    The same set of samples and seed give the same subset whatever the input order. ``max_samples`` None or
    <= 0: all. ``min_per_class`` tops small classes up (see :func:`quota`).
    """
    ordered = sorted(samples, key=lambda s: s.sample_id)
    by_class: dict[int | None, list[Sample]] = {}
    for sample in ordered:
        by_class.setdefault(sample.class_id, []).append(sample)
    counts = quota({k: len(v) for k, v in by_class.items()}, max_samples, min_per_class)
    if sum(counts.values()) >= len(ordered):
        return ordered
    rng = np.random.default_rng(seed)
    chosen: list[Sample] = []
    for class_id in sorted(by_class, key=_class_key):
        members = by_class[class_id]
        picks = rng.choice(len(members), size=counts[class_id], replace=False)
        chosen.extend(members[i] for i in picks)
    return sorted(chosen, key=lambda s: s.sample_id)
