"""What a gate run holds, and how each part is written: metrics, params, tags and description, run name,
the held-out set as a dataset input, keyed images, report files, verdict and policy (see docs/mlflow.md,
"What a gate run holds"); the tables are :mod:`validator.tracking.tables`'s.

Every file is stored once: the overlays under ``camgate/report/overlays/`` (the ``overlays.json`` table points
its image cells at those files), the verdict as ``camgate/verdict.json`` only. Keyed images (the step slider
of the "Model metrics" tab) are logged by checkpoint records only (``record="metrics"``: the Keras callback's
epochs), whose reports are not kept.

Every function takes the client, the record's :class:`~validator.mlflow_plumbing.Retrier` and the run id.
Writes that a blind retry could duplicate are not retried blindly: a metric batch goes through
``retry.once`` with a check that reads its first point back; images and tables are named from the record's
attempt id (:mod:`validator.tracking.uploads`). Everything else here is idempotent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from validator.report.escape import MLFLOW_PARAM_LIMIT, mlflow_value
from validator.tracking import uploads
from validator.tracking.names import image_key, slice_token
from validator.tracking.tables import ARTIFACT_DIR, _open_png, artifact_path, log_tables, overlay_artifacts

GATE_RUN_TAG = "camgate.gate_run"  # set on runs camgate created (not on a training run it logs into)
_NOTE_LIMIT = 7500  # the run description is a tag (8000 characters at most)
_METRICS_PER_BATCH = 500
_TAGS_PER_BATCH = 100


# ---------------------------------------------------------------------------------------------- metrics


def log_metrics(client, retry, run_id: str, values: dict[str, float], timestamp: int, step: int,
                model_id: str | None = None) -> None:
    """Every point carries the record's ``timestamp`` and ``step``: a batch whose answer was lost is found in
    the metric history and not sent again (MLflow appends a point per call). ``model_id``: the audited
    MLflow 3 logged model, whose page then lists the gate's metrics too."""
    from mlflow.entities import Metric

    metrics = [Metric(k, val, timestamp, step, model_id=model_id) for k, val in sorted(values.items())]
    for i in range(0, len(metrics), _METRICS_PER_BATCH):
        chunk = metrics[i: i + _METRICS_PER_BATCH]
        retry.once("log metrics", client.log_batch, run_id, metrics=chunk, synchronous=True,
                   landed=lambda first=chunk[0]: _point_logged(client, run_id, first))


def _point_logged(client, run_id: str, metric) -> bool:
    """A batch is one transaction: its first point (this record's timestamp and step) says it landed."""
    history = client.get_metric_history(run_id, metric.key)
    return any(m.timestamp == metric.timestamp and m.step == metric.step and m.value == metric.value
               for m in history)


# ------------------------------------------------------------------------------------- params and tags


def params(verdict) -> dict[str, str]:
    v = verdict
    policy, explainer, sample = v.policy or {}, v.explainer or {}, v.sample or {}
    values = {
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
    return {k: mlflow_value(val, MLFLOW_PARAM_LIMIT) for k, val in values.items() if val is not None}


def log_params(client, retry, run_id: str, values: dict[str, str]) -> None:
    """Re-logging a param with the same value is accepted by MLflow: a retried batch is idempotent."""
    from mlflow.entities import Param

    if values:
        retry("log params", client.log_batch, run_id, params=[Param(k, val) for k, val in values.items()],
              synchronous=True)


def tags(verdict, version, extra_tags: dict, describe: bool) -> dict[str, str]:
    """Run tags; ``describe``: also the run description (never on a training run camgate logs into)."""
    v = verdict
    policy = v.policy or {}
    failed = [f"{c['check_id']}[{c['slice']}]" for c in v.failed_checks]
    warned = [f"{c['check_id']}[{c['slice']}]" for c in v.warned_checks]
    values = {
        "camgate.status": v.status,
        "camgate.exit_code": str(v.exit_code),
        "camgate.policy": f"{policy.get('name')} v{policy.get('version')}" if policy else "",
        "camgate.policy_hash": policy.get("hash") or "",
        "camgate.version": camgate_version(),
        "camgate.model": str(v.model),
        "camgate.failed_checks": ", ".join(failed),
        "camgate.warned_checks": ", ".join(warned),
        "camgate.not_judged_classes": ", ".join(map(str, (v.sample or {}).get("not_judged_classes") or [])),
    }
    if v.error:
        values["camgate.error"] = v.error
    if version is not None:
        values["camgate.model_version"] = f"{version.name}/{version.version}"
    promotion = v.tracking.get("promotion")
    if promotion:
        values["camgate.promotion"] = promotion["result"]
    values.update({str(k): str(val) for k, val in (extra_tags or {}).items()})
    if describe:
        values["mlflow.note.content"] = note(v)
    return {k: mlflow_value(val) for k, val in values.items() if val != ""}  # str, bounded, storable


def log_tags(client, retry, run_id: str, values: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, val) for k, val in values.items()]
    for i in range(0, len(items), _TAGS_PER_BATCH):
        retry("set tags", client.log_batch, run_id, tags=items[i: i + _TAGS_PER_BATCH], synchronous=True)


# --------------------------------------------------------------------------------------------- run name

RUN_LABEL_TAG = "camgate.run_label"  # the run name without its verdict prefix (renamed on a later record)
_SEPARATOR = " \u00b7 "  # " · "


def run_label(verdict, given: str | None) -> str:
    """``given`` (``--run-name``), else ``<model> · <policy> v<version>``."""
    if given:
        return str(given)
    from validator.mlflow_models import parse_model_uri

    ref = parse_model_uri(str(verdict.model))
    if ref is not None and ref.name:
        label = ref.name + (f"-v{ref.version}" if ref.version else f"@{ref.alias}" if ref.alias else "")
    elif ref is not None and ref.model_id:
        label = ref.model_id
    else:
        label = verdict.model_name or Path(str(verdict.model)).stem or "model"
    policy = verdict.policy or {}
    if policy.get("name"):
        label += f"{_SEPARATOR}{policy['name']} v{policy.get('version')}"
    return label


def run_name(status: str, label: str) -> str:
    """``FAIL · shapes-v3 · default v3``: the verdict leads the name, the one column every runs table shows."""
    return f"{status}{_SEPARATOR}{label}"[:250]


# ---------------------------------------------------------------------------------------- dataset input


def dataset_input(verdict):
    """The held-out set as an MLflow dataset input (context ``eval``): name ``<folder>/<file>``, the source the
    annotation path, the digest a fingerprint of that file and of the audited sample ids; None without data."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.entities import Dataset, DatasetInput, InputTag

    data = str(verdict.data or "")
    if not data or data.startswith("<"):
        return None
    path = Path(data)
    digest = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        digest.update(data.encode())
    table = verdict.table or {}
    for sample_id in table.get("sample_id", []):
        digest.update(f"\0{sample_id}".encode())
    try:
        source = resolve_dataset_source(str(path.resolve()) if path.exists() else data)
        source_type, source_json = source._get_source_type(), source.to_json()
    except Exception:  # an unresolvable location: recorded as the path it was given
        source_type, source_json = "local", json.dumps({"uri": data})
    sample = verdict.sample or {}
    profile = {"num_samples": sample.get("n_explained"), "num_classes": len(sample.get("class_names") or []),
               "format": sample.get("format")}
    name = "/".join(p for p in (path.parent.name, path.name) if p) or data
    dataset = Dataset(name=name[:500], digest=digest.hexdigest()[:16], source_type=source_type,
                      source=source_json, profile=json.dumps(profile))
    return DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", "eval")])


def log_dataset(client, retry, run_id: str, verdict) -> None:
    """Idempotent: MLflow keeps one dataset per (experiment, name, digest) and one input per run."""
    entry = dataset_input(verdict)
    if entry is not None:
        retry("log the held-out set as a dataset input", client.log_inputs, run_id, datasets=[entry])


def note(verdict) -> str:
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


# ------------------------------------------------------------------------------------------- images


def overlay_key(overlay: dict) -> str:
    """``overlays/class_<name>/<kind>_<rank>`` or ``atlas/overall``, ``atlas/class_<name>``."""
    if overlay.get("kind") == "atlas":
        return image_key("atlas", slice_token(f"class={overlay['class_name']}") if overlay.get("class_name")
                         else "overall")
    cluster = f"{overlay['cluster']}_" if overlay.get("cluster") is not None else ""
    return image_key("overlays", slice_token(f"class={overlay.get('class_name')}"),
                     f"{overlay.get('kind')}_{cluster}{overlay.get('rank', 0)}")


def log_images(client, retry, run_id: str, verdict, step: int, timestamp: int, token: str) -> None:
    """Every overlay and atlas as a keyed image at ``step`` (the UI's image charts, with a step slider): for
    checkpoint records only, whose local reports are temporary (a full record stores each overlay once, as a
    report file)."""
    logged = False
    for o in verdict.overlays:
        image = _open_png(Path(verdict.out_dir) / o["path"])
        if image is None:
            continue
        uploads.log_keyed_image(client, retry, run_id, image, overlay_key(o), step, timestamp, token)
        logged = True
    if logged:
        uploads.mark_images_logged(client, retry, run_id)


# -------------------------------------------------------------------------------------------- reports


def log_reports(client, retry, run_id: str, verdict) -> None:
    """The local report files under ``camgate/report/``, each overlay's bytes once (an overlay the report wrote
    under two names: once, the other name in ``verdict.tracking["overlay_artifacts"]``), then
    ``camgate/verdict.json`` (the local verdict.json's content: not uploaded a second time) and ``policy.yaml``
    (uploads to fixed paths: a retry overwrites the same file)."""
    v = verdict
    stored = overlay_artifacts(v)
    aliases = {local: file for local, file in stored.items() if file != artifact_path("report", local)}
    if aliases:
        v.tracking["overlay_artifacts"] = aliases
    verdict_path = (v.outputs or {}).get("verdict")
    if verdict_path:  # the local verdict.json now carries the run id and the registry facts
        from validator.report.files import write_text_atomic

        write_text_atomic(Path(verdict_path), json.dumps(v.to_dict(), indent=2))  # recorded: a rerun may replace it
    for path in sorted(v.outputs.values()):
        if Path(path).is_file() and path != verdict_path:
            retry(f"upload {Path(path).name}", client.log_artifact, run_id, path, f"{ARTIFACT_DIR}/report")
    for local in stored:
        if local in aliases:
            continue
        path, sub = Path(v.out_dir) / local, Path(local).parent.as_posix()
        retry(f"upload {path.name}", client.log_artifact, run_id, str(path),
              f"{ARTIFACT_DIR}/report/{sub}" if sub not in ("", ".") else f"{ARTIFACT_DIR}/report")
    retry("log the verdict", client.log_dict, run_id, v.to_dict(), f"{ARTIFACT_DIR}/verdict.json")
    if (v.policy or {}).get("content") is not None:
        retry("log the policy", client.log_dict, run_id, v.policy["content"], f"{ARTIFACT_DIR}/policy.yaml")


# ------------------------------------------------------------------------------------------ helpers


def camgate_version() -> str:
    from validator import __version__

    return __version__


__all__ = ["ARTIFACT_DIR", "GATE_RUN_TAG", "RUN_LABEL_TAG", "log_metrics", "params", "log_params", "tags", "log_tags",
           "run_label", "run_name", "dataset_input", "log_dataset", "note", "log_tables", "log_images", "overlay_key",
           "log_reports", "artifact_path"]
