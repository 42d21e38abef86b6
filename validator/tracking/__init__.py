"""Record a gate verdict in MLflow: one run per audit, complete enough to review the gate in the MLflow UI.

What a gate run holds (see docs/mlflow.md):

- the run name leads with the verdict (``FAIL · shapes-v3 · default v3``), the column every runs table shows;
- params ``camgate.*``: model, method, layer, preprocess, policy name/version/hash, sample size, seed, ...
- metrics, bounded by the policy whatever the number of classes (at most ~50 for the shipped policies): per
  check ``check/<id>/value`` (the compared value, the worst slice's), ``check/<id>/threshold``,
  ``check/<id>/pass`` and, over several slices, ``check/<id>/failing_slices``; ``gate/ok``,
  ``gate/status_code``, ``lift_mean/overall``. ``TrackingOptions(detail="full")`` (``--mlflow-detail full``)
  adds every aggregate of ``verdict.summary`` as ``<metric>_<aggregate>/<slice>`` with ``_lo``/``_hi``
  (``_level`` where a class check judged another level), ``n_samples/<slice>`` and the other ``gate/*``;
- tags ``camgate.status``, ``camgate.policy``, ``camgate.version``, ... and the run description (the
  Markdown summary);
- inputs: the held-out set as a dataset (context ``eval``), the audited model as an MLflow 3 logged model
  (a registry version's, or an external one for a model file), tagged with the gate's status like the version;
- artifacts ``camgate/verdict.json`` and ``camgate/policy.yaml`` (``log_dict``), the tables
  ``camgate/checks.json`` (check x slice), ``camgate/slices.json`` (slice x metric statistics),
  ``camgate/samples.json`` (one row per sample) and ``camgate/overlays.json`` (pointing at the overlay files),
  and every local report file under ``camgate/report/`` (each overlay stored once); checkpoint records (the
  Keras callback's epochs) log the overlays as keyed images with a step slider instead.

A gate that could not record is not a pass: any failure to log raises :class:`TrackingError` (exit 3)
naming the tracking URI, after retrying transient errors with backoff within a short total budget, without
ever creating a second run or a second metric point for one record.

The pieces, each importing only those below it:

- :mod:`validator.tracking.record`: which store and run (created exactly once), the order of the writes;
- :mod:`validator.tracking.content`: what the run holds (metrics, params, tags, inputs, images, reports);
- :mod:`validator.tracking.tables`: the tables (checks, slices, samples, overlays) and each overlay's one copy;
- :mod:`validator.tracking.registry`: the audited model's link and tags, model-version tags, promote-on-PASS;
- :mod:`validator.tracking.uploads`: keyed images and tables in MLflow's formats, uploaded idempotently;
- :mod:`validator.tracking.names`: metric names, image keys, ``record_metrics``, ``summary_metrics`` (pure);
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
    DETAIL_MODES,
    STATUS_CODES,
    gate_metrics,
    image_key,
    metric_name,
    record_metrics,
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


__all__ = ["TrackingOptions", "log_verdict", "resolve_tracking_uri", "record_metrics", "summary_metrics",
           "gate_metrics", "DETAIL_MODES",
           "metric_name", "slice_token", "image_key", "DEFAULT_URI", "quiet_mlflow", "is_transient",
           "STATUS_CODES", "ARTIFACT_DIR", "ATTEMPT_TAG", "GATE_RUN_TAG", "RETRY_ENV", "DEFAULT_RETRY_SECONDS",
           "REQUEST_TIMEOUT_SECONDS"]
