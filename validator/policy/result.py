"""One outcome per check x slice, and the gate status they add up to."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

PASS, WARN, FAIL, SKIPPED = "PASS", "WARN", "FAIL", "SKIPPED"
# A slice with too few samples to judge (a small class): listed and counted, never a pass or a failure
# unless the policy asks (``sample.on_small_class``).
NOT_JUDGED = "NOT_JUDGED"
# A heatmap check whose maps failed the explainer sanity check (or the sanity check itself): not a pass.
INCONCLUSIVE = "INCONCLUSIVE"
OUTCOMES = (PASS, WARN, FAIL, SKIPPED, NOT_JUDGED, INCONCLUSIVE)


@dataclass
class CheckResult:
    check_id: str
    slice: str  # "overall" or "class=<name>"
    metric: str
    aggregate: str
    bound: str
    severity: str
    observed: float  # the aggregate's point value
    lo: float  # 95% interval of the aggregate (NaN when n < 2)
    hi: float
    compared: float  # the value actually compared with min/max/baseline (point, lo or hi)
    n: int
    min: float | None
    max: float | None
    baseline: float | None
    change: dict | None
    outcome: str  # PASS | WARN | FAIL | SKIPPED | NOT_JUDGED | INCONCLUSIVE
    message: str
    waiver: dict | None = None
    confidence: float = 0.95  # level of the interval [lo, hi] (Bonferroni-adjusted on per-class slices)
    # change checks: new - baseline over the paired samples (aggregate, value, lo, hi at ``confidence``, n)
    change_estimate: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict: non-finite floats become None (JSON has no NaN)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def gate_status(results: Iterable[CheckResult]) -> str:
    """FAIL if any check failed; else INCONCLUSIVE if any check is INCONCLUSIVE (the maps failed the sanity
    check) or no policy check compared anything (every slice SKIPPED or NOT_JUDGED: a gate that judged nothing
    must not read as a pass); else WARN if any warned; else PASS."""
    results = list(results)
    outcomes = {r.outcome for r in results}
    if FAIL in outcomes:
        return FAIL
    if INCONCLUSIVE in outcomes:
        return INCONCLUSIVE
    judged = [r for r in results if not r.check_id.startswith("data.") and r.outcome in (PASS, WARN, FAIL)]
    if not judged:
        return INCONCLUSIVE
    if WARN in outcomes:
        return WARN
    return PASS
