"""Aggregation of per-sample scores with confidence intervals.

* mean / median / p10 / p90: point estimate on the finite values, bootstrap CI resampling samples
  (scipy.stats.bootstrap, BCa; percentile method where BCa is undefined, e.g. a p10 whose bootstrap
  distribution is a single value). Percentiles use numpy's default linear interpolation.
* rate: share of 1s for 0/1 values, or share of values >= ``threshold``; Wilson score interval.
* weighted (``weights``, one positive weight per value; post-stratification of a stratified sample): the
  weighted mean, weighted quantiles (midpoint positions (cumulative weight - w/2) / total weight, linear
  between them) and the weighted share, with a bootstrap that resamples (value, weight) pairs and a Wilson
  interval at the weighted share with Kish's effective n = (sum w)^2 / sum w^2. Equal weights take the
  unweighted path, so their results are bit-identical to passing no weights.

NaN and inf are dropped first; ``n`` counts the finite values. ``lo``/``hi`` are NaN when n < 2 and
``value`` is NaN when n == 0. Constant data gives lo = hi = value without resampling.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from validator.metrics.registry import BOOLEAN, metric_info

AGGREGATES = ("mean", "median", "p10", "p90", "rate")
BOOTSTRAPPED = ("mean", "median", "p10", "p90")


# Quantile levels of the order-statistic aggregates (numpy's default "linear" definition).
_QUANTILES = {"median": 0.5, "p10": 0.1, "p90": 0.9}


def _sorted_quantile(ordered: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolation quantile (numpy's default) of data already sorted along the last axis."""
    pos = q * (ordered.shape[-1] - 1)
    below = math.floor(pos)
    above = min(below + 1, ordered.shape[-1] - 1)
    return ordered[..., below] + (pos - below) * (ordered[..., above] - ordered[..., below])


#: From this many values on, the quantiles' order statistics come from np.partition rather than a sort
#: (measured crossover ~1500-2000 values per resample; 1.8x at 10k, 3.3x at 50k; benchmarks/README.md).
PARTITION_MIN_N = 2000


def _order_positions(n: int, hows: tuple[str, ...]) -> list[int]:
    """The sorted positions that the quantiles of ``hows`` read (``_sorted_quantile``'s below and above)."""
    positions = set()
    for h in hows:
        if h in _QUANTILES:
            below = math.floor(_QUANTILES[h] * (n - 1))
            positions.update((below, min(below + 1, n - 1)))
    return sorted(positions)


def _statistics(sample: np.ndarray, hows: tuple[str, ...], axis: int = -1) -> np.ndarray:
    """Stack of the requested aggregates along axis 0 (the bootstrap hot path).

    The quantiles need a few order statistics, not a sorted array: on long rows ``np.partition`` puts the
    exact values at those positions in O(n) per resample instead of a sort's O(n log n), and the arithmetic
    on them is the same, so the results are bit-identical to sorting (tests/test_stats.py)."""
    sample = np.moveaxis(np.asarray(sample, dtype=np.float64), axis, -1)
    positions = _order_positions(sample.shape[-1], hows)
    if not positions:
        ordered = None
    elif sample.shape[-1] >= PARTITION_MIN_N:
        ordered = np.partition(sample, positions, axis=-1)
    else:  # a sort is faster on short rows
        ordered = np.sort(sample, axis=-1)
    return np.stack([sample.mean(axis=-1) if h == "mean" else _sorted_quantile(ordered, _QUANTILES[h])
                     for h in hows])


def _weighted_quantile(xs: np.ndarray, pos: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of values ``xs`` sorted along the last axis whose cumulative positions are ``pos``."""
    n = xs.shape[-1]
    if n == 1:
        return xs[..., 0]
    above = np.clip(np.sum(pos < q, axis=-1, keepdims=True), 1, n - 1)  # first position >= q (clamped)
    p0, p1 = np.take_along_axis(pos, above - 1, -1), np.take_along_axis(pos, above, -1)
    x0, x1 = np.take_along_axis(xs, above - 1, -1), np.take_along_axis(xs, above, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.clip((q - p0) / (p1 - p0), 0.0, 1.0)  # beyond the end positions: the end values
    return np.where(p1 > p0, x0 + t * (x1 - x0), x0)[..., 0]


def _weighted_statistics(x: np.ndarray, w: np.ndarray, hows: tuple[str, ...], axis: int = -1,
                         presorted: bool = False) -> np.ndarray:
    """``_statistics`` with weights: the weighted mean and midpoint-position weighted quantiles
    (``presorted``: ``x`` is already sorted along ``axis``)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    w = np.moveaxis(np.asarray(w, dtype=np.float64), axis, -1)
    total = w.sum(axis=-1)
    rows = []
    xs = pos = None
    for h in hows:
        if h == "mean":
            rows.append((x * w).sum(axis=-1) / total)
            continue
        if xs is None:  # one sort serves every quantile
            if presorted:
                xs, ws = x, w
            else:
                order = np.argsort(x, axis=-1, kind="stable")
                xs, ws = np.take_along_axis(x, order, -1), np.take_along_axis(w, order, -1)
            pos = (np.cumsum(ws, axis=-1) - ws / 2.0) / total[..., None]
        rows.append(_weighted_quantile(xs, pos, _QUANTILES[h]))
    return np.stack(rows)


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass(frozen=True)
class Estimate:
    """An aggregate over n finite per-sample values with its confidence interval [lo, hi]."""

    aggregate: str
    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        """JSON-ready dict; NaN becomes None (strict JSON has no NaN)."""
        return {
            "aggregate": self.aggregate,
            "value": _json_number(self.value),
            "lo": _json_number(self.lo),
            "hi": _json_number(self.hi),
            "n": int(self.n),
        }


def _finite(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _finite_weighted(values, weights) -> tuple[np.ndarray, np.ndarray | None]:
    """The finite values and their weights; weights None where there are none or all are equal (the
    unweighted estimators then give the same answer, bit for bit)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    keep = np.isfinite(arr)
    if weights is None:
        return arr[keep], None
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != arr.shape:
        raise ValueError(f"weights: expected {arr.shape[0]} values, got {w.shape}")
    w = w[keep]
    if not np.all(np.isfinite(w) & (w > 0)):
        raise ValueError("weights must be finite and positive")
    if len(w) == 0 or np.ptp(w) <= 1e-9 * w.max():
        return arr[keep], None
    return arr[keep], w


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (nan, nan) when n == 0."""
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    return _wilson(successes / n, n, confidence, successes == 0, successes == n)


def _wilson(p: float, n: float, confidence: float, at_zero: bool, at_one: bool) -> tuple[float, float]:
    """Wilson bounds for share ``p`` of ``n`` trials (n may be an effective, non-integer count)."""
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # At 0 or n successes the bound is exactly 0 or 1; floating point would leave ~1e-18.
    lo = 0.0 if at_zero else max(0.0, centre - half)
    hi = 1.0 if at_one else min(1.0, centre + half)
    return lo, hi


#: Resamples per tail of a bootstrap interval; the resample count grows as the tails shrink (a
#: Bonferroni-adjusted 99.9% interval needs more resamples than a 95% one to place its ends).
_RESAMPLES_PER_TAIL = 25
_MAX_RESAMPLES = 200_000
_VALUES_PER_BATCH = 4_000_000  # resamples x n held in memory at once (32 MB of float64)


def resamples_for(confidence: float, base: int = 2000) -> int:
    """``base`` resamples at 95%; more for narrower tails, so that ~25 resamples lie beyond each end."""
    _check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0
    return int(min(_MAX_RESAMPLES, max(base, math.ceil(_RESAMPLES_PER_TAIL / tail))))


#: Largest sample for which intervals use BCa (bias-corrected and accelerated); above it, percentile.
BCA_MAX_N = 500


def _bootstrap_ci(x: np.ndarray, hows: tuple[str, ...], confidence, n_resamples, seed, method,
                  w: np.ndarray | None = None):
    def statistic(sample, axis=-1):
        return _statistics(sample, hows, axis)

    data, function = (x,), statistic
    if w is not None:
        # A row is resampled with its weight: the bootstrap draws positions in the rows sorted by value, so
        # a resample is put in order by sorting integers (the quantiles need it), not by an argsort and two
        # gathers (4-6x faster). The same draws as a paired bootstrap of (value, weight).
        order = np.argsort(x, kind="stable")
        xs, ws = x[order], w[order]

        def weighted(positions, axis=-1):
            # sorted even for a mean alone: the same sums in the same order whatever else is asked for
            idx = np.sort(np.moveaxis(np.asarray(positions), axis, -1).astype(np.int64), axis=-1)
            return _weighted_statistics(xs[idx], ws[idx], hows, presorted=True)

        data, function = (np.arange(len(x), dtype=np.float64),), weighted
    with warnings.catch_warnings():
        # Degenerate bootstrap distributions warn; we detect them from the NaN bounds instead.
        warnings.simplefilter("ignore")
        res = sps.bootstrap(
            data, function, n_resamples=n_resamples, confidence_level=confidence, method=method,
            vectorized=True, axis=-1, rng=np.random.default_rng(seed),
            batch=max(100, _VALUES_PER_BATCH // max(1, len(x))),
        )
    return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)


def bootstrap_estimates(values, hows: Iterable[str] = BOOTSTRAPPED, *, confidence: float = 0.95,
                        n_resamples: int = 2000, seed: int = 0, weights=None) -> dict[str, Estimate]:
    """Several bootstrapped aggregates from one set of resamples (identical to separate ``aggregate`` calls).
    ``weights``: one positive weight per value (see the module docstring)."""
    hows = tuple(hows)
    unknown = [h for h in hows if h not in BOOTSTRAPPED]
    if unknown:
        raise ValueError(f"cannot bootstrap {unknown}; valid: {', '.join(BOOTSTRAPPED)}")
    _check_confidence(confidence)
    x, w = _finite_weighted(values, weights)
    n = len(x)
    nan = float("nan")
    if n == 0:
        return {h: Estimate(h, nan, nan, nan, 0) for h in hows}
    point = _statistics(x, hows) if w is None else _weighted_statistics(x, w, hows)
    points = dict(zip(hows, map(float, point), strict=True))
    if n == 1:
        return {h: Estimate(h, points[h], nan, nan, 1) for h in hows}
    if np.all(x == x[0]):
        return {h: Estimate(h, points[h], points[h], points[h], n) for h in hows}
    # BCa's jackknife is O(n^2) in time and memory; past a few hundred samples the bootstrap distribution
    # is close to symmetric and the percentile interval agrees with BCa, at O(n) per resample.
    method = "BCa" if n <= BCA_MAX_N else "percentile"
    lo, hi = _bootstrap_ci(x, hows, confidence, n_resamples, seed, method, w)
    bad = ~(np.isfinite(lo) & np.isfinite(hi))
    if bad.any():
        p_lo, p_hi = _bootstrap_ci(x, hows, confidence, n_resamples, seed, "percentile", w)
        lo, hi = np.where(bad, p_lo, lo), np.where(bad, p_hi, hi)
    return {h: Estimate(h, points[h], float(lo[i]), float(hi[i]), n) for i, h in enumerate(hows)}


def _rate(x: np.ndarray, threshold: float | None, confidence: float, w: np.ndarray | None = None) -> Estimate:
    n = len(x)
    if threshold is None:
        if not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError("rate needs 0/1 values, or a threshold for continuous values (share >= threshold)")
        hits = x == 1.0
    else:
        hits = x >= threshold
    nan = float("nan")
    if n == 0:
        return Estimate("rate", nan, nan, nan, 0)
    if w is None:
        successes = int(np.count_nonzero(hits))
        lo, hi = wilson_interval(successes, n, confidence) if n >= 2 else (nan, nan)
        return Estimate("rate", successes / n, lo, hi, n)
    # weighted share; its interval is as wide as a plain sample of Kish's effective size would give
    p = float(np.sum(w[hits]) / np.sum(w))
    n_eff = float(np.sum(w)) ** 2 / float(np.sum(w * w))
    lo, hi = _wilson(p, n_eff, confidence, not hits.any(), hits.all()) if n >= 2 else (nan, nan)
    return Estimate("rate", p, lo, hi, n)


def aggregate(values, how: str, *, threshold: float | None = None, confidence: float = 0.95,
              n_resamples: int = 2000, seed: int = 0, weights=None) -> Estimate:
    """Aggregate per-sample values (non-finite dropped) as one of ``AGGREGATES`` with a CI; ``weights``
    (one positive weight per value) make it a weighted estimate (see the module docstring)."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; valid: {', '.join(AGGREGATES)}")
    _check_confidence(confidence)
    if how == "rate":
        x, w = _finite_weighted(values, weights)
        return _rate(x, threshold, confidence, w)
    return bootstrap_estimates(values, (how,), confidence=confidence, n_resamples=n_resamples, seed=seed,
                               weights=weights)[how]


def post_stratified_weights(labels, available: Mapping[str, int] | None) -> np.ndarray | None:
    """Per row, (its class's share of the data) / (its class's share of the labelled rows); NaN for rows
    without a class (they belong to no pooled slice). None when ``available`` ({class: records in the data})
    is empty or misses a class of the rows: there is nothing to weight by, and the rows stay unweighted.

    The sample is stratified and small classes are topped up to ``min_per_class``, so a class can hold
    several times its share of the data in the sample; weighting each row back to its class's share makes a
    pooled estimate describe the data, not the sampling settings. Shares are taken over the classes present
    in the rows (a class with no row cannot be represented)."""
    labels = np.asarray(labels, dtype=object)
    labelled = np.not_equal(labels, None).astype(bool)
    names, counts = np.unique(labels[labelled].astype(str), return_counts=True)
    if not available or len(names) == 0 or any(available.get(c, 0) <= 0 for c in names):
        return None
    data_share = np.array([available[c] for c in names], dtype=np.float64)
    data_share /= data_share.sum()
    by_class = dict(zip(names, data_share / (counts / counts.sum()), strict=True))
    return np.array([by_class[c] if ok else np.nan for c, ok in zip(labels, labelled, strict=True)])


def table_length(table: Mapping[str, np.ndarray]) -> int:
    """Row count of a per-sample table (dict of equal-length columns); ValueError if lengths differ."""
    lengths = {name: len(col) for name, col in table.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def _is_boolean(name: str, x: np.ndarray) -> bool:
    try:
        return metric_info(name).kind == BOOLEAN
    except KeyError:  # a caller's own column: boolean when its values are 0/1
        return len(x) > 0 and bool(np.all((x == 0.0) | (x == 1.0)))


def summarize(table: Mapping[str, np.ndarray], *, metrics: Iterable[str], slices: Mapping[str, np.ndarray],
              seed: int = 0, n_resamples: int = 2000, weights: Mapping[str, np.ndarray] | None = None) -> dict:
    """{slice: {metric: {aggregate: Estimate.to_dict()}}} with mean/median/p10/p90 for every metric and
    rate for boolean ones. JSON-serialisable (NaN -> None). ``weights``: {slice: one weight per table row}
    for the slices whose estimates are weighted (rows outside the slice are ignored).

    The four bootstrapped aggregates share one resampling per (slice, metric), so 2000 resamples stay
    cheap: 200 rows x 20 metrics x 3 slices takes well under a second.
    """
    metrics = list(metrics)
    n_rows = table_length(table)
    missing = [m for m in metrics if m not in table]
    if missing:
        raise ValueError(f"metrics not in the table: {missing}; columns: {list(table)}")
    out: dict = {}
    for slice_name, mask in slices.items():
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != (n_rows,):
            raise ValueError(f"slice {slice_name!r}: expected a boolean mask of {n_rows} rows, got "
                             f"{mask.dtype} {mask.shape}")
        out[slice_name] = {}
        row_weights = (weights or {}).get(slice_name)
        slice_weights = None if row_weights is None else np.asarray(row_weights, dtype=np.float64)[mask]
        for name in metrics:
            x, w = _finite_weighted(np.asarray(table[name], dtype=np.float64)[mask], slice_weights)
            estimates = bootstrap_estimates(x, n_resamples=n_resamples, seed=seed, weights=w)
            if _is_boolean(name, x):
                estimates["rate"] = _rate(x, None, 0.95, w)
            out[slice_name][name] = {h: e.to_dict() for h, e in estimates.items()}
    return out


def concat_tables(*tables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge per-sample tables from shards by concatenating each column; all tables need the same columns."""
    if not tables:
        return {}
    columns = list(tables[0])
    for i, t in enumerate(tables[1:], start=1):
        if set(t) != set(columns):
            raise ValueError(
                f"table {i} has different columns: missing {sorted(set(columns) - set(t))}, "
                f"extra {sorted(set(t) - set(columns))}"
            )
    for t in tables:
        table_length(t)
    return {c: np.concatenate([np.asarray(t[c]) for t in tables]) for c in columns}


def _indicators(x: np.ndarray, threshold: float | None) -> np.ndarray:
    if threshold is None:
        if not np.all((x == 0.0) | (x == 1.0)):
            raise ValueError("rate needs 0/1 values, or a threshold for continuous values (share >= threshold)")
        return x
    return (x >= threshold).astype(np.float64)


def paired_change(new, base, how: str, *, threshold: float | None = None, confidence: float = 0.95,
                  n_resamples: int = 2000, seed: int = 0) -> tuple[Estimate, float]:
    """The change ``aggregate(new) - aggregate(base)`` over paired per-sample values, and the baseline's aggregate.

    ``new[i]`` and ``base[i]`` are two models' values on the same sample; pairs with a non-finite side are
    dropped. The interval resamples samples, both values of a pair together (paired bootstrap), so the
    sample-to-sample spread that both models share cancels: a model compared with itself has a change of
    exactly 0 with interval [0, 0]. A rate is the mean of its 0/1 indicators (>= ``threshold`` where given)."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; valid: {', '.join(AGGREGATES)}")
    _check_confidence(confidence)
    new, base = np.asarray(new, dtype=np.float64).ravel(), np.asarray(base, dtype=np.float64).ravel()
    if new.shape != base.shape:
        raise ValueError(f"paired values differ in length: {new.shape} vs {base.shape}")
    keep = np.isfinite(new) & np.isfinite(base)
    x, y = new[keep], base[keep]
    stat = ("mean",) if how == "rate" else (how,)
    if how == "rate":
        x, y = _indicators(x, threshold), _indicators(y, threshold)
    n, nan = len(x), float("nan")
    if n == 0:
        return Estimate(how, nan, nan, nan, 0), nan
    base_value = float(_statistics(y, stat)[0])
    point = float(_statistics(x, stat)[0]) - base_value
    if n == 1:
        return Estimate(how, point, nan, nan, 1), base_value
    d = x - y
    if np.all(d == d[0]) and (stat == ("mean",) or np.array_equal(x, y)):
        return Estimate(how, point, point, point, n), base_value

    def statistic(a, b, axis=-1):
        return _statistics(a, stat, axis)[0] - _statistics(b, stat, axis)[0]

    def interval(method):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate resamples: detected from NaN bounds below
            res = sps.bootstrap((x, y), statistic, paired=True, vectorized=True, axis=-1, method=method,
                                n_resamples=n_resamples, confidence_level=confidence,
                                rng=np.random.default_rng(seed), batch=max(100, _VALUES_PER_BATCH // (2 * n)))
        return float(res.confidence_interval.low), float(res.confidence_interval.high)

    lo, hi = interval("BCa" if n <= BCA_MAX_N else "percentile")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = interval("percentile")
    return Estimate(how, point, lo, hi, n), base_value
