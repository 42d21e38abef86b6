"""Record a gate verdict in MLflow: one run per audit, complete enough to review the gate in the MLflow UI.

What a gate run holds (see docs/mlflow.md):

- params ``camgate.*``: model, method, layer, preprocess, policy name/version/hash, sample size, seed, ...
- metrics: every aggregate of ``verdict.summary`` as ``<metric>_<aggregate>/<slice>`` with its 95% interval
  as ``<metric>_<aggregate>/<slice>_lo`` and ``..._hi`` (slices ``overall`` and ``class_<name>``: MLflow
  metric names cannot contain ``=``; a class aggregate a check judged holds the judged interval and its level
  as ``..._level``), ``n_samples/<slice>``, and ``gate/ok``, ``gate/status_code``, ...
- tags ``camgate.status``, ``camgate.policy``, ``camgate.version``, ... and the run description (the
  Markdown summary);
- artifacts ``camgate/verdict.json`` and ``camgate/policy.yaml`` (``log_dict``), ``camgate/samples.json``
  (a table, one row per sample), ``camgate/overlays.json`` (a table with the overlay images), every local
  report file under ``camgate/report/``, and the overlays and atlases as keyed images
  (``overlays/class_<name>/worst_0``, ``atlas/overall``) that the UI shows with a step slider.

A gate that could not record is not a pass: any failure to log raises :class:`TrackingError` (exit 3)
naming the tracking URI, after retrying transient errors with backoff within a short total budget, without
ever creating a second run or a second metric point for one record.

The pieces, each importing only those below it:

- :mod:`validator.tracking.record`: which store and run (created exactly once), the order of the writes;
- :mod:`validator.tracking.content`: what the run holds (metrics, params, tags, tables, images, reports);
- :mod:`validator.tracking.registry`: model-version tags and promote-on-PASS;
- :mod:`validator.tracking.uploads`: keyed images and tables in MLflow's formats, uploaded idempotently;
- :mod:`validator.tracking.names`: metric names, image keys, ``summary_metrics`` (pure);
- :mod:`validator.tracking.options`: :class:`TrackingOptions`;
- :mod:`validator.mlflow_plumbing`: tracking URI, ``quiet_mlflow``, error classification, retries (a leaf).
"""

from __future__ import annotations

from validator.mlflow_plumbing import (
    DEFAULT_RETRY_SECONDS,
    DEFAULT_URI,
    REQUEST_TIMEOUT_SECONDS,
    RETRY_ENV,
    is_transient,
    quiet_mlflow,
    resolve_tracking_uri,
)
from validator.tracking.content import ARTIFACT_DIR, GATE_RUN_TAG
from validator.tracking.names import (
    STATUS_CODES,
    gate_metrics,
    image_key,
    metric_name,
    slice_token,
    summary_metrics,
)
from validator.tracking.options import TrackingOptions
from validator.tracking.record import ATTEMPT_TAG, GateRecord


def log_verdict(verdict, options: TrackingOptions | None = None) -> dict:
    """Record ``verdict`` in MLflow and fill ``verdict.tracking``; raise TrackingError if it cannot."""
    options = options or TrackingOptions()
    options.check()
    with quiet_mlflow():
        return GateRecord(verdict, options).run()


__all__ = ["TrackingOptions", "log_verdict", "resolve_tracking_uri", "summary_metrics", "gate_metrics",
           "metric_name", "slice_token", "image_key", "DEFAULT_URI", "quiet_mlflow", "is_transient",
           "STATUS_CODES", "ARTIFACT_DIR", "ATTEMPT_TAG", "GATE_RUN_TAG", "RETRY_ENV", "DEFAULT_RETRY_SECONDS",
           "REQUEST_TIMEOUT_SECONDS"]
