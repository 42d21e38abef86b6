"""One outcome per check x slice, and the gate status they add up to."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

PASS, WARN, FAIL, SKIPPED = "PASS", "WARN", "FAIL", "SKIPPED"
OUTCOMES = (PASS, WARN, FAIL, SKIPPED)


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
    outcome: str  # PASS | WARN | FAIL | SKIPPED
    message: str
    waiver: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict: non-finite floats become None (JSON has no NaN)."""
        return {k: _json_number(v) for k, v in asdict(self).items()}


def _json_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def gate_status(results: Iterable[CheckResult]) -> str:
    """FAIL if any check failed, else WARN if any warned, else PASS (SKIPPED never changes the status)."""
    outcomes = {r.outcome for r in results}
    if FAIL in outcomes:
        return FAIL
    if WARN in outcomes:
        return WARN
    return PASS
