"""``mlflow.models.evaluate(..., evaluators="camgate")``: a thin adapter that runs the same audit.

.. code-block:: python

    frame = pandas.DataFrame({"image": [...], "label": [...], "xmin": [...], "ymin": [...],
                              "xmax": [...], "ymax": [...]})           # one row per box, pixels
    result = mlflow.models.evaluate(
        "models:/shapes/3", data=frame, targets="label", model_type="classifier",
        evaluators="camgate", evaluator_config={"policy": "policy.yaml", "out": "camgate-report/eval"},
    )
    result.metrics["gate/ok"]      # 1.0 on a pass; the gate's metrics (as logged) are in result.metrics

MLflow 3's ``evaluate`` needs ``model_type`` (or ``extra_metrics``) and, for ``"classifier"``, ``targets``:
pass ``targets="label"``. The DataFrame is written as a CSV manifest (image, label, xmin, ymin, xmax, ymax;
relative image paths are resolved against the working folder or ``evaluator_config["images"]``), the Keras
model is taken from the pyfunc wrapper MLflow loaded, and the audit logs into the evaluation run. The
result's metrics are those the gate logged (per check, bounded; MLflow logs them again to the evaluated
logged model); its artifacts are the run's ``camgate/`` files. The gate verdict does not raise: check
``result.metrics["gate/ok"]`` (or the run's ``camgate.status`` tag).

``evaluator_config`` keys: ``policy``, ``out`` and any :func:`validator.gate.audit` option (``method``,
``layer``, ``preprocess``, ``classes``, ``max_samples``, ``seed``, ``batch_size``, ``trust_model``,
``images``, ``fail_on``, ``baseline``), plus ``promote`` (ignored here: evaluate gives no registry version),
``mlflow_detail`` (``"summary"``, or ``"full"``: every aggregate of every slice as a metric too) and
``columns`` (a mapping from the six column names to yours). Any other key is refused (a typo would otherwise
be ignored silently), with the closest valid key in the message.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from mlflow.models.evaluation.base import EvaluationResult, ModelEvaluator

COLUMNS = ("image", "label", "xmin", "ymin", "xmax", "ymax")
#: evaluator_config keys of the evaluator itself; every other key is an audit() option (AuditOptions field)
_OWN_KEYS = ("policy", "out", "columns", "images", "promote", "mlflow_detail")
#: AuditOptions fields the evaluator sets itself (or that make no sense in a config dict)
_NOT_CONFIGURABLE = ("format", "tracking", "progress")


def audit_config_keys() -> tuple[str, ...]:
    """The audit options ``evaluator_config`` may set: :class:`validator.gate.AuditOptions` fields, less those
    the evaluator sets itself (``images`` resolves the manifest's paths and is not passed on)."""
    from validator.callback import audit_option_names

    return tuple(n for n in audit_option_names() if n not in _NOT_CONFIGURABLE and n != "images")


def check_config(config: dict) -> None:
    """An unknown ``evaluator_config`` key (a typo) raises before anything runs, naming the closest key."""
    from validator.callback import reject_unknown_options

    reject_unknown_options(config, {*_OWN_KEYS, *audit_config_keys()}, "the camgate evaluator_config")


class CamGateEvaluator(ModelEvaluator):
    """The camgate gate as an MLflow evaluator (entry point group ``mlflow.model_evaluator``)."""

    @classmethod
    def can_evaluate(cls, *, model_type, evaluator_config, **kwargs) -> bool:
        return model_type in (None, "classifier")

    def evaluate(self, *, model_type, dataset, run_id, evaluator_config, model=None, **kwargs):
        import mlflow

        from validator.gate import audit
        from validator.tracking import TrackingOptions, record_metrics

        config = dict(evaluator_config or {})
        check_config(config)
        if model is None:
            raise ValueError("the camgate evaluator needs a model (a Keras model logged to MLflow)")
        keras_model = _raw_keras_model(model)
        with tempfile.TemporaryDirectory(prefix="camgate-eval-") as tmp:
            manifest = write_manifest(dataset, Path(tmp) / "manifest.csv", config.get("columns") or {},
                                      config.get("images"))
            options = {k: config[k] for k in audit_config_keys() if k in config}
            tags = {"camgate.source": "mlflow.evaluate"}
            if kwargs.get("model_id"):
                tags["camgate.model_id"] = str(kwargs["model_id"])  # the logged model MLflow evaluated
            detail = config.get("mlflow_detail") or "summary"
            tracking = TrackingOptions(uri=mlflow.get_tracking_uri(), run_id=run_id, finish_run=False,
                                       extra_tags=tags, detail=detail)
            verdict = audit(keras_model, manifest, policy=config.get("policy"), out=config.get("out"),
                            format="csv", tracking=tracking, **options)
        metrics = record_metrics(verdict, detail) if verdict.summary else {}
        metrics.update({"gate/ok": 1.0 if verdict.ok else 0.0})
        return EvaluationResult(metrics=metrics, artifacts={}, run_id=run_id)


def _raw_keras_model(model):
    try:
        raw = model.get_raw_model()
    except (AttributeError, NotImplementedError) as exc:
        raise ValueError("the camgate evaluator needs a model logged with mlflow.keras.log_model") from exc
    if not hasattr(raw, "layers"):
        raise ValueError(f"the camgate evaluator needs a Keras model, got {type(raw).__name__}")
    return raw


def write_manifest(dataset, path: Path, columns: dict, images_dir=None) -> str:
    """The evaluation DataFrame (features + targets) as camgate's CSV manifest, with absolute image paths."""
    frame = dataset.features_data.copy()
    labels = getattr(dataset, "labels_data", None)
    names = {c: columns.get(c, c) for c in COLUMNS}
    if names["label"] not in frame.columns and labels is not None:
        frame[names["label"]] = list(labels)
    missing = [names[c] for c in COLUMNS if names[c] not in frame.columns]
    if missing:
        raise ValueError(f"the evaluation data lacks the columns {missing}; camgate needs {list(COLUMNS)} "
                         "(map yours with evaluator_config={'columns': {...}})")
    base = Path(images_dir) if images_dir else Path.cwd()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for _, row in frame.iterrows():
            image = str(row[names["image"]])
            if not os.path.isabs(image):
                image = str((base / image).resolve())
            writer.writerow([image, row[names["label"]], *(row[names[c]] for c in COLUMNS[2:])])
    return str(path)


__all__ = ["CamGateEvaluator", "write_manifest"]
