"""The tables of a gate run, in MLflow's table format (``mlflow.load_table`` reads them; the artifact view shows
them as tables), and where each overlay's bytes are stored: once, under ``camgate/report/overlays/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from validator.tracking.names import finite
from validator.tracking.uploads import log_table

ARTIFACT_DIR = "camgate"
PREVIEW_SIZE = 128


def log_tables(client, retry, run_id: str, verdict, token: str) -> None:
    """The tables a reviewer opens in the artifact view (MLflow's table format, read by ``mlflow.load_table``):

    - ``camgate/checks.json``: one row per check and slice (a per-class check: one row per class);
    - ``camgate/slices.json``: one row per slice and metric, the mean (a rate for 0/1 metrics) with its
      interval, and the median and percentiles of continuous metrics;
    - ``camgate/samples.json``: one row per sample, with its overlay's artifact path;
    - ``camgate/overlays.json``: one row per overlay, its image cell pointing at the overlay file under
      ``camgate/report/overlays/`` (uploaded once, by :func:`log_reports`) and at a 128-px preview under
      ``camgate/previews/`` that the table shows (MLflow 3.17 draws a cell image up to 144 px wide in a
      ~134-px column: a full-size overlay loses its right edge, where a corner mark sits).
    """
    import pandas as pd

    v = verdict
    stored = overlay_artifacts(v)
    if v.checks:
        log_table(client, retry, run_id, pd.DataFrame(check_rows(v)), f"{ARTIFACT_DIR}/checks.json", token)
    rows = slice_rows(v)
    if rows:
        log_table(client, retry, run_id, pd.DataFrame(rows), f"{ARTIFACT_DIR}/slices.json", token)
    if v.table:
        frame = pd.DataFrame({k: list(_plain(col)) for k, col in v.table.items()})
        by_sample = {}
        for o in v.overlays:  # the first overlay of a sample (its worst or typical one)
            if o.get("sample_id") is not None and o["path"] in stored:
                by_sample.setdefault(o["sample_id"], stored[o["path"]])
        if "sample_id" in frame:
            frame["overlay"] = [by_sample.get(s) for s in frame["sample_id"]]
        log_table(client, retry, run_id, frame, f"{ARTIFACT_DIR}/samples.json", token)
    rows, previews = [], {}
    for o in v.overlays:
        if o["path"] not in stored:
            continue
        file = stored[o["path"]]
        if file not in previews:
            previews[file] = _log_preview(client, retry, run_id, Path(v.out_dir) / o["path"], file)
        # few columns, the image first
        rows.append({"image": {"type": "image", "filepath": file, "compressed_filepath": previews[file]},
                     "class_name": o.get("class_name") or "overall", "kind": o.get("kind"),
                     "rank": o.get("rank"), "lift": finite(o.get("lift")), "sample_id": o.get("sample_id")})
    if rows:
        log_table(client, retry, run_id, pd.DataFrame(rows), f"{ARTIFACT_DIR}/overlays.json", token)


def _log_preview(client, retry, run_id: str, local: Path, stored: str) -> str:
    """A ``PREVIEW_SIZE``-px WebP of the overlay at ``camgate/previews/<name>.webp`` (a fixed path: a retry
    overwrites it); returns its artifact path, or the full image's if the overlay cannot be read."""
    import tempfile

    image = _open_png(local)
    if image is None:
        return stored
    image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    name = Path(stored).stem + ".webp"
    with tempfile.TemporaryDirectory(prefix="camgate-preview-") as tmp:
        image.save(Path(tmp) / name, quality=85)
        retry(f"upload the preview {name}", client.log_artifact, run_id, str(Path(tmp) / name),
              f"{ARTIFACT_DIR}/previews")
    return f"{ARTIFACT_DIR}/previews/{name}"


def overlay_artifacts(verdict) -> dict[str, str]:
    """``{overlay path in the report: the artifact path holding its bytes}``, for the overlays on disk. The
    report may write one image under two names (a cluster's example is also a worst offender; a class's only
    cluster is its atlas): the run stores the bytes once, under the first name, and the others point there."""
    stored: dict[str, str] = {}
    by_digest: dict[str, str] = {}
    for o in verdict.overlays:
        local = Path(verdict.out_dir) / o["path"]
        if o["path"] in stored or not local.is_file():
            continue
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        stored[o["path"]] = by_digest.setdefault(digest, artifact_path("report", o["path"]))
    return stored


def check_rows(verdict) -> list[dict]:
    """``camgate/checks.json``: every check on every slice it judged, as the verdict holds them."""
    rows = []
    for c in verdict.checks:
        threshold = finite(c.get("min")) if finite(c.get("min")) is not None else finite(c.get("max"))
        rows.append({"check_id": c.get("check_id"), "slice": c.get("slice"), "outcome": c.get("outcome"),
                     "compared": finite(c.get("compared")), "threshold": threshold, "bound": c.get("bound"),
                     "metric": f"{c.get('aggregate')} of {c.get('metric')}", "observed": finite(c.get("observed")),
                     "lo": finite(c.get("lo")), "hi": finite(c.get("hi")), "level": finite(c.get("confidence")),
                     "n": c.get("n"), "severity": c.get("severity"), "message": c.get("message")})
    return rows


def slice_rows(verdict) -> list[dict]:
    """``camgate/slices.json``: per slice (overall, class=..., area=...) and metric, the mean (the rate, with its
    Wilson interval, for a 0/1 metric, whose median and percentiles say nothing) and the spread."""
    rows = []
    for slice_name, per_metric in (verdict.summary or {}).items():
        for metric, per_agg in per_metric.items():
            lead = "rate" if isinstance(per_agg.get("rate"), dict) else "mean"
            stat = per_agg.get(lead)
            if not isinstance(stat, dict) or finite(stat.get("value")) is None:
                continue
            row = {"slice": slice_name, "metric": metric, "aggregate": lead, "value": finite(stat.get("value")),
                   "lo": finite(stat.get("lo")), "hi": finite(stat.get("hi")),
                   "level": finite(stat.get("confidence")) or 0.95, "n": int(stat.get("n") or 0)}
            for aggregate in ("median", "p10", "p90"):
                spread = per_agg.get(aggregate)
                row[aggregate] = finite(spread.get("value")) if lead == "mean" and isinstance(spread, dict) else None
            rows.append(row)
    return rows


def artifact_path(*parts: str) -> str:
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


__all__ = ["ARTIFACT_DIR", "PREVIEW_SIZE", "log_tables", "overlay_artifacts", "check_rows", "slice_rows",
           "artifact_path"]
