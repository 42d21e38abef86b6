"""``CamGateCallback``: run the gate on the model being trained, and record it in the training's MLflow run.

.. code-block:: python

    import mlflow
    from validator.callback import CamGateCallback

    gate = CamGateCallback(data="heldout/annotations.json", policy="policy.yaml", every_n_epochs=1)
    with mlflow.start_run():
        model.fit(x, y, epochs=10, callbacks=[gate])
    print(gate.verdict.status)           # the audit at the end of training
    print([h["metrics"]["check/object-heat/value"] for h in gate.history])

Where it logs (``tracking=``): by default, into the **active run itself** (the training run): the gate
metrics sit next to the loss with ``step=epoch`` (0-based, like ``mlflow.keras.autolog``), the final record
(params ``camgate.*``, tags ``camgate.status``..., artifacts under ``camgate/``) joins the training run.
``tracking=TrackingOptions(nested_in_active_run=True)`` makes one nested gate run instead (kept for every
checkpoint and the final record). With no active run, one gate run is created. ``tracking=None``: no MLflow.

Checkpoint audits (``every_n_epochs``) log metrics and keyed overlay images only and write their local
reports to a temporary folder; the final audit writes the full local report to ``out`` (default
``camgate-report/<model name>``). ``fail_training=True`` raises :class:`GateFailedError` at the end of
training when the final verdict is not a pass (FAIL, ERROR, or WARN with ``fail_on="warn"``).
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import fields, replace

from validator._tf import keras
from validator.errors import CamgateError, UsageError
from validator.tracking import TrackingOptions, record_metrics

_DEFAULT = object()
#: The callback's own keywords (``tracking`` too: one TrackingOptions for every audit of the training).
_OWN_OPTIONS = ("data", "policy", "every_n_epochs", "fail_training", "out", "tracking")


class UnknownOptionError(UsageError, TypeError):
    """A keyword that is not an option (a typo): raised when the callback or evaluator is set up, not later."""


def reject_unknown_options(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """Raise :class:`UnknownOptionError` naming each unknown key of ``given`` and the closest valid name."""
    valid = sorted(valid)
    unknown = [k for k in given if k not in valid]
    if not unknown:
        return
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
        parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise UnknownOptionError(f"{where}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(parts)}; "
                             f"valid: {', '.join(sorted(valid))}")


def audit_option_names() -> tuple[str, ...]:
    """The keyword options of :func:`validator.gate.audit`: the fields of :class:`validator.gate.AuditOptions`."""
    from validator.gate import AuditOptions

    return tuple(f.name for f in fields(AuditOptions))


class GateFailedError(CamgateError):
    """Training finished but the gate did not pass (raised by ``CamGateCallback(fail_training=True)``)."""

    exit_code = 1

    def __init__(self, message: str, verdict):
        super().__init__(message)
        self.verdict = verdict


class CamGateCallback(keras.callbacks.Callback):
    """Audit the in-memory model at the end of training (and every ``every_n_epochs`` epochs).

    ``data``, ``policy`` and ``**audit_options`` (method, layer, preprocess, classes, max_samples, seed,
    batch_size, ...) are those of :func:`validator.gate.audit` (the fields of ``validator.gate.AuditOptions``);
    an unknown one raises :class:`UnknownOptionError` (a ``TypeError`` and ``UsageError``) right here, naming
    the closest valid name. After training: ``.verdict`` (the final Verdict) and ``.history`` (one dict per
    audit: epoch, status, ok, metrics as logged to MLflow).
    """

    def __init__(self, data, policy=None, every_n_epochs: int | None = None, fail_training: bool = False,
                 out=None, tracking=_DEFAULT, **audit_options):
        super().__init__()
        if every_n_epochs is not None and int(every_n_epochs) < 1:
            raise ValueError("every_n_epochs must be a positive integer or None")
        # A typo must fail here, before training starts, not as an ERROR verdict after the first audited epoch.
        reject_unknown_options(audit_options, {*audit_option_names(), *_OWN_OPTIONS}, "CamGateCallback")
        self.data = data
        self.policy = policy
        self.every_n_epochs = int(every_n_epochs) if every_n_epochs is not None else None
        self.fail_training = fail_training
        self.out = out
        self.tracking = TrackingOptions(nested_in_active_run=False) if tracking is _DEFAULT else tracking
        self.audit_options = audit_options
        self.verdict = None
        self.history: list[dict] = []
        self._run_id: str | None = None
        self._uri: str | None = None
        self._owns_run = False
        self._last_epoch = -1

    # ---- Keras hooks
    def on_train_begin(self, logs=None):
        self._run_id, self._owns_run, self._last_epoch = None, False, -1
        self.history = []
        self.verdict = None

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        last = (self.params or {}).get("epochs")
        if last is not None and epoch + 1 >= last:
            return  # the final audit (on_train_end) records this epoch, at the same step
        if self.every_n_epochs and (epoch + 1) % self.every_n_epochs == 0:
            out = tempfile.mkdtemp(prefix="camgate-epoch-")
            try:
                self._audit(epoch, "metrics", out)
            finally:
                shutil.rmtree(out, ignore_errors=True)

    def on_train_end(self, logs=None):
        self.verdict = self._audit(max(self._last_epoch, 0), "full", self.out)
        if self.fail_training and not self.verdict.ok:
            v = self.verdict
            reasons = "; ".join(c["message"] for c in v.failed_checks[:3]) or v.error or v.status
            raise GateFailedError(f"camgate: {v.status} after training ({reasons})", v)

    # ---- the audit
    def _audit(self, epoch: int, record: str, out):
        from validator.gate import audit

        tracking = self._tracking(epoch, record)
        verdict = audit(self.model, self.data, policy=self.policy, out=out, tracking=tracking,
                        **self.audit_options)
        run_id = verdict.tracking.get("run_id")
        if run_id and self._run_id is None:
            self._run_id, self._uri = run_id, verdict.tracking.get("uri")
            self._owns_run = bool(verdict.tracking.get("created_run"))
        detail = self.tracking.detail if self.tracking is not None else "summary"
        metrics = record_metrics(verdict, detail) if verdict.summary else {}
        self.history.append({"epoch": epoch, "final": record == "full", "status": verdict.status,
                             "ok": verdict.ok, "metrics": metrics, "run_id": run_id})
        return verdict

    def _tracking(self, epoch: int, record: str):
        if self.tracking is None:
            return None
        options = replace(self.tracking, step=epoch, record=record)
        if self._run_id is not None:  # every later audit goes to the run the first one used
            finish = self._owns_run and record == "full"
            options = replace(options, uri=self._uri, run_id=self._run_id, parent_run_id=None, finish_run=finish)
        elif record == "metrics":
            options = replace(options, finish_run=False)  # a run created now stays open for later epochs
        return options


__all__ = ["CamGateCallback", "GateFailedError", "UnknownOptionError", "reject_unknown_options", "audit_option_names"]
