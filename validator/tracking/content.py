"""What a gate run holds, and how each part is written: metrics, params, tags and description, tables,
keyed images, report files, verdict and policy (see docs/mlflow.md, "What a gate run holds").

Every function takes the client, the record's :class:`~validator.mlflow_plumbing.Retrier` and the run id.
Writes that a blind retry could duplicate are not retried blindly: a metric batch goes through
``retry.once`` with a check that reads its first point back; images and tables are named from the record's
attempt id (:mod:`validator.tracking.uploads`). Everything else here is idempotent.
"""

from __future__ import annotations

import json
from pathlib import Path

from validator.report.escape import MLFLOW_PARAM_LIMIT, mlflow_value
from validator.tracking import uploads
from validator.tracking.names import finite, image_key, slice_token

ARTIFACT_DIR = "camgate"
GATE_RUN_TAG = "camgate.gate_run"  # set on runs camgate created (not on a training run it logs into)
_NOTE_LIMIT = 7500  # the run description is a tag (8000 characters at most)
_METRICS_PER_BATCH = 500
_TAGS_PER_BATCH = 100


# ---------------------------------------------------------------------------------------------- metrics


def log_metrics(client, retry, run_id: str, values: dict[str, float], timestamp: int, step: int) -> None:
    """Every point carries the record's ``timestamp`` and ``step``: a batch whose answer was lost is found in
    the metric history and not sent again (MLflow appends a point per call)."""
    from mlflow.entities import Metric

    metrics = [Metric(k, val, timestamp, step) for k, val in sorted(values.items())]
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


# ------------------------------------------------------------------------------------- tables and images


def log_tables(client, retry, run_id: str, verdict, token: str) -> None:
    """``camgate/samples.json`` (one row per sample, with its overlay's path) and ``camgate/overlays.json``."""
    import pandas as pd

    v = verdict
    if v.table:
        frame = pd.DataFrame({k: list(_plain(col)) for k, col in v.table.items()})
        by_sample = {o["sample_id"]: artifact_path("report", o["path"]) for o in v.overlays
                     if o.get("sample_id") is not None}
        if "sample_id" in frame:
            frame["overlay"] = [by_sample.get(s) for s in frame["sample_id"]]
        uploads.log_table(client, retry, run_id, frame, f"{ARTIFACT_DIR}/samples.json", token)
    rows = []
    for o in v.overlays:
        image = _open_png(Path(v.out_dir) / o["path"])
        if image is None:
            continue
        rows.append({"kind": o.get("kind"), "class_name": o.get("class_name") or "overall",
                     "rank": o.get("rank"), "sample_id": o.get("sample_id"), "lift": finite(o.get("lift")),
                     "path": artifact_path("report", o["path"]), "image": image})
    if rows:
        uploads.log_table(client, retry, run_id, pd.DataFrame(rows), f"{ARTIFACT_DIR}/overlays.json", token)


def overlay_key(overlay: dict) -> str:
    """``overlays/class_<name>/<kind>_<rank>`` or ``atlas/overall``, ``atlas/class_<name>``."""
    if overlay.get("kind") == "atlas":
        return image_key("atlas", slice_token(f"class={overlay['class_name']}") if overlay.get("class_name")
                         else "overall")
    cluster = f"{overlay['cluster']}_" if overlay.get("cluster") is not None else ""
    return image_key("overlays", slice_token(f"class={overlay.get('class_name')}"),
                     f"{overlay.get('kind')}_{cluster}{overlay.get('rank', 0)}")


def log_images(client, retry, run_id: str, verdict, step: int, timestamp: int, token: str) -> None:
    """Every overlay and atlas as a keyed image at ``step`` (the UI's image charts, with a step slider)."""
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
    """The local report files under ``camgate/report/``, then ``camgate/verdict.json`` and ``policy.yaml``
    (uploads to fixed paths: a retry overwrites the same file)."""
    v = verdict
    verdict_path = (v.outputs or {}).get("verdict")
    if verdict_path:  # the local verdict.json now carries the run id and the registry facts
        from validator.report.files import write_text_atomic

        write_text_atomic(Path(verdict_path), json.dumps(v.to_dict(), indent=2))  # recorded: a rerun may replace it
    for path in sorted(v.outputs.values()):
        if Path(path).is_file():
            retry(f"upload {Path(path).name}", client.log_artifact, run_id, path, f"{ARTIFACT_DIR}/report")
    for o in v.overlays:
        path = Path(v.out_dir) / o["path"]
        if path.is_file():
            sub = Path(o["path"]).parent.as_posix()
            retry(f"upload {path.name}", client.log_artifact, run_id, str(path),
                  f"{ARTIFACT_DIR}/report/{sub}" if sub not in ("", ".") else f"{ARTIFACT_DIR}/report")
    retry("log the verdict", client.log_dict, run_id, v.to_dict(), f"{ARTIFACT_DIR}/verdict.json")
    if (v.policy or {}).get("content") is not None:
        retry("log the policy", client.log_dict, run_id, v.policy["content"], f"{ARTIFACT_DIR}/policy.yaml")


# ------------------------------------------------------------------------------------------ helpers


def artifact_path(*parts: str) -> str:
    return "/".join([ARTIFACT_DIR, *[str(p).strip("/") for p in parts]])


def camgate_version() -> str:
    from validator import __version__

    return __version__


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


__all__ = ["ARTIFACT_DIR", "GATE_RUN_TAG", "log_metrics", "params", "log_params", "tags", "log_tags", "note",
           "log_tables", "log_images", "overlay_key", "log_reports", "artifact_path"]
