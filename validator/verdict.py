"""The gate's verdict: what it decided, on what evidence, and where the reports are."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from pathlib import Path

from validator import __version__
from validator.errors import EXIT_CODES, EXIT_ERROR, EXIT_INCONCLUSIVE  # noqa: F401  (re-exported)

PASS, WARN, FAIL, ERROR = "PASS", "WARN", "FAIL", "ERROR"
# the policy compared nothing (every check skipped or not judged), or the maps failed the sanity check
INCONCLUSIVE = "INCONCLUSIVE"
# a shard audit (--shard I/N) explained its part and wrote shard.npz; only the merge judges the policy
PARTIAL = "PARTIAL"
STATUSES = (PASS, WARN, FAIL, ERROR, INCONCLUSIVE, PARTIAL)
# Exit codes: 0 pass (warnings allowed unless --fail-on warn), 1 gate failed, 2 usage or policy error,
# 3 runtime error (incl. interrupted), 4 inconclusive (nothing was compared: not a pass): validator.errors.
SCHEMA_VERSION = 1


@dataclass
class Verdict:
    out_dir: Path
    model: str
    data: str
    status: str = ERROR  # fails closed: only a completed evaluation can change it
    exit_code: int = EXIT_ERROR
    error: str | None = None
    finding: str | None = None  # the first sentence: where the evidence sits (validator.policy.finding)
    traceback: str | None = None
    model_name: str | None = None
    fail_on: str = "fail"
    policy: dict = field(default_factory=dict)
    explainer: dict = field(default_factory=dict)
    sample: dict = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    waivers: list[dict] = field(default_factory=list)
    data_issues: list[dict] = field(default_factory=list)
    baseline: dict | None = None
    probes: dict = field(default_factory=dict)  # what the probes ran on, sanity per stage, their cost
    discovery: dict = field(default_factory=dict)  # heat atlas region shares and SpRAy clusters per class
    overlays: list[dict] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    tracking: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    table: dict | None = field(default=None, repr=False)  # per-sample columns (not serialised here)
    # registry versions resolved when the models were loaded: {"model"|"baseline": {"name", "version"}}
    audited_versions: dict = field(default_factory=dict, repr=False)
    atlas: dict | None = field(default=None, repr=False)
    shards: dict | None = None  # a shard: its place and rows; a merge or a Ray run: the shards it combined

    @property
    def ok(self) -> bool:
        # a shard exits 0 when it wrote its part, but it blesses nothing: only the merge judges
        return self.exit_code == 0 and self.status != PARTIAL

    @property
    def failed_checks(self) -> list[dict]:
        return [c for c in self.checks if c.get("outcome") == FAIL]

    @property
    def inconclusive_checks(self) -> list[dict]:
        return [c for c in self.checks if c.get("outcome") == INCONCLUSIVE]

    @property
    def warned_checks(self) -> list[dict]:
        return [c for c in self.checks if c.get("outcome") == WARN]

    @property
    def missing_slices(self) -> list[dict]:
        return [c for c in self.checks if c.get("n") == 0 and c.get("outcome") in (FAIL, WARN)]

    def set_error(self, message: str, exit_code: int, trace: str | None = None) -> None:
        self.status, self.error, self.exit_code = ERROR, message, exit_code
        if trace:
            self.traceback = trace

    def to_dict(self) -> dict:
        return _clean(
            {
                "schema_version": SCHEMA_VERSION,
                "status": self.status,
                "gate_ok": self.ok,
                "exit_code": self.exit_code,
                "fail_on": self.fail_on,
                "error": self.error,
                "finding": self.finding,
                "model": self.model,
                "model_name": self.model_name,
                "data": self.data,
                "policy": self.policy,
                "explainer": self.explainer,
                "sample": self.sample,
                "checks": self.checks,
                "missing_slices": [{"check_id": c["check_id"], "slice": c["slice"]} for c in self.missing_slices],
                "waivers": self.waivers,
                "baseline": self.baseline,
                "shards": self.shards,
                "summary": self.summary,
                "probes": self.probes,
                "discovery": self.discovery,
                "data_issues": self.data_issues,
                "overlays": self.overlays,
                "outputs": self.outputs,
                "tracking": self.tracking,
                "versions": environment(),
                "wall_seconds": round(self.wall_seconds, 3),
                "timings": {k: round(v, 4) for k, v in self.timings.items()},
            }
        )


def environment() -> dict:
    versions = {"camgate": __version__, "python": platform.python_version()}
    try:
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
        import keras

        versions["keras"] = keras.__version__
    except ImportError:
        pass
    return versions


def _clean(value):
    """JSON has no NaN/inf: they become null. numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


#: JSON Schema of verdict.json (draft 2020-12), published for pipelines that parse it.
VERDICT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "camgate verdict",
    "type": "object",
    "required": ["schema_version", "status", "gate_ok", "exit_code", "checks", "policy", "sample", "versions"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "status": {"enum": list(STATUSES)},
        "gate_ok": {"type": "boolean"},
        "exit_code": {"enum": sorted(EXIT_CODES)},
        "error": {"type": ["string", "null"]},
        "finding": {"type": ["string", "null"]},
        "policy": {"type": "object"},
        "explainer": {"type": "object"},
        "sample": {"type": "object"},
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["check_id", "slice", "metric", "outcome", "message", "n"],
                "properties": {
                    "check_id": {"type": "string"},
                    "slice": {"type": "string"},
                    "metric": {"type": "string"},
                    "outcome": {"enum": ["PASS", "WARN", "FAIL", "SKIPPED", "NOT_JUDGED", "INCONCLUSIVE"]},
                    "message": {"type": "string"},
                    "n": {"type": "integer", "minimum": 0},
                    "observed": {"type": ["number", "null"]},
                    "lo": {"type": ["number", "null"]},
                    "hi": {"type": ["number", "null"]},
                    "compared": {"type": ["number", "null"]},
                    "min": {"type": ["number", "null"]},
                    "max": {"type": ["number", "null"]},
                    "baseline": {"type": ["number", "null"]},
                    "change_estimate": {  # change checks: new - baseline over the paired samples
                        "type": ["object", "null"],
                        "properties": {"value": {"type": ["number", "null"]}, "lo": {"type": ["number", "null"]},
                                       "hi": {"type": ["number", "null"]}, "n": {"type": "integer"}},
                    },
                },
            },
        },
        "waivers": {"type": "array"},
        "data_issues": {
            "type": "array",
            "items": {"type": "object", "required": ["file", "reason", "action"]},
        },
        "versions": {"type": "object", "required": ["camgate", "python"]},
        "wall_seconds": {"type": "number", "minimum": 0},
    },
}
