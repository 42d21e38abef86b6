"""Stratified, deterministic subsampling."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from validator.data import Sample, select_samples
from validator.data.sampling import allocate


def make_samples(sizes: dict) -> list[Sample]:
    out = []
    for class_id, n in sizes.items():
        for i in range(n):
            name = None if class_id is None else f"c{class_id}"
            out.append(Sample(f"img{class_id}_{i:03d}#{name}", f"/x/{class_id}_{i}.png", class_id, name, (), ()))
    return out


def class_counts(samples) -> dict:
    return dict(Counter(s.class_id for s in samples))


def test_proportional_counts_per_class():
    chosen = select_samples(make_samples({0: 50, 1: 30, 2: 20}), 10, seed=0)
    assert class_counts(chosen) == {0: 5, 1: 3, 2: 2}
    assert len({s.sample_id for s in chosen}) == 10


def test_at_least_one_per_class_taken_from_the_largest():
    chosen = select_samples(make_samples({0: 90, 1: 5, 2: 5}), 10, seed=3)
    assert class_counts(chosen) == {0: 8, 1: 1, 2: 1}


def test_fewer_slots_than_classes_goes_to_largest_classes():
    chosen = select_samples(make_samples({0: 5, 1: 3, 2: 1}), 2, seed=0)
    assert class_counts(chosen) == {0: 1, 1: 1}


@pytest.mark.parametrize(
    ("sizes", "total", "expected"),
    [
        ({"a": 7, "b": 2, "c": 1}, 5, {"a": 3, "b": 1, "c": 1}),
        ({0: 3, 1: 100}, 50, {0: 1, 1: 49}),  # remainders .456 vs .544: the larger wins the last slot
        ({0: 2, 1: 100}, 90, {0: 2, 1: 88}),
        ({0: 2, 1: 3}, 99, {0: 2, 1: 3}),  # capped at what exists
    ],
)
def test_allocate_hand_computed(sizes, total, expected):
    assert allocate(sizes, total) == expected


def test_deterministic_and_independent_of_input_order():
    samples = make_samples({0: 40, 1: 25, None: 10})
    first = select_samples(samples, 20, seed=7)
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    assert select_samples(shuffled, 20, seed=7) == first
    assert select_samples(samples, 20, seed=7) == first
    assert [s.sample_id for s in first] == sorted(s.sample_id for s in first)
    # quotas 10.67, 6.67, 2.67: floors 10+6+2, the two spare slots go to the larger classes on a tie
    assert class_counts(first) == {0: 11, 1: 7, None: 2}
    assert select_samples(samples, 20, seed=8) != first  # the seed matters


@pytest.mark.parametrize("limit", [None, 0, -1, 1000])
def test_no_limit_returns_all_sorted(limit):
    samples = make_samples({1: 3, 0: 2})
    chosen = select_samples(samples, limit, seed=0)
    assert [s.sample_id for s in chosen] == sorted(s.sample_id for s in samples)
