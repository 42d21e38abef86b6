"""Policy engine: YAML policy -> validated checks -> one outcome per check x slice -> gate status.

Read a policy with ``load_policy``, judge a per-sample metric table with ``evaluate`` and reduce the
results with ``gate_status``. See policies/example.yaml for every option.
"""

from __future__ import annotations

from validator.policy.evaluate import evaluate
from validator.policy.model import BUILTIN_CHECK_IDS, Check, Explainer, Policy, SampleSpec, Waiver
from validator.policy.result import (
    FAIL,
    INCONCLUSIVE,
    NOT_JUDGED,
    OUTCOMES,
    PASS,
    SKIPPED,
    WARN,
    CheckResult,
    gate_status,
)
from validator.policy.schema import (
    BUILTIN_POLICIES,
    builtin_policy_path,
    default_policy_path,
    load_policy,
    metric_infos,
)
from validator.policy.waivers import waiver_report

__all__ = [
    "BUILTIN_CHECK_IDS",
    "BUILTIN_POLICIES",
    "FAIL",
    "INCONCLUSIVE",
    "NOT_JUDGED",
    "OUTCOMES",
    "PASS",
    "SKIPPED",
    "WARN",
    "Check",
    "CheckResult",
    "Explainer",
    "Policy",
    "SampleSpec",
    "Waiver",
    "builtin_policy_path",
    "default_policy_path",
    "evaluate",
    "gate_status",
    "load_policy",
    "metric_infos",
    "waiver_report",
]
