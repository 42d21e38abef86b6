"""Waivers: an active waiver turns a check's FAIL (or INCONCLUSIVE) into WARN; an expired one does nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date

from validator.policy.model import Policy, Waiver
from validator.policy.result import FAIL, INCONCLUSIVE, WARN, CheckResult


def _matches(waiver: Waiver, result: CheckResult) -> bool:
    return waiver.check == result.check_id and waiver.slice in (None, result.slice)


def apply_waivers(results: list[CheckResult], waivers: Iterable[Waiver], today: date) -> list[CheckResult]:
    """Downgrade each FAIL or INCONCLUSIVE covered by an active waiver to WARN and attach the waiver."""
    active = [w for w in waivers if w.is_active(today)]
    out = []
    for result in results:
        waiver = next((w for w in active if _matches(w, result)), None) if result.outcome in (FAIL, INCONCLUSIVE) else None
        if waiver is not None:
            result = replace(
                result, outcome=WARN, waiver=waiver.to_dict(),
                message=f"{result.message} [waived until {waiver.expires.isoformat()}: {waiver.reason}]",
            )
        out.append(result)
    return out


def waiver_report(policy: Policy, today: date, results: Iterable[CheckResult] | None = None) -> list[dict]:
    """Each waiver with its state: 'expired', 'active', or 'unused' (active but waived nothing in results).

    Without results an unexpired waiver is reported as 'active'.
    """
    used = None if results is None else [r.waiver for r in results if r.waiver is not None]
    report = []
    for waiver in policy.waivers:
        entry = waiver.to_dict()
        if not waiver.is_active(today):
            state = "expired"
        elif used is not None and entry not in used:
            state = "unused"
        else:
            state = "active"
        report.append({**entry, "state": state})
    return report
