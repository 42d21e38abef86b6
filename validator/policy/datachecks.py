"""Slices of the per-sample table and the built-in data checks (enough samples, few skipped records)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from validator.policy.model import Check, Policy
from validator.policy.result import FAIL, PASS, WARN, CheckResult
from validator.policy.wording import fmt


def class_column(table: Mapping[str, np.ndarray]) -> list[str | None]:
    """The ``class_name`` column as a list: a str per row, or None where the row has no class."""
    if "class_name" not in table:
        raise ValueError("the per-sample table has no 'class_name' column")
    return [c if isinstance(c, str) else None for c in table["class_name"]]


def present_classes(classes: list[str | None]) -> list[str]:
    return sorted({c for c in classes if c is not None})


def policy_classes(policy: Policy, classes: list[str | None]) -> list[str]:
    """The classes that get per-class slices: the policy's list if set, else those present in the data."""
    return list(policy.classes) if policy.classes is not None else present_classes(classes)


def slice_classes(check: Check, policy: Policy, classes: list[str | None]) -> list[str | None]:
    """Class of each slice the check covers; None is the overall slice."""
    if check.slices == "overall":
        return [None]
    if check.slices == "per_class":
        return list(policy_classes(policy, classes))
    return list(check.slices)


def data_checks(policy: Policy, classes: list[str | None], data_summary: Mapping) -> list[CheckResult]:
    """data.min_samples (overall), data.min_per_class (each class), data.skipped (records not explained)."""
    spec = policy.sample
    n_total = sum(c is not None for c in classes)
    results = [_count_result("data.min_samples", "overall", n_total, spec.min_samples,
                             "Too few samples to judge the model")]
    for name in policy_classes(policy, classes):
        n = sum(c == name for c in classes)
        results.append(_count_result("data.min_per_class", f"class={name}", n, spec.min_per_class,
                                     "Too few samples of this class"))
    results.append(_skipped_result(data_summary, len(classes), spec.max_skipped_fraction))
    return results


def _count_result(check_id: str, slice_label: str, n: int, minimum: int, reason: str) -> CheckResult:
    ok = n >= minimum
    lead = check_id if ok else reason
    message = f"{lead}: {n} samples {'>=' if ok else '<'} min {minimum} ({slice_label})"
    return CheckResult(
        check_id=check_id, slice=slice_label, metric="n_samples", aggregate="count", bound="point",
        severity="fail", observed=float(n), lo=float(n), hi=float(n), compared=float(n), n=n,
        min=float(minimum), max=None, baseline=None, change=None, outcome=PASS if ok else FAIL,
        message=message,
    )


def _skipped_result(data_summary: Mapping, n_rows: int, max_fraction: float) -> CheckResult:
    n_skipped = int(data_summary.get("n_skipped", 0))
    # records = explained rows + skipped ones unless the caller says how many it read
    n_records = int(data_summary.get("n_records", n_rows + n_skipped))
    fraction = n_skipped / n_records if n_records > 0 else math.nan
    if n_records == 0:
        outcome, lead, text = FAIL, "No records could be read", "no records"
    elif fraction > max_fraction:
        outcome, lead = FAIL, "Too many records were skipped"
        text = f"skipped fraction = {fmt(fraction)} > max {fmt(max_fraction)}"
    elif n_skipped > 0:
        outcome, lead = WARN, "Some records were skipped"
        text = f"skipped fraction = {fmt(fraction)} <= max {fmt(max_fraction)}"
    else:
        outcome, lead, text = PASS, "data.skipped", "no records skipped"
    message = f"{lead}: {text} ({n_skipped} of {n_records} records, overall)"
    return CheckResult(
        check_id="data.skipped", slice="overall", metric="skipped_fraction", aggregate="rate",
        bound="point", severity="fail", observed=fraction, lo=fraction, hi=fraction, compared=fraction,
        n=n_records, min=None, max=float(max_fraction), baseline=None, change=None, outcome=outcome,
        message=message,
    )
