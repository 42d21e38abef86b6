"""How the gate's numbers are named in MLflow, and which of them a run holds (pure: no MLflow).

The default record (``detail="summary"``, :func:`record_metrics`) is bounded by the policy, never by the number
of classes: per check ``check/<id>/value`` (the value the check compared with its limit: the worst slice's for
a check over several slices), ``check/<id>/threshold`` (its ``min`` or ``max``), ``check/<id>/pass`` (1 when
every judged slice passed, 0 otherwise; absent when nothing was judged) and, for a check over several slices
(``slices: per_class``), ``check/<id>/failing_slices``; then the headline numbers ``gate/ok``,
``gate/status_code`` and ``lift_mean/overall``. Per-class and per-slice statistics go to tables
(:mod:`validator.tracking.content`), not metrics.

``detail="full"`` adds :func:`summary_metrics`, every aggregate of every slice: ``lift``, ``mean``,
``class=tank`` -> ``lift_mean/class_tank`` (with ``_lo`` / ``_hi`` for the 95% interval, or for the interval a
class check judged, whose level is then logged as ``_level``, e.g. 0.975): the MLflow UI groups charts by the
part before ``/``, and metric names cannot contain ``=``.
"""

from __future__ import annotations

import math
import re

from validator.report.escape import mlflow_key

STATUS_CODES = {"PASS": 0, "WARN": 1, "FAIL": 2, "ERROR": 3, "INCONCLUSIVE": 4}
DETAIL_MODES = ("summary", "full")
_JUDGED = ("PASS", "WARN", "FAIL", "INCONCLUSIVE")  # outcomes that compared a value with the limit
_NOT_PASSED = ("WARN", "FAIL", "INCONCLUSIVE")
_NAME_BAD = re.compile(r"[^\w.\- ]")  # metric names: alphanumerics, _ - . space and /
_KEY_BAD = re.compile(r"[^a-zA-Z0-9_.\- ]")  # image keys: ASCII only
# a slice's part of a metric name or image key: MLflow refuses names over 250 characters (a class name can be
# any length), so a longer slice is cut and ends in a hash of the whole (two long names stay two metrics)
SLICE_TOKEN_LIMIT = 120


def slice_token(slice_name: str) -> str:
    """``overall`` -> ``overall``; ``class=tank`` -> ``class_tank`` (``=`` is not allowed in metric names)."""
    return mlflow_key(_NAME_BAD.sub("_", str(slice_name).replace("=", "_")), SLICE_TOKEN_LIMIT)


def metric_name(metric: str, aggregate: str, slice_name: str, bound: str | None = None) -> str:
    """``lift``, ``mean``, ``class=tank``, ``lo`` -> ``lift_mean/class_tank_lo``: the UI groups charts by the
    part before ``/``, so a value and its interval bounds for every slice share one section."""
    suffix = f"_{bound}" if bound else ""
    return f"{_NAME_BAD.sub('_', metric)}_{_NAME_BAD.sub('_', aggregate)}/{slice_token(slice_name)}{suffix}"


def image_key(*parts: str) -> str:
    """``overlays``, ``class_é``, ``worst_0`` -> ``overlays/class__/worst_0`` (keys are ASCII)."""
    return "/".join(_KEY_BAD.sub("_", str(p)) for p in parts)


def record_metrics(verdict, detail: str = "summary") -> dict[str, float]:
    """What a gate record logs: the check metrics and headline numbers, plus with ``detail="full"`` every
    aggregate of every slice (:func:`summary_metrics`)."""
    out = check_metrics(verdict)
    out.update(headline_metrics(verdict))
    if detail == "full" and verdict.summary:
        out.update(summary_metrics(verdict))
    return out


def check_key(check_id: str, field: str) -> str:
    """``object-heat``, ``value`` -> ``check/object-heat/value`` (the UI's "check" chart section)."""
    return f"check/{_NAME_BAD.sub('_', str(check_id))}/{field}"


def check_metrics(verdict) -> dict[str, float]:
    """Per check of ``verdict.checks`` (one row per slice): value, threshold, pass, and failing_slices for a
    check over several slices. At most four metrics per check, whatever the number of classes."""
    by_id: dict[str, list[dict]] = {}
    for c in verdict.checks or []:
        by_id.setdefault(str(c.get("check_id")), []).append(c)
    out: dict[str, float] = {}
    for check_id, rows in by_id.items():
        threshold = next((finite(c.get(k)) for c in rows for k in ("min", "max") if finite(c.get(k)) is not None),
                         None)
        if threshold is not None:
            out[check_key(check_id, "threshold")] = threshold
        judged = [c for c in rows if c.get("outcome") in _JUDGED and finite(c.get("compared")) is not None]
        if judged:
            out[check_key(check_id, "value")] = finite(worst_row(judged).get("compared"))
            out[check_key(check_id, "pass")] = 0.0 if any(c["outcome"] in _NOT_PASSED for c in judged) else 1.0
        if len(rows) > 1:
            out[check_key(check_id, "failing_slices")] = float(sum(c.get("outcome") in _NOT_PASSED for c in rows))
    return out


def worst_row(rows: list[dict]) -> dict:
    """The slice furthest on the wrong side of its limit (the lowest value under a ``min``, the highest over a
    ``max``); a check with neither (a change check) reports its first failing slice, else its first."""
    def shortfall(c: dict) -> float:
        value, low, high = finite(c.get("compared")), finite(c.get("min")), finite(c.get("max"))
        margins = [m for m in ((low - value) if low is not None else None,
                               (value - high) if high is not None else None) if m is not None]
        if margins:
            return max(margins)
        return 1.0 if c.get("outcome") in _NOT_PASSED else 0.0

    return max(rows, key=shortfall)  # max keeps the first of equals


def headline_metrics(verdict) -> dict[str, float]:
    """``gate/ok``, ``gate/status_code`` and, where the audit measured it, ``lift_mean/overall``."""
    out = {
        "gate/ok": 1.0 if verdict.ok else 0.0,
        "gate/status_code": float(STATUS_CODES.get(verdict.status, 3)),
    }
    lift = finite((((verdict.summary or {}).get("overall") or {}).get("lift") or {}).get("mean", {}).get("value"))
    if lift is not None:
        out["lift_mean/overall"] = lift
    return out


def summary_metrics(verdict) -> dict[str, float]:
    """Flat ``{name: value}`` of every finite aggregate in ``verdict.summary`` plus the ``gate/*`` metrics."""
    out: dict[str, float] = {}
    for slice_name, per_metric in (verdict.summary or {}).items():
        n_max = 0
        for metric, per_agg in per_metric.items():
            for aggregate, stat in per_agg.items():
                if not isinstance(stat, dict):
                    continue
                # "level": the interval's confidence where a class check judged it above 95%
                for bound, key in ((None, "value"), ("lo", "lo"), ("hi", "hi"), ("level", "confidence")):
                    value = finite(stat.get(key))
                    if value is not None:
                        out[metric_name(metric, aggregate, slice_name, bound)] = value
                n_max = max(n_max, int(stat.get("n") or 0))
        out[f"n_samples/{slice_token(slice_name)}"] = float(n_max)
    out.update(gate_metrics(verdict))
    out.update(evidence_metrics(verdict))
    return out


def evidence_metrics(verdict) -> dict[str, float]:
    """The sanity cascade per stage (``sanity/spearman_top_<k>``) and the count of SpRAy clusters flagged off
    the object (``discovery/n_flagged_clusters``): the curves a reviewer compares across runs."""
    out: dict[str, float] = {}
    for stage in ((verdict.probes or {}).get("sanity") or {}).get("stages") or []:
        value = finite(stage.get("mean"))
        if value is not None:
            out[f"sanity/spearman_top_{int(stage['n_top'])}"] = value
    passes = finite(((verdict.probes or {}).get("hotspot") or {}).get("forward_passes_per_image"))
    if passes is not None:  # the hot-spot probe's cost beside its hotspot_drop aggregates
        out["hotspot/forward_passes_per_image"] = passes
    clusters = ((verdict.discovery or {}).get("clusters") or {}).values()
    if verdict.discovery:
        out["discovery/n_flagged_clusters"] = float(sum(bool(c.get("off_object")) for e in clusters
                                                        for c in e.get("clusters") or []))
    return out


def gate_metrics(verdict) -> dict[str, float]:
    return {
        "gate/ok": 1.0 if verdict.ok else 0.0,
        "gate/status_code": float(STATUS_CODES.get(verdict.status, 3)),
        "gate/exit_code": float(verdict.exit_code),
        "gate/n_fail": float(len(verdict.failed_checks)),
        "gate/n_warn": float(len(verdict.warned_checks)),
        "gate/n_inconclusive": float(len(verdict.inconclusive_checks)),
        "gate/n_not_judged_classes": float(len((verdict.sample or {}).get("not_judged_classes") or [])),
        "gate/n_checks": float(len(verdict.checks)),
        "gate/wall_seconds": float(round(verdict.wall_seconds, 3)),
    }


def finite(value) -> float | None:
    """``value`` as a float, or None if it is missing, not a number, NaN or infinite."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


__all__ = ["STATUS_CODES", "DETAIL_MODES", "slice_token", "metric_name", "image_key", "record_metrics",
           "check_key", "check_metrics", "worst_row", "headline_metrics", "summary_metrics", "gate_metrics",
           "evidence_metrics", "finite"]
