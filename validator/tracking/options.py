"""``TrackingOptions``: where and how a verdict is recorded, checked before anything is sent."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from validator.errors import UsageError
from validator.mlflow_plumbing import retry_budget
from validator.tracking.names import DETAIL_MODES

RECORD_MODES = ("full", "metrics")
_ALIAS_OK = re.compile(r"^[\w\-]+$")


@dataclass
class TrackingOptions:
    """Where and how a verdict is recorded.

    ``uri``: tracking URI (default: ``$MLFLOW_TRACKING_URI``, else a URI set with ``mlflow.set_tracking_uri``,
    else ``sqlite:///mlflow.db``). ``parent_run_id`` nests the gate run under that run; with no parent and an
    active run (``mlflow.start_run()``), the gate run is nested under it when ``nested_in_active_run`` is
    true, else the gate logs into the active run itself. ``run_id`` logs into that existing run.
    ``promote``: a registry alias moved to the audited model version only on PASS. ``step``: the step of
    every metric (the epoch, for the Keras callback). ``record``: ``"full"`` or ``"metrics"`` (metrics and
    keyed images only, for checkpoints during training). ``finish_run``: end the run afterwards (default:
    only a run this call created, on a full record). ``retry_seconds``: total backoff on transient errors.
    ``detail``: ``"summary"`` (default: per check its value, threshold and pass, a few headline numbers, at
    most ~50 metrics whatever the number of classes; per-slice statistics as tables) or ``"full"`` (also
    every aggregate of every slice as a metric, thousands for many classes: ``--mlflow-detail full``).
    """

    uri: str | None = None
    experiment: str = "camgate"
    run_name: str | None = None
    parent_run_id: str | None = None
    promote: str | None = None
    nested_in_active_run: bool = True
    step: int | None = None
    run_id: str | None = None
    record: str = "full"
    finish_run: bool | None = None
    retry_seconds: float | None = None
    extra_tags: dict = field(default_factory=dict)
    detail: str = "summary"
    #: tag the audited registered model version (``camgate.status`` ...); `camgate serve` writes those tags
    #: itself after the gate run is recorded, so its audits set this to False
    tag_version: bool = True

    def budget(self) -> float:
        return retry_budget(self.retry_seconds)

    def check(self) -> None:
        """Raise :class:`UsageError` for a record mode or promotion alias MLflow would refuse (or misread)."""
        if self.record not in RECORD_MODES:
            raise UsageError(f"TrackingOptions.record must be 'full' or 'metrics', got {self.record!r}")
        if self.detail not in DETAIL_MODES:
            raise UsageError(f"TrackingOptions.detail (--mlflow-detail) must be 'summary' or 'full', "
                             f"got {self.detail!r}")
        alias = self.promote
        if alias is not None and (not _ALIAS_OK.match(alias) or alias.lower() == "latest"
                                  or re.fullmatch(r"[vV]\d+", alias)):
            raise UsageError(f"--promote {alias!r}: an alias is letters, digits, '_' or '-', "
                             "not 'latest' nor v<number>")


__all__ = ["TrackingOptions", "RECORD_MODES", "DETAIL_MODES"]
