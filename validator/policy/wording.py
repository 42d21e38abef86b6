"""How a check's quantity and numbers read in messages ("lower 95% bound of mean lift = 1.21")."""

from __future__ import annotations

import math

from validator.policy.model import Check

_AGGREGATE_WORDS = {"mean": "mean", "median": "median", "p10": "10th percentile of", "p90": "90th percentile of"}


def fmt(value: float | None) -> str:
    """Four significant digits; 'n/a' for a value that could not be computed."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def quantity(check: Check) -> str:
    """'mean lift', 'share of samples with lift >= 1', 'rate of dead', ..."""
    if check.aggregate == "rate":
        if check.threshold is not None:
            return f"share of samples with {check.metric} >= {fmt(check.threshold)}"
        return f"rate of {check.metric}"
    return f"{_AGGREGATE_WORDS[check.aggregate]} {check.metric}"


def level(confidence: float) -> str:
    """0.95 -> '95%', 0.99375 -> '99.38%'."""
    return f"{confidence * 100:.4g}%"


def bounded_quantity(check: Check, confidence: float = 0.95) -> str:
    """The quantity with the end of the interval that is compared."""
    if check.bound == "point":
        return quantity(check)
    return f"{check.bound} {level(confidence)} bound of {quantity(check)}"


def interval(value: float, lo: float, hi: float, confidence: float = 0.95) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{fmt(value)}, no interval"
    return f"{fmt(value)}, {level(confidence)} CI [{fmt(lo)}, {fmt(hi)}]"


def change_words(change: dict) -> str:
    """'absolute -0.05' or 'relative -10%'."""
    ((kind, value),) = change.items()
    return f"relative {value * 100:+g}%" if kind == "relative" else f"absolute {value:+g}"
