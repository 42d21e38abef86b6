"""Slices of the per-sample table and the built-in data checks (enough samples, few skipped records)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping

import numpy as np

from validator.policy.model import Check, Policy
from validator.policy.result import FAIL, NOT_JUDGED, PASS, WARN, CheckResult
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


_SMALL_OUTCOME = {"not_judged": NOT_JUDGED, "warn": WARN, "fail": FAIL}


def data_checks(policy: Policy, classes: list[str | None], data_summary: Mapping) -> list[CheckResult]:
    """data.min_samples (overall), data.min_per_class (each class), data.skipped (records not explained).

    ``data_summary`` may hold ``available_per_class`` ({class: records in the data}) for the messages, and
    the record counts described in :func:`skipped_fraction`."""
    spec = policy.sample
    n_total = sum(c is not None for c in classes)
    results = [_count_result("data.min_samples", "overall", n_total, spec.min_samples,
                             "Too few samples to judge the model", FAIL)]
    available = data_summary.get("available_per_class") or {}
    small = _SMALL_OUTCOME[spec.on_small_class]
    counts = Counter(classes)
    for name in policy_classes(policy, classes):
        n = counts[name]
        note = f"; {available[name]} available in the data" if name in available else ""
        results.append(_count_result("data.min_per_class", f"class={name}", n, spec.min_per_class,
                                     "Too few samples of this class", small, note))
    results.append(_skipped_result(data_summary, len(classes), spec.max_skipped_fraction))
    return results


def _count_result(check_id: str, slice_label: str, n: int, minimum: int, reason: str, below: str,
                  note: str = "") -> CheckResult:
    ok = n >= minimum
    if ok:
        message = f"{check_id}: {n} samples >= min {minimum} ({slice_label}{note})"
    elif below == NOT_JUDGED:
        message = f"{check_id}: only {n} samples (min {minimum}{note}): not judged ({slice_label})"
    else:
        message = f"{reason}: {n} samples < min {minimum} ({slice_label}{note})"
    return CheckResult(
        check_id=check_id, slice=slice_label, metric="n_samples", aggregate="count", bound="point",
        severity="fail" if below == NOT_JUDGED else below.lower(), observed=float(n), lo=float(n),
        hi=float(n), compared=float(n), n=n, min=float(minimum), max=None, baseline=None, change=None,
        outcome=PASS if ok else below, message=message,
    )


def skipped_fraction(data_summary: Mapping, n_rows: int) -> tuple[float, int, int]:
    """(fraction, skipped, records) of records that could not be explained, over one population.

    Two stages skip records: reading the annotations (whole file: ``n_read`` usable, ``n_skipped_read``
    dropped) and decoding the selected ones (``n_selected`` drawn from the usable, ``n_skipped_selected``
    of them unreadable). The selection is a random draw from the usable records, so its skip rate estimates
    the usable records' rate, and the file's rate is f_read + (1 - f_read) * f_selected. Mixing the file's
    skip count with the sample's size instead made 1% missing images read as 20% after sampling 200 of 5,000.
    Callers that give only ``n_records`` / ``n_skipped`` describe a single stage."""
    if "n_read" in data_summary:
        n_read, skip_read = int(data_summary["n_read"]), int(data_summary.get("n_skipped_read", 0))
        n_sel = int(data_summary.get("n_selected", n_rows))
        skip_sel = int(data_summary.get("n_skipped_selected", 0))
        records = n_read + skip_read
        if records == 0:
            return math.nan, 0, 0
        f_read = skip_read / records
        f_sel = skip_sel / n_sel if n_sel > 0 else 1.0
        return f_read + (1.0 - f_read) * f_sel, skip_read + skip_sel, records
    n_skipped = int(data_summary.get("n_skipped", 0))
    # records = explained rows + skipped ones unless the caller says how many it read
    n_records = int(data_summary.get("n_records", n_rows + n_skipped))
    return (n_skipped / n_records if n_records > 0 else math.nan), n_skipped, n_records


def _skipped_result(data_summary: Mapping, n_rows: int, max_fraction: float) -> CheckResult:
    fraction, n_skipped, n_records = skipped_fraction(data_summary, n_rows)
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
    if "n_read" in data_summary:
        counts = (f"{int(data_summary.get('n_skipped_read', 0))} of {n_records} records skipped while reading, "
                  f"{int(data_summary.get('n_skipped_selected', 0))} of {int(data_summary.get('n_selected', n_rows))}"
                  f" selected not decodable")
    else:
        counts = f"{n_skipped} of {n_records} records"
    out_of_scope = int(data_summary.get("n_out_of_scope", 0))
    if out_of_scope:  # said, so that a reader does not look for them among the skipped
        counts += f"; {out_of_scope} records of classes outside --classes not audited, not counted"
    message = f"{lead}: {text} ({counts}, overall)"
    return CheckResult(
        check_id="data.skipped", slice="overall", metric="skipped_fraction", aggregate="rate",
        bound="point", severity="fail", observed=fraction, lo=fraction, hi=fraction, compared=fraction,
        n=n_records, min=None, max=float(max_fraction), baseline=None, change=None, outcome=outcome,
        message=message,
    )
