"""Error types. Each carries the exit code the CLI maps it to (see README, "Exit codes")."""

from __future__ import annotations

# The process exit codes (README "Exit codes"; `camgate --help` lists EXIT_CODES).
EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_INCONCLUSIVE = 4
EXIT_CODES = {
    EXIT_PASS: "PASS (warnings allowed unless --fail-on warn)",
    EXIT_FAIL: "FAIL (or WARN with --fail-on warn)",
    EXIT_USAGE: "usage, policy or data error: an option, the policy or the annotations must change",
    EXIT_ERROR: "runtime error: model or images unreadable, MLflow unreachable, interrupted, unexpected error",
    EXIT_INCONCLUSIVE: "INCONCLUSIVE: no check compared anything, or the maps failed the sanity check",
}


class CamgateError(Exception):
    """Base class: a problem camgate can explain in one line."""

    exit_code = EXIT_ERROR


class UsageError(CamgateError):
    """Bad arguments, policy or annotation schema: the user must change the input (exit 2)."""

    exit_code = EXIT_USAGE


class PolicyError(UsageError):
    """A policy file is invalid. The message names the file, line and key."""


class ConfigError(UsageError):
    """A `camgate serve` config file is invalid. The message names the file, line and key."""


class DataError(UsageError):
    """The held-out set cannot be used at all (empty, unknown format, class mismatch)."""


class ModelError(CamgateError):
    """The model cannot be loaded or explained (exit 3, or 2 for a bad --layer / unsafe model)."""

    exit_code = EXIT_ERROR


class ModelUsageError(ModelError, UsageError):
    """The model is readable but the request does not fit it (wrong --layer, Lambda without --trust-model)."""

    exit_code = EXIT_USAGE


class TrackingError(CamgateError):
    """MLflow could not record the gate (exit 3: a gate that could not record is not a pass)."""

    exit_code = EXIT_ERROR
