"""One gate record: which store, which run (found, or created exactly once), then the content in order.

The run is created once: it carries a client-generated tag ``camgate.attempt_id``, and after a failed
``create_run`` the experiment is searched for that tag before anything is created again; an experiment is
created once the same way (looked up by name after a failure). What the run then holds is written by
:mod:`validator.tracking.content` (metric batches checked before a retry, everything else idempotent) and
:mod:`validator.tracking.registry` (the audited model's link and tags, version tags, promote-on-PASS last).

A run camgate created is named after its verdict (``FAIL · shapes-v3 · default v3``): the run name is the one
column every MLflow runs table shows. A later record into it (the Keras callback's final audit) renames it;
a run camgate did not create (a training run) keeps its name.
"""

from __future__ import annotations

import contextlib
import io
import time
import uuid

from validator.errors import TrackingError
from validator.mlflow_plumbing import (
    Retrier,
    absolute_sqlite,
    resolve_tracking_uri,
    short_error,
    sqlite_artifact_location,
)
from validator.tracking import content, registry
from validator.tracking.content import GATE_RUN_TAG, RUN_LABEL_TAG
from validator.tracking.names import record_metrics
from validator.tracking.options import TrackingOptions

# The MLflow 3 UI shows an experiment without this tag as a GenAI one ("Evaluation runs"); gates are model runs.
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
ATTEMPT_TAG = "camgate.attempt_id"  # client-generated, set at creation: finds a run whose creation seemed to fail


class GateRecord:
    """Record ``verdict`` per ``options``; :meth:`run` returns ``verdict.tracking`` or raises TrackingError."""

    def __init__(self, verdict, options: TrackingOptions):
        self.verdict = verdict
        self.options = options
        self.step = int(options.step) if options.step is not None else 0
        self.attempt_id = uuid.uuid4().hex
        self.timestamp = int(time.time() * 1000)  # of every metric point and keyed image of this record
        self.created = False
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.existing_tags: dict[str, str] = {}
        self.existing_params: dict[str, str] = {}
        self.version = None
        self.uri = "<unresolved>"

    def run(self) -> dict:
        import mlflow
        from mlflow import MlflowClient

        opts = self.options
        active = mlflow.active_run()
        if active is not None and opts.uri and absolute_sqlite(opts.uri) != absolute_sqlite(mlflow.get_tracking_uri()):
            active = None  # the active run lives in another store: it cannot be the parent
        use_active = active is not None and opts.run_id is None and opts.parent_run_id is None
        if opts.uri:
            self.uri = absolute_sqlite(opts.uri)
        elif use_active or opts.run_id is not None:
            self.uri = absolute_sqlite(mlflow.get_tracking_uri())  # the store the active run lives in
        else:
            self.uri = resolve_tracking_uri(None)
        self.retry = Retrier(self.uri, opts.budget())
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
            raise TrackingError(f"MLflow at {self.uri} could not record the gate: {short_error(exc)}") from exc
        return self.verdict.tracking

    # ---- the run
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
        self.experiment_id = experiment_id
        experiment = call("read the experiment", client.get_experiment, experiment_id)
        self.verdict.tracking.update({
            "uri": self.uri,
            "experiment_id": experiment_id,
            "experiment": experiment.name,
            "run_id": self.run_id,
            "parent_run_id": parent,
            "created_run": self.created,
        })
        self.verdict.tracking["connect_retries"] = self.retry.failures
        if self.uri.startswith(("http://", "https://")):
            base = self.uri.rstrip("/")
            self.verdict.tracking["url"] = f"{base}/#/experiments/{experiment_id}/runs/{self.run_id}"

    def _experiment_id(self, name: str) -> str:
        client, call = self.client, self.retry
        experiment = call("look up experiment " + name, client.get_experiment_by_name, name)
        if experiment is None:
            created = call.once("create experiment " + name, client.create_experiment, name,
                                artifact_location=sqlite_artifact_location(self.uri, name),
                                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                                landed=lambda: client.get_experiment_by_name(name))  # also: created meanwhile
            if isinstance(created, str):
                return created
            experiment = created
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            call.once("restore experiment " + name, client.restore_experiment, experiment_id,
                      landed=lambda: client.get_experiment(experiment_id).lifecycle_stage == "active")
        if EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
            call("tag experiment " + name, client.set_experiment_tag, experiment_id,
                 EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment_id

    def _create_run(self, experiment_id: str, parent: str | None) -> str:
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        tags = {}
        with contextlib.suppress(Exception):
            tags = resolve_tags({})
        label = content.run_label(self.verdict, self.options.run_name)
        tags[GATE_RUN_TAG] = "true"
        tags[ATTEMPT_TAG] = self.attempt_id
        tags[RUN_LABEL_TAG] = label
        if parent:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        name = content.run_name(self.verdict.status, label)

        def created_anyway():
            found = self.client.search_runs([experiment_id], filter_string=f"tags.`{ATTEMPT_TAG}` = '{self.attempt_id}'",
                                            max_results=1)
            return found[0] if found else None

        run = self.retry.once("create a run", self.client.create_run, experiment_id, tags=tags, run_name=name,
                              landed=created_anyway)
        self.created = True
        return run.info.run_id

    def _abandon(self) -> None:
        """Best effort, no retries: mark a run this call created as FAILED so it does not stay RUNNING."""
        if self.created and self.run_id is not None:
            with contextlib.suppress(Exception):
                self.client.set_tag(self.run_id, "camgate.status", "ERROR")
                self.client.set_terminated(self.run_id, "FAILED")

    # ---- content
    def _record(self) -> None:
        v, opts, client, retry, run_id = self.verdict, self.options, self.client, self.retry, self.run_id
        if opts.record == "metrics":  # a checkpoint: metrics and keyed images (its reports are temporary)
            content.log_metrics(client, retry, run_id, record_metrics(v, opts.detail), self.timestamp, self.step)
            content.log_images(client, retry, run_id, v, self.step, self.timestamp, self.attempt_id)
            content.log_tags(client, retry, run_id, {"camgate.status": v.status,
                                                     "camgate.version": content.camgate_version()})
            self._rename()
            self._finish()
            return
        from validator.mlflow_models import registered_version

        audited = v.audited_versions or {}
        self.version = registered_version(str(v.model), client, retry, resolved=audited.get("model"))
        baseline = registered_version(str((v.baseline or {}).get("model") or ""), client, retry,
                                      resolved=audited.get("baseline"))
        if self.version is not None:
            v.tracking["model_version"] = {"name": self.version.name, "version": str(self.version.version)}
        if baseline is not None:
            v.tracking["baseline_version"] = {"name": baseline.name, "version": str(baseline.version)}
        model_id = registry.audited_model_id(client, retry, v, self.version, self.experiment_id, run_id)
        if model_id:
            v.tracking["model_id"] = model_id
        content.log_metrics(client, retry, run_id, record_metrics(v, opts.detail), self.timestamp, self.step,
                            model_id)
        plan = registry.plan_promotion(client, retry, v, self.version, opts.promote)
        # An existing run: never re-log a param (MLflow refuses another value for a logged param).
        params = {k: val for k, val in content.params(v).items() if k not in self.existing_params}
        content.log_params(client, retry, run_id, params)
        describe = self.created or self.existing_tags.get(GATE_RUN_TAG) == "true"  # never a training run's
        content.log_tags(client, retry, run_id, content.tags(v, self.version, opts.extra_tags, describe))
        content.log_dataset(client, retry, run_id, v)
        if model_id:
            registry.link_model(client, retry, run_id, model_id, v)
        content.log_tables(client, retry, run_id, v, self.attempt_id)
        if self.version is not None and opts.tag_version:
            registry.tag_model_version(client, retry, self.version, v, run_id)
        content.log_reports(client, retry, run_id, v)
        self._rename()
        registry.promote(client, retry, plan)
        self._finish()

    def _rename(self) -> None:
        """A gate run created by an earlier record (the callback's checkpoint) takes this verdict's name."""
        label = self.existing_tags.get(RUN_LABEL_TAG)
        if self.created or self.existing_tags.get(GATE_RUN_TAG) != "true" or not label:
            return
        self.retry("rename the run", self.client.update_run, self.run_id, name=content.run_name(self.verdict.status,
                                                                                                label))

    def _finish(self) -> None:
        finish = self.options.finish_run
        if finish is None:
            finish = self.created and self.options.record == "full"
        if finish:
            status = "FAILED" if self.verdict.status == "ERROR" else "FINISHED"
            with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints "View run at" to stdout
                self.retry("end the run", self.client.set_terminated, self.run_id, status)


__all__ = ["GateRecord", "ATTEMPT_TAG", "EXPERIMENT_KIND_TAG"]
