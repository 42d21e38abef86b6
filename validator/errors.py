"""Error types. Each carries the exit code the CLI maps it to (see README, "Exit codes")."""

from __future__ import annotations


class CamgateError(Exception):
    """Base class: a problem camgate can explain in one line."""

    exit_code = 3


class UsageError(CamgateError):
    """Bad arguments, policy or annotation schema: the user must change the input (exit 2)."""

    exit_code = 2


class PolicyError(UsageError):
    """A policy file is invalid. The message names the file, line and key."""


class DataError(UsageError):
    """The held-out set cannot be used at all (empty, unknown format, class mismatch)."""


class ModelError(CamgateError):
    """The model cannot be loaded or explained (exit 3, or 2 for a bad --layer / unsafe model)."""

    exit_code = 3


class ModelUsageError(ModelError, UsageError):
    """The model is readable but the request does not fit it (wrong --layer, Lambda without --trust-model)."""

    exit_code = 2


class TrackingError(CamgateError):
    """MLflow could not record the gate (exit 3: a gate that could not record is not a pass)."""

    exit_code = 3
