"""Record a gate verdict in MLflow: one run per audit, complete enough to review the gate in the MLflow UI.

What a gate run holds (see docs/mlflow.md):

- params ``camgate.*``: model, method, layer, preprocess, policy name/version/hash, sample size, seed, ...
- metrics: every aggregate of ``verdict.summary`` as ``<metric>_<aggregate>/<slice>`` with its 95% interval
  as ``<metric>_<aggregate>/<slice>_lo`` and ``..._hi`` (slices ``overall`` and ``class_<name>``: MLflow
  metric names cannot contain ``=``), ``n_samples/<slice>``, and ``gate/ok``, ``gate/status_code``, ...
- tags ``camgate.status``, ``camgate.policy``, ``camgate.version``, ... and the run description (the
  Markdown summary);
- artifacts ``camgate/verdict.json`` and ``camgate/policy.yaml`` (``log_dict``), ``camgate/samples.json``
  (``log_table``, one row per sample), ``camgate/overlays.json`` (``log_table`` with the overlay images),
  every local report file under ``camgate/report/``, and the overlays and atlases as keyed images
  (``overlays/class_<name>/worst_0``, ``atlas/overall``) that the UI shows with a step slider.

A gate that could not record is not a pass: any failure to log raises :class:`TrackingError` (exit 3)
naming the tracking URI, after retrying transient errors with backoff within a short total budget.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from validator.errors import TrackingError, UsageError

DEFAULT_URI = "sqlite:///mlflow.db"
#: Seconds of backoff (in total) spent on transient errors before giving up; env overrides the default.
RETRY_ENV = "CAMGATE_MLFLOW_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 10
ARTIFACT_DIR = "camgate"
# The MLflow 3 UI shows an experiment without this tag as a GenAI one ("Evaluation runs"); gates are model runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
GATE_RUN_TAG = "camgate.gate_run"  # set on runs camgate created (not on a training run it logs into)
STATUS_CODES = {"PASS": 0, "WARN": 1, "FAIL": 2, "ERROR": 3}
_NOTE_LIMIT = 7500  # the run description is a tag (8000 characters at most)
_METRICS_PER_BATCH = 500
_NAME_BAD = re.compile(r"[^\w.\- ]")  # metric names: alphanumerics, _ - . space and /
_KEY_BAD = re.compile(r"[^a-zA-Z0-9_.\- ]")  # image keys: ASCII only
_ALIAS_OK = re.compile(r"^[\w\-]+$")
_QUIET_LOGGERS = ("mlflow", "alembic", "urllib3", "sqlalchemy", "mlflow.store.db.utils")


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

    def budget(self) -> float:
        if self.retry_seconds is not None:
            return float(self.retry_seconds)
        try:
            return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_SECONDS))
        except ValueError:
            return DEFAULT_RETRY_SECONDS


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI`` / ``mlflow.set_tracking_uri``, else ``sqlite:///mlflow.db``.

    MLflow's own fallback (``./mlruns`` when such a folder exists) is deliberately not used: the file store
    is deprecated and refused by recent MLflow. A relative SQLite path is made absolute (the working folder).
    """
    if not uri:
        uri = os.environ.get("MLFLOW_TRACKING_URI") or None
    if not uri:
        import mlflow
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

        uri = mlflow.get_tracking_uri() if is_tracking_uri_set() else DEFAULT_URI
    return _absolute_sqlite(str(uri))


def _sqlite_artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of an experiment camgate creates in a SQLite store live next to the database file
    (``<db folder>/mlruns/<experiment>``), not in whatever folder the first run happened to start in."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or ":memory:" in uri:
        return None
    folder = Path(uri[len(prefix):].split("?")[0]).parent
    return (folder / "mlruns" / _NAME_BAD.sub("_", experiment)).resolve().as_uri()


def _absolute_sqlite(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


# --------------------------------------------------------------------------------------------- names


def slice_token(slice_name: str) -> str:
    """``overall`` -> ``overall``; ``class=tank`` -> ``class_tank`` (``=`` is not allowed in metric names)."""
    return _NAME_BAD.sub("_", str(slice_name).replace("=", "_"))


def metric_name(metric: str, aggregate: str, slice_name: str, bound: str | None = None) -> str:
    """``lift``, ``mean``, ``class=tank``, ``lo`` -> ``lift_mean/class_tank_lo``: the UI groups charts by the
    part before ``/``, so a value and its interval bounds for every slice share one section."""
    suffix = f"_{bound}" if bound else ""
    return f"{_NAME_BAD.sub('_', metric)}_{_NAME_BAD.sub('_', aggregate)}/{slice_token(slice_name)}{suffix}"


def image_key(*parts: str) -> str:
    return "/".join(_KEY_BAD.sub("_", str(p)) for p in parts)


def summary_metrics(verdict) -> dict[str, float]:
    """Flat ``{name: value}`` of every finite aggregate in ``verdict.summary`` plus the ``gate/*`` metrics."""
    out: dict[str, float] = {}
    for slice_name, per_metric in (verdict.summary or {}).items():
        n_max = 0
        for metric, per_agg in per_metric.items():
            for aggregate, stat in per_agg.items():
                if not isinstance(stat, dict):
                    continue
                for bound, key in ((None, "value"), ("lo", "lo"), ("hi", "hi")):
                    value = _finite(stat.get(key))
                    if value is not None:
                        out[metric_name(metric, aggregate, slice_name, bound)] = value
                n_max = max(n_max, int(stat.get("n") or 0))
        out[f"n_samples/{slice_token(slice_name)}"] = float(n_max)
    out.update(gate_metrics(verdict))
    return out


def gate_metrics(verdict) -> dict[str, float]:
    return {
        "gate/ok": 1.0 if verdict.ok else 0.0,
        "gate/status_code": float(STATUS_CODES.get(verdict.status, 3)),
        "gate/exit_code": float(verdict.exit_code),
        "gate/n_fail": float(len(verdict.failed_checks)),
        "gate/n_warn": float(len(verdict.warned_checks)),
        "gate/n_not_judged_classes": float(len((verdict.sample or {}).get("not_judged_classes") or [])),
        "gate/n_checks": float(len(verdict.checks)),
        "gate/wall_seconds": float(round(verdict.wall_seconds, 3)),
    }


def _finite(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------ quiet + retry


@contextlib.contextmanager
def quiet_mlflow(request_timeout: int = REQUEST_TIMEOUT_SECONDS):
    """MLflow without its own long HTTP retries (we retry with a short budget) and without INFO noise."""
    overrides = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(request_timeout))),
    }
    saved_env = {k: os.environ.get(k) for k in overrides}
    saved_levels = {name: logging.getLogger(name).level for name in _QUIET_LOGGERS}
    os.environ.update(overrides)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def is_transient(exc: BaseException) -> bool:
    """Connection refused/reset, timeouts, 429/5xx and a locked SQLite database are worth retrying."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ConnectionError | TimeoutError):
            return True
        name = type(exc).__name__
        if name in ("ConnectTimeout", "ReadTimeout", "Timeout", "ConnectionError", "MaxRetryError",
                    "NewConnectionError", "ProtocolError", "ChunkedEncodingError"):
            return True
        message = str(exc)
        code = getattr(exc, "error_code", None)
        if code in ("TEMPORARILY_UNAVAILABLE", "RESOURCE_EXHAUSTED", "REQUEST_LIMIT_EXCEEDED",
                    "DEADLINE_EXCEEDED"):
            return True
        if "API request to" in message and ("failed with exception" in message or "timeout" in message):
            return True
        if "database is locked" in message:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Retrier:
    """Calls with exponential backoff on transient errors, within one total budget for the whole record."""

    def __init__(self, uri: str, budget: float):
        self.uri = uri
        self.budget = max(0.0, budget)
        self.waited = 0.0
        self.attempts = 0
        self.calls = 0

    def __call__(self, what: str, fn: Callable, *args, **kwargs):
        self.calls += 1
        delay = 0.25
        while True:
            self.attempts += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise TrackingError(f"MLflow at {self.uri} could not {what}: {_short(exc)}") from exc
                remaining = self.budget - self.waited
                if remaining <= 0:
                    raise TrackingError(
                        f"MLflow tracking at {self.uri} is unreachable (could not {what} after "
                        f"{self.attempts} attempts, {self.waited:.1f}s of retries): {_short(exc)}. "
                        "The local reports were written; the gate is not passed without its record."
                    ) from exc
                pause = min(delay, remaining)
                time.sleep(pause)
                self.waited += pause
                delay = min(delay * 2, 4.0)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -------------------------------------------------------------------------------------- the record


def log_verdict(verdict, options: TrackingOptions | None = None) -> dict:
    """Record ``verdict`` in MLflow and fill ``verdict.tracking``; raise TrackingError if it cannot."""
    options = options or TrackingOptions()
    if options.record not in ("full", "metrics"):
        raise UsageError(f"TrackingOptions.record must be 'full' or 'metrics', got {options.record!r}")
    if options.promote is not None and (not _ALIAS_OK.match(options.promote)
                                        or options.promote.lower() == "latest"
                                        or re.fullmatch(r"[vV]\d+", options.promote)):
        raise UsageError(f"--promote {options.promote!r}: an alias is letters, digits, '_' or '-', "
                         "not 'latest' nor v<number>")
    with quiet_mlflow():
        return _Record(verdict, options).run()


class _Record:
    def __init__(self, verdict, options: TrackingOptions):
        self.verdict = verdict
        self.options = options
        self.step = int(options.step) if options.step is not None else 0
        self.created = False
        self.run_id: str | None = None
        self.existing_tags: dict[str, str] = {}
        self.existing_params: dict[str, str] = {}
        self.version = None
        self.uri = "<unresolved>"

    def run(self) -> dict:
        import mlflow
        from mlflow import MlflowClient

        opts = self.options
        active = mlflow.active_run()
        if active is not None and opts.uri and _absolute_sqlite(opts.uri) != _absolute_sqlite(mlflow.get_tracking_uri()):
            active = None  # the active run lives in another store: it cannot be the parent
        use_active = active is not None and opts.run_id is None and opts.parent_run_id is None
        if opts.uri:
            self.uri = _absolute_sqlite(opts.uri)
        elif use_active or opts.run_id is not None:
            self.uri = _absolute_sqlite(mlflow.get_tracking_uri())  # the store the active run lives in
        else:
            self.uri = resolve_tracking_uri(None)
        self.retry = _Retrier(self.uri, opts.budget())
        self.verdict.tracking["uri"] = self.uri
        try:
            self.client = self.retry("open the tracking store", MlflowClient, tracking_uri=self.uri)
            self._open_run(active if use_active else None)
            self._record()
        except TrackingError:
            self._abandon()
            raise
        except Exception as exc:
            self._abandon()
            raise TrackingError(f"MLflow at {self.uri} could not record the gate: {_short(exc)}") from exc
        return self.verdict.tracking

    # ---- run
    def _open_run(self, active) -> None:
        opts, client, call = self.options, self.client, self.retry
        if opts.run_id is not None or (active is not None and not opts.nested_in_active_run):
            run_id = opts.run_id or active.info.run_id
            run = call("find run " + run_id, client.get_run, run_id)
            self.run_id, experiment_id = run.info.run_id, run.info.experiment_id
            parent = run.data.tags.get("mlflow.parentRunId")
            self.existing_tags, self.existing_params = dict(run.data.tags), dict(run.data.params)
        else:
            parent = opts.parent_run_id or (active.info.run_id if active is not None else None)
            if parent is not None:
                parent_run = call("find the parent run " + parent, client.get_run, parent)
                experiment_id = parent_run.info.experiment_id  # the UI nests runs within one experiment
            else:
                experiment_id = self._experiment_id(opts.experiment)
            self.run_id = self._create_run(experiment_id, parent)
        experiment = call("read the experiment", client.get_experiment, experiment_id)
        self.verdict.tracking.update({
            "uri": self.uri,
            "experiment_id": experiment_id,
            "experiment": experiment.name,
            "run_id": self.run_id,
            "parent_run_id": parent,
            "created_run": self.created,
        })
        self.verdict.tracking["connect_retries"] = self.retry.attempts - self.retry.calls
        if self.uri.startswith(("http://", "https://")):
            base = self.uri.rstrip("/")
            self.verdict.tracking["url"] = f"{base}/#/experiments/{experiment_id}/runs/{self.run_id}"

    def _experiment_id(self, name: str) -> str:
        client, call = self.client, self.retry
        experiment = call("look up experiment " + name, client.get_experiment_by_name, name)
        if experiment is None:
            try:
                return call("create experiment " + name, client.create_experiment, name,
                            artifact_location=_sqlite_artifact_location(self.uri, name),
                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except TrackingError:
                experiment = call("look up experiment " + name, client.get_experiment_by_name, name)
                if experiment is None:  # not a creation race: the real error
                    raise
        if experiment.lifecycle_stage == "deleted":
            call("restore experiment " + name, client.restore_experiment, experiment.experiment_id)
        if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
            call("tag experiment " + name, client.set_experiment_tag, experiment.experiment_id,
                 EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id

    def _create_run(self, experiment_id: str, parent: str | None) -> str:
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = {}
        with contextlib.suppress(Exception):
            tags = resolve_tags({})
        tags[GATE_RUN_TAG] = "true"
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        name = self.options.run_name or self._default_run_name()
        run = self.retry("create a run", self.client.create_run, experiment_id, tags=tags, run_name=name)
        self.created = True
        return run.info.run_id

    def _default_run_name(self) -> str:
        from validator.mlflow_models import parse_model_uri

        ref = parse_model_uri(str(self.verdict.model))
        if ref is not None and ref.name:
            label = ref.name + (f"-v{ref.version}" if ref.version else f"@{ref.alias}" if ref.alias else "")
        else:
            label = self.verdict.model_name or Path(str(self.verdict.model)).stem or "model"
        return f"camgate-{label}"

    def _abandon(self) -> None:
        """Best effort, no retries: mark a run this call created as FAILED so it does not stay RUNNING."""
        if self.created and self.run_id is not None:
            with contextlib.suppress(Exception):
                self.client.set_tag(self.run_id, "camgate.status", "ERROR")
                self.client.set_terminated(self.run_id, "FAILED")

    # ---- content
    def _record(self) -> None:
        v, opts = self.verdict, self.options
        self._log_metrics(summary_metrics(v))
        self._log_images()
        if opts.record == "metrics":
            self._log_tags({"camgate.status": v.status, "camgate.version": _version()})
            self._finish()
            return
        from validator.mlflow_models import registered_version

        self.version = registered_version(str(v.model), self.client, self.retry)
        baseline = registered_version(str((v.baseline or {}).get("model") or ""), self.client, self.retry)
        if self.version is not None:
            v.tracking["model_version"] = {"name": self.version.name, "version": str(self.version.version)}
        if baseline is not None:
            v.tracking["baseline_version"] = {"name": baseline.name, "version": str(baseline.version)}
        self._plan_promotion()
        self._log_params()
        self._log_tags(self._tags())
        self._log_tables()
        if self.version is not None:
            self._tag_model_version()
        self._log_reports()
        self._promote()
        self._finish()

    def _log_metrics(self, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, self.step) for k, v in sorted(values.items())]
        for i in range(0, len(metrics), _METRICS_PER_BATCH):
            chunk = metrics[i: i + _METRICS_PER_BATCH]
            self.retry("log metrics", self.client.log_batch, self.run_id, metrics=chunk, synchronous=True)

    def _params(self) -> dict[str, str]:
        v = self.verdict
        policy, explainer, sample = v.policy or {}, v.explainer or {}, v.sample or {}
        params = {
            "camgate.model": v.model,
            "camgate.model_name": v.model_name,
            "camgate.data": v.data,
            "camgate.method": explainer.get("method"),
            "camgate.layer": explainer.get("layer"),
            "camgate.preprocess": explainer.get("preprocess"),
            "camgate.score": explainer.get("score"),
            "camgate.batch_size": explainer.get("batch_size"),
            "camgate.policy_name": policy.get("name"),
            "camgate.policy_version": policy.get("version"),
            "camgate.policy_hash": policy.get("hash"),
            "camgate.sample_size": sample.get("max_samples"),
            "camgate.n_explained": sample.get("n_explained"),
            "camgate.seed": sample.get("seed"),
            "camgate.fail_on": v.fail_on,
            "camgate.baseline": (v.baseline or {}).get("model"),
        }
        return {k: str(val)[:6000] for k, val in params.items() if val is not None}

    def _log_params(self) -> None:
        from mlflow.entities import Param

        # An existing run: never re-log a param (MLflow refuses another value for a logged param).
        params = {k: val for k, val in self._params().items() if k not in self.existing_params}
        if params:
            self.retry("log params", self.client.log_batch, self.run_id,
                       params=[Param(k, val) for k, val in params.items()], synchronous=True)

    def _tags(self) -> dict[str, str]:
        v = self.verdict
        policy = v.policy or {}
        failed = [f"{c['check_id']}[{c['slice']}]" for c in v.failed_checks]
        warned = [f"{c['check_id']}[{c['slice']}]" for c in v.warned_checks]
        tags = {
            "camgate.status": v.status,
            "camgate.exit_code": str(v.exit_code),
            "camgate.policy": f"{policy.get('name')} v{policy.get('version')}" if policy else "",
            "camgate.policy_hash": policy.get("hash") or "",
            "camgate.version": _version(),
            "camgate.model": str(v.model),
            "camgate.failed_checks": ", ".join(failed),
            "camgate.warned_checks": ", ".join(warned),
        }
        if v.error:
            tags["camgate.error"] = v.error
        if self.version is not None:
            tags["camgate.model_version"] = f"{self.version.name}/{self.version.version}"
        promotion = v.tracking.get("promotion")
        if promotion:
            tags["camgate.promotion"] = promotion["result"]
        tags.update({str(k): str(val) for k, val in {**self.options.extra_tags}.items()})
        if self.created or self.existing_tags.get(GATE_RUN_TAG) == "true":
            tags["mlflow.note.content"] = _note(v)  # the run description; never overwrite a training run's
        return {k: val[:7900] for k, val in tags.items() if val != ""}

    def _log_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, val) for k, val in tags.items()]
        for i in range(0, len(items), 100):
            self.retry("set tags", self.client.log_batch, self.run_id, tags=items[i: i + 100], synchronous=True)

    def _log_tables(self) -> None:
        import pandas as pd

        v = self.verdict
        if v.table:
            frame = pd.DataFrame({k: list(_plain(col)) for k, col in v.table.items()})
            by_sample = {o["sample_id"]: _artifact_path("report", o["path"]) for o in v.overlays
                         if o.get("sample_id") is not None}
            if "sample_id" in frame:
                frame["overlay"] = [by_sample.get(s) for s in frame["sample_id"]]
            self.retry("log the per-sample table", self.client.log_table, self.run_id, frame,
                       f"{ARTIFACT_DIR}/samples.json")
        rows = []
        for o in v.overlays:
            image = _open_png(Path(v.out_dir) / o["path"])
            if image is None:
                continue
            rows.append({"kind": o.get("kind"), "class_name": o.get("class_name") or "overall",
                         "rank": o.get("rank"), "sample_id": o.get("sample_id"), "lift": _finite(o.get("lift")),
                         "path": _artifact_path("report", o["path"]), "image": image})
        if rows:
            self.retry("log the overlay table", self.client.log_table, self.run_id, pd.DataFrame(rows),
                       f"{ARTIFACT_DIR}/overlays.json")

    def _log_images(self) -> None:
        v = self.verdict
        for o in v.overlays:
            image = _open_png(Path(v.out_dir) / o["path"])
            if image is None:
                continue
            if o.get("kind") == "atlas":
                key = image_key("atlas", slice_token(f"class={o['class_name']}") if o.get("class_name")
                                else "overall")
            else:
                key = image_key("overlays", slice_token(f"class={o.get('class_name')}"),
                                f"{o.get('kind')}_{o.get('rank', 0)}")
            self.retry(f"log image {key}", self.client.log_image, self.run_id, image, key=key,
                       step=self.step, synchronous=True)

    def _log_reports(self) -> None:
        v = self.verdict
        verdict_path = (v.outputs or {}).get("verdict")
        if verdict_path:  # the local verdict.json now carries the run id and the registry facts
            Path(verdict_path).write_text(json.dumps(v.to_dict(), indent=2))
        for path in sorted(v.outputs.values()):
            if Path(path).is_file():
                self.retry(f"upload {Path(path).name}", self.client.log_artifact, self.run_id, path,
                           f"{ARTIFACT_DIR}/report")
        for o in v.overlays:
            path = Path(v.out_dir) / o["path"]
            if path.is_file():
                sub = Path(o["path"]).parent.as_posix()
                self.retry(f"upload {path.name}", self.client.log_artifact, self.run_id, str(path),
                           f"{ARTIFACT_DIR}/report/{sub}" if sub not in ("", ".") else f"{ARTIFACT_DIR}/report")
        self.retry("log the verdict", self.client.log_dict, self.run_id, v.to_dict(), f"{ARTIFACT_DIR}/verdict.json")
        if (v.policy or {}).get("content") is not None:
            self.retry("log the policy", self.client.log_dict, self.run_id, v.policy["content"],
                       f"{ARTIFACT_DIR}/policy.yaml")

    # ---- registry
    def _tag_model_version(self) -> None:
        v, mv = self.verdict, self.version
        tags = {
            "camgate.status": v.status,
            "camgate.run_id": self.run_id,
            "camgate.policy_hash": (v.policy or {}).get("hash") or "",
            "camgate.policy": f"{(v.policy or {}).get('name')} v{(v.policy or {}).get('version')}",
            "camgate.checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for key, value in tags.items():
            if value:
                self.retry(f"tag model version {mv.name}/{mv.version}", self.client.set_model_version_tag,
                           mv.name, str(mv.version), key, value)

    def _plan_promotion(self) -> None:
        alias = self.options.promote
        if not alias:
            return
        v, mv = self.verdict, self.version
        plan = {"alias": alias, "moved": False}
        if mv is None:
            plan["result"] = "not promoted: the audited model is not a registered model version"
        else:
            previous = self._alias_version(mv.name, alias)
            plan.update({"model": mv.name, "version": str(mv.version), "previous_version": previous})
            if v.status != "PASS":
                plan["result"] = f"not promoted: gate {v.status}; {alias} stays at " + (
                    f"version {previous}" if previous else "no version")
            elif previous == str(mv.version):
                plan["result"] = f"{alias} already at version {previous}"
            else:
                plan["moved"] = True
                plan["result"] = f"{alias} moved to version {mv.version}" + (
                    f" (was {previous})" if previous else "")
        v.tracking["promotion"] = plan

    def _alias_version(self, name: str, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        def lookup():
            try:
                return str(self.client.get_model_version_by_alias(name, alias).version)
            except MlflowException as exc:
                if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None  # the alias is not set yet
                raise

        return self.retry(f"read alias {alias} of {name}", lookup)

    def _promote(self) -> None:
        """Last: an alias moves only after everything else was recorded."""
        plan = self.verdict.tracking.get("promotion")
        if not plan or not plan.get("moved"):
            return
        self.retry(f"move alias {plan['alias']}", self.client.set_registered_model_alias,
                   plan["model"], plan["alias"], plan["version"])

    def _finish(self) -> None:
        finish = self.options.finish_run
        if finish is None:
            finish = self.created and self.options.record == "full"
        if finish:
            status = "FAILED" if self.verdict.status == "ERROR" else "FINISHED"
            with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints "View run at" to stdout
                self.retry("end the run", self.client.set_terminated, self.run_id, status)


# ------------------------------------------------------------------------------------------ helpers


def _artifact_path(*parts: str) -> str:
    return "/".join([ARTIFACT_DIR, *[str(p).strip("/") for p in parts]])


def _open_png(path: Path):
    try:
        from PIL import Image

        with Image.open(path) as handle:
            return handle.convert("RGB")
    except (OSError, ValueError):
        return None


def _plain(column):
    """numpy column -> Python values (JSON friendly; NaN stays NaN, written as null)."""
    for value in column:
        if hasattr(value, "item") and not isinstance(value, str):
            value = value.item()
        yield value


def _version() -> str:
    from validator import __version__

    return __version__


def _note(verdict) -> str:
    """The run description shown on the run page: the Markdown summary, bounded."""
    path = (verdict.outputs or {}).get("summary")
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    if not text:
        text = f"camgate: **{verdict.status}**"
    if len(text) > _NOTE_LIMIT:
        text = text[: _NOTE_LIMIT - 80] + "\n\n... (truncated: see camgate/report/summary.md)"
    return text


__all__ = ["TrackingOptions", "log_verdict", "resolve_tracking_uri", "summary_metrics", "metric_name",
           "slice_token", "image_key", "DEFAULT_URI", "quiet_mlflow", "is_transient"]
