"""Evaluate a policy's checks on the per-sample table, slice by slice, and apply waivers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from validator.errors import CamgateError
from validator.metrics import MetricInfo
from validator.metrics.registry import EDGES, HEATMAP
from validator.policy.datachecks import class_column, data_checks, slice_classes
from validator.policy.missing import undefined_sentence
from validator.policy.model import Check, Policy
from validator.policy.result import FAIL, INCONCLUSIVE, NOT_JUDGED, PASS, SKIPPED, WARN, CheckResult
from validator.policy.schema import metric_infos
from validator.policy.waivers import apply_waivers
from validator.policy.wording import bounded_quantity, change_words, fmt, interval, level
from validator.stats import Estimate, aggregate, paired_change, post_stratified_weights, resamples_for

_SEVERITY_OUTCOME = {"fail": FAIL, "warn": WARN, "not_judged": NOT_JUDGED, "inconclusive": INCONCLUSIVE}
_RANK = {SKIPPED: 0, NOT_JUDGED: 0, PASS: 1, WARN: 2, INCONCLUSIVE: 3, FAIL: 4}
FAMILY_CONFIDENCE = 0.95


def slice_confidence(policy: Policy, n_slices: int, per_class: bool) -> float:
    """Confidence of each interval so that the check's class slices hold together at 95%.

    Bonferroni: with k class slices each interval is a 1 - 0.05 / k interval, so the chance that any clean
    class crosses its bound by luck is at most 5% whatever the dependence between classes. (Holm's step-down
    is for p-values, not for the interval bounds a check compares.) The overall slice keeps 95%."""
    if not per_class or n_slices <= 1 or policy.multiple_comparisons == "none":
        return FAMILY_CONFIDENCE
    return 1.0 - (1.0 - FAMILY_CONFIDENCE) / n_slices


def evaluate(policy: Policy, table: Mapping[str, np.ndarray], *, data_summary: Mapping,
             baseline_table: Mapping[str, np.ndarray] | None = None, today: date | None = None,
             seed: int = 0) -> list[CheckResult]:
    """Built-in data checks, then every check x slice in policy order, with active waivers applied."""
    today = today or date.today()
    infos = metric_infos(policy.regions)
    classes = class_column(table)
    # one pass over the class column per table; every slice mask below is a vectorised comparison
    labels = np.asarray(classes, dtype=object)
    results = data_checks(policy, classes, data_summary)
    available = data_summary.get("available_per_class")  # the overall slice is weighted to the data's classes
    no_boxes = data_summary.get("n_with_box") == 0
    masks_only = every_region_is_a_mask(table)
    for check in policy.checks:
        info = infos[check.metric]
        mask_limits = bool(check.with_masks) and masks_only
        if mask_limits:
            check = replace(check, **check.with_masks)
        if no_boxes and info.needs_box:
            results.append(_no_box_result(check))
            continue
        slices = slice_classes(check, policy, classes)
        class_slices = [c for c in slices if c is not None]
        for class_name in slices:
            confidence = slice_confidence(policy, len(class_slices), class_name is not None)
            new = _estimate(check, info, policy, table, labels, class_name, seed, confidence, available)
            base = None
            if check.change and baseline_table is not None:
                base = _paired_change(check, info, policy, table, baseline_table, labels, class_name, seed,
                                      confidence)
            result = _judge(check, info, policy, new, base, baseline_table is not None,
                            _slice_label(class_name), confidence)
            result.confidence = confidence
            if result.outcome in (FAIL, WARN) and check.metric.startswith(CORNER_PREFIXES):
                result.message += "; " + corner_sentence(table, _slice_rows(labels, class_name))
            if result.outcome in (FAIL, WARN) and check.metric.startswith(EDGE_PREFIXES):
                result.message += "; " + edge_sentence(table, _slice_rows(labels, class_name))
            if mask_limits:
                result.message += "; judged by the check's limits for masks (every object region is a mask)"
            if result.n < check.min_samples:  # too few values: say why when the metric knows (faithfulness_gain)
                why = undefined_sentence(table, info, _slice_rows(labels, class_name))
                result.message += f"; {why}" if why else ""
            results.append(result)
    return distrust_heatmaps(apply_waivers(results, policy.waivers, today), infos)


def every_region_is_a_mask(table: Mapping[str, np.ndarray]) -> bool:
    """True when every sample with an object region has it from masks alone (the ``region`` column): then a
    check's ``with_masks`` limits apply. A set mixing boxes and masks keeps the box limits."""
    if "region" not in table:
        return False
    regions = np.asarray(table["region"], dtype=object)
    regions = regions[(regions != "none") & np.not_equal(regions, None)]
    return bool(len(regions)) and bool(np.all(regions == "mask"))


def distrust_heatmaps(results: list[CheckResult], infos: Mapping[str, MetricInfo]) -> list[CheckResult]:
    """A violated ``severity: inconclusive`` check (the explainer sanity check) says the maps do not depend
    on what the model learned: every heatmap check that PASSed or WARNed becomes INCONCLUSIVE, since its
    evidence cannot be trusted. A FAIL stays FAIL (the gate fails closed), and probes that do not read the
    map keep their outcome."""
    doubts = [r for r in results if r.severity == "inconclusive" and r.outcome == INCONCLUSIVE]
    if not doubts:
        return results
    why = "; ".join(f"{r.check_id} {r.slice}" for r in doubts)
    for r in results:
        info = infos.get(r.metric)
        if r.outcome in (PASS, WARN) and info is not None and info.source == HEATMAP:
            r.outcome = INCONCLUSIVE
            r.message += f"; not trusted: the maps barely change when the model's weights are randomised ({why})"
    return results


def _no_box_result(check: Check) -> CheckResult:
    nan = float("nan")
    return CheckResult(
        check_id=check.id, slice="overall", metric=check.metric, aggregate=check.aggregate, bound=check.bound,
        severity=check.severity, observed=nan, lo=nan, hi=nan, compared=nan, n=0, min=check.min, max=check.max,
        baseline=None, change=dict(check.change) if check.change else None, outcome=NOT_JUDGED,
        message=f"{check.id}: the data has no object boxes, and {check.metric} needs them: not judged "
                f"(the box-free checks judge this model; the heat atlas is shown, not judged)",
    )


CORNER_PREFIXES = ("corner_lift_", "corner_heat_")
_CORNER_WORDS = {"tl": "top-left", "tr": "top-right", "bl": "bottom-left", "br": "bottom-right"}
_ONE_CORNER_SHARE = 0.6  # above this share of images, one corner holds the evidence; else "the corners"


def corner_sentence(table: Mapping[str, np.ndarray], rows: np.ndarray) -> str:
    """Where the corner evidence sits: the corner that is hottest in most images, or all of them."""
    return _hottest_sentence(table, rows, [f"corner_lift_{c}" for c in _CORNER_WORDS],
                             list(_CORNER_WORDS.values()), "corner", "in the {} corner", "in the corners")


EDGE_PREFIXES = ("edge_lift_",)


def edge_sentence(table: Mapping[str, np.ndarray], rows: np.ndarray) -> str:
    """Where the edge evidence sits: the edge whose lift is largest in most images, or "the edges"."""
    return _hottest_sentence(table, rows, [f"edge_lift_{e}" for e in EDGES], list(EDGES), "edge",
                             "along the {} edge", "along the edges")


def _hottest_sentence(table, rows, columns, names, noun, one, many) -> str:
    """"the evidence sits <one>" when one region is the hottest (largest lift) in >= _ONE_CORNER_SHARE of
    the images, else "<many>, no single one", with the per-image shares."""
    if not all(c in table for c in columns):
        return f"the evidence sits {many}"
    lifts = np.stack([np.asarray(table[c], dtype=float)[rows] for c in columns], axis=1)
    usable = np.isfinite(lifts).any(axis=1)
    if not usable.any():
        return f"the evidence sits {many}"
    hottest = np.argmax(np.where(np.isfinite(lifts[usable]), lifts[usable], -np.inf), axis=1)
    shares = np.bincount(hottest, minlength=len(columns)) / len(hottest)
    detail = ", ".join(f"{names[i]} {shares[i]:.0%}" for i in np.argsort(-shares, kind="stable"))
    top = int(np.argmax(shares))
    if shares[top] >= _ONE_CORNER_SHARE:
        return f"the evidence sits {one.format(names[top])} (hottest {noun} per image: {detail})"
    return f"the evidence sits {many}, no single one (hottest {noun} per image: {detail})"


def _slice_rows(labels: np.ndarray, class_name: str | None) -> np.ndarray:
    """Rows of the slice: labelled rows, of ``class_name`` when given (``labels``: object array, None = none)."""
    rows = np.not_equal(labels, None).astype(bool)
    if class_name is not None:
        rows &= (labels == class_name).astype(bool)
    return rows


def _slice_label(class_name: str | None) -> str:
    return "overall" if class_name is None else f"class={class_name}"


def _estimate(check: Check, info: MetricInfo, policy: Policy, table: Mapping[str, np.ndarray],
              labels: np.ndarray, class_name: str | None, seed: int,
              confidence: float = FAMILY_CONFIDENCE, available: Mapping[str, int] | None = None) -> Estimate:
    """The check's aggregate over the slice's usable rows (NaN values are dropped by aggregate).

    The overall slice is post-stratified: each row weighted by its class's share of the data
    (``available``: {class: records in the data}) over its share of the rows, so the stratified sample's
    topped-up small classes do not move the estimate. A class slice needs no weights (they are constant)."""
    rows = _check_rows(info, policy, table, labels, class_name)
    values = np.asarray(_column(check, table), dtype=float)[rows]
    weights = post_stratified_weights(labels, available) if class_name is None else None
    return aggregate(values, check.aggregate, threshold=check.threshold, seed=seed, confidence=confidence,
                     n_resamples=resamples_for(confidence), weights=None if weights is None else weights[rows])


def _column(check: Check, table: Mapping[str, np.ndarray], which: str = "per-sample table") -> np.ndarray:
    if check.metric not in table:
        raise CamgateError(f"check {check.id!r}: the {which} has no column {check.metric!r}")
    return table[check.metric]


def _check_rows(info: MetricInfo, policy: Policy, table: Mapping[str, np.ndarray], labels: np.ndarray,
                class_name: str | None) -> np.ndarray:
    """The slice's rows that the check reads."""
    rows = _slice_rows(labels, class_name)
    if info.needs_box:
        # boxes covering most of the frame carry little signal: the caller counts them, we leave them out
        area = np.asarray(table["area"], dtype=float)
        with np.errstate(invalid="ignore"):
            rows &= np.isfinite(area) & (area <= policy.sample.max_box_area)
    return rows


def _pairs(check: Check, rows: np.ndarray, table, baseline_table) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (new, baseline) of the same samples: by sample_id, or by position in tables without ids."""
    if "sample_id" in table and "sample_id" in baseline_table:
        base_row = {sid: i for i, sid in enumerate(np.asarray(baseline_table["sample_id"], dtype=object))}
        ids = np.asarray(table["sample_id"], dtype=object)[rows]
        pairs = [(i, base_row[sid]) for i, sid in zip(rows, ids, strict=True) if sid in base_row]
        return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))
    n_base = len(next(iter(baseline_table.values()), ()))
    n_new = len(next(iter(table.values()), ()))
    if n_base != n_new:
        raise CamgateError(f"check {check.id!r}: the tables have no sample_id column to pair the samples and "
                           f"differ in length ({n_new} vs {n_base} rows)")
    return rows, rows


@dataclass
class _Change:
    """new - baseline of the check's aggregate over the samples both models scored (paired), and the baseline's."""

    delta: Estimate
    baseline: float


def _paired_change(check: Check, info: MetricInfo, policy: Policy, table: Mapping[str, np.ndarray],
                   baseline_table: Mapping[str, np.ndarray], labels: np.ndarray, class_name: str | None,
                   seed: int, confidence: float) -> _Change:
    """Both models are scored on the same samples: the change is judged on the per-sample pairs, joined by
    sample_id, so the spread between samples that both share does not count against the new model."""
    rows = np.flatnonzero(_check_rows(info, policy, table, labels, class_name))
    mine, theirs = _pairs(check, rows, table, baseline_table)
    new = np.asarray(_column(check, table), dtype=float)[mine]
    base = np.asarray(_column(check, baseline_table, "baseline's per-sample table"), dtype=float)[theirs]
    delta, base_value = paired_change(new, base, check.aggregate, threshold=check.threshold, seed=seed,
                                      confidence=confidence, n_resamples=resamples_for(confidence))
    return _Change(delta, base_value)


def _compared(check: Check, est: Estimate) -> float:
    return {"point": est.value, "lower": est.lo, "upper": est.hi}[check.bound]


@dataclass
class _Verdict:
    outcome: str
    reasons: list[str]
    sentence: bool = False  # reasons are whole sentences, not comparisons like "< min 1.5"


def _judge(check: Check, info: MetricInfo, policy: Policy, new: Estimate, base: _Change | None,
           has_baseline_table: bool, slice_label: str, confidence: float = FAMILY_CONFIDENCE) -> CheckResult:
    compared = _compared(check, new)
    what = bounded_quantity(check, confidence)
    failed = _SEVERITY_OUTCOME[check.severity]
    baseline_value = base.baseline if base is not None and base.delta.n > 0 else None
    context = f"({check.aggregate} {interval(new.value, new.lo, new.hi, confidence)}, n={new.n}, {slice_label})"

    if new.n < check.min_samples or not math.isfinite(compared):
        outcome = _SEVERITY_OUTCOME[check.on_missing]
        if new.n == 0:
            why = f"no samples with a defined {check.metric} in {slice_label}"
        elif new.n < check.min_samples:
            why = f"only {new.n} samples with a defined {check.metric} in {slice_label} " \
                  f"(min_samples {check.min_samples})"
        else:
            why = f"{what} could not be computed with n={new.n}"
        if outcome == NOT_JUDGED:  # say what is true: the slice was too small, not that it was bad
            message = f"{check.id}: {why}: not judged ({check.metric} {check.aggregate} " \
                      f"{interval(new.value, new.lo, new.hi, confidence)})"
        else:
            message = f"{check.description or check.id}: {why}; {what} = {fmt(compared)} {context}"
        return _result(check, slice_label, new, compared, baseline_value, outcome, message, base)

    verdicts = [_judge_range(check, compared, failed)]
    if check.change:
        verdicts.append(_judge_change(check, info, policy, base, has_baseline_table, failed, confidence))
    verdicts = [v for v in verdicts if v is not None]
    outcome = max((v.outcome for v in verdicts), key=_RANK.__getitem__)
    # a failing result lists only what failed; a passing one shows every comparison it made
    relevant = [v for v in verdicts if outcome == PASS or v.outcome in (outcome, SKIPPED)]
    comparisons = ", ".join(r for v in relevant if not v.sentence for r in v.reasons)
    sentences = "".join(f"; {r}" for v in relevant if v.sentence for r in v.reasons)
    lead = (check.description or check.id) if outcome in (FAIL, WARN) else check.id
    message = f"{lead}: {what} = {fmt(compared)}{' ' if comparisons else ''}{comparisons}{sentences} {context}"
    if outcome == PASS:
        message += _not_shown(check, new.value)
    return _result(check, slice_label, new, compared, baseline_value, outcome, message, base)


def _not_shown(check: Check, value: float) -> str:
    """A pass on the lenient end of the interval while the point estimate is beyond the threshold says so:
    the check did not show the value to be low (or high); it did not show it to be fine either."""
    if check.bound == "point" or not math.isfinite(value):
        return ""
    if check.min is not None and value < check.min:
        return (f"; not shown to be low (the interval reaches the threshold): {check.aggregate} {fmt(value)} "
                f"< min {fmt(check.min)}")
    if check.max is not None and value > check.max:
        return (f"; not shown to be high (the interval reaches the threshold): {check.aggregate} {fmt(value)} "
                f"> max {fmt(check.max)}")
    return ""


def _judge_range(check: Check, compared: float, failed: str) -> _Verdict | None:
    if check.min is None and check.max is None:
        return None
    broken, held = [], []
    if check.min is not None:
        (broken if compared < check.min else held).append(
            f"{'<' if compared < check.min else '>='} min {fmt(check.min)}")
    if check.max is not None:
        (broken if compared > check.max else held).append(
            f"{'>' if compared > check.max else '<='} max {fmt(check.max)}")
    return _Verdict(failed, broken) if broken else _Verdict(PASS, held)


def _judge_change(check: Check, info: MetricInfo, policy: Policy, base: _Change | None,
                  has_baseline_table: bool, failed: str, confidence: float) -> _Verdict:
    """The paired change new - baseline, at the interval end the check's ``bound`` names, against the signed
    tolerance (see policies/example.yaml for the convention)."""
    delta = base.delta if base is not None else None
    if delta is None or delta.n == 0 or not math.isfinite(base.baseline):
        why = "no baseline model" if not has_baseline_table else "the baseline has no data for this slice"
        if policy.on_missing_baseline == "fail":
            return _Verdict(FAIL, [f"change vs baseline cannot be checked: {why} (on_missing_baseline: fail)"],
                            sentence=True)
        return _Verdict(SKIPPED, [f"change vs baseline skipped: {why}"], sentence=True)
    compared = _compared(check, delta)
    if not math.isfinite(compared):
        return _Verdict(SKIPPED, [f"change vs baseline skipped: {delta.n} paired sample(s) give no interval"],
                        sentence=True)
    ((kind, tolerance),) = check.change.items()
    # relative tolerances scale with the baseline's magnitude so the sign convention holds for any baseline
    limit = tolerance * abs(base.baseline) if kind == "relative" else tolerance
    ok = compared >= limit if info.higher_is_better else compared <= limit
    op = (">=" if ok else "<") if info.higher_is_better else ("<=" if ok else ">")
    end = "" if check.bound == "point" else f"{check.bound} {level(confidence)} bound of the "
    reason = (f"{end}change new - baseline {fmt(compared)} {op} {fmt(limit)} "
              f"(paired on {delta.n} samples: {interval(delta.value, delta.lo, delta.hi, confidence)}; "
              f"baseline {fmt(base.baseline)}, change {change_words(check.change)})")
    return _Verdict(PASS if ok else failed, [reason])


def _result(check: Check, slice_label: str, new: Estimate, compared: float, baseline: float | None,
            outcome: str, message: str, base: _Change | None = None) -> CheckResult:
    return CheckResult(
        check_id=check.id, slice=slice_label, metric=check.metric, aggregate=check.aggregate,
        bound=check.bound, severity=check.severity, observed=float(new.value), lo=float(new.lo),
        hi=float(new.hi), compared=float(compared), n=int(new.n), min=check.min, max=check.max,
        baseline=baseline, change=dict(check.change) if check.change else None, outcome=outcome,
        message=message, change_estimate=base.delta.to_dict() if base is not None else None,
    )
