"""Keyed images and tables in MLflow's own formats, written so that a retried upload cannot duplicate them.

``MlflowClient.log_image(key=...)`` names each file with a fresh ``uuid4`` and ``log_table`` appends to a table
that already exists: retried after a lost response, either duplicates (a second image at the same step, every
row twice). Here every file gets a name derived from the record's attempt id, so a retry re-uploads the same
path (``log_artifact`` overwrites) and a table is written whole, never appended. The layout is MLflow's, so the
UI and ``mlflow.load_table`` read them as usual:

- keyed image: ``images/<key with / as ~>+step+<step>+timestamp+<ms>+<id>.png`` and ``...+compressed.webp``,
  and the run tag ``mlflow.loggedImages``;
- table: the DataFrame as ``to_json(orient="split")`` at its artifact path, image cells replaced by
  ``{"type": "image", "filepath": ..., "compressed_filepath": ...}`` under ``table_images/<table>/``, and the
  table listed in the run tag ``mlflow.loggedArtifacts``.

``retry`` is a :class:`validator.mlflow_plumbing.Retrier`; only idempotent calls go through it.
"""

from __future__ import annotations

import json
import posixpath
import tempfile
import uuid
from pathlib import Path

LOGGED_IMAGES_TAG = "mlflow.loggedImages"
LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
_COMPRESSED_SIZE = 256


def stable_id(*parts) -> str:
    """The same id for the same parts: a retried upload lands on the same path."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "camgate:" + "/".join(str(p) for p in parts)))


def log_keyed_image(client, retry, run_id: str, image, key: str, step: int, timestamp: int, token: str) -> None:
    """One point of the image chart ``key`` at ``step`` (call :func:`mark_images_logged` once afterwards)."""
    sanitized = key.replace("/", "~")
    base = f"{sanitized}+step+{step}+timestamp+{timestamp}+{stable_id(token, key, step)}"
    _upload_image(client, retry, run_id, image, "images", base, f"image {key}")


def mark_images_logged(client, retry, run_id: str) -> None:
    retry("tag the run's images", client.set_tag, run_id, LOGGED_IMAGES_TAG, "True")


def log_table(client, retry, run_id: str, frame, artifact_file: str, token: str) -> None:
    """``frame`` as the table ``artifact_file`` (``.json``), replacing any earlier one at that path."""
    frame = frame.copy()
    table_name = posixpath.splitext(artifact_file)[0]
    for column in frame.columns:
        values = list(frame[column])
        if values and all(_is_image(v) for v in values):
            cells = []
            for row, image in enumerate(values):
                base = stable_id(token, artifact_file, column, row)
                folder = posixpath.join("table_images", table_name)
                _upload_image(client, retry, run_id, image, folder, base, f"an image of {artifact_file}")
                cells.append({"type": "image", "filepath": f"{folder}/{base}.png",
                              "compressed_filepath": f"{folder}/{base}.webp"})
            frame[column] = cells
    with tempfile.TemporaryDirectory(prefix="camgate-table-") as tmp:
        local = Path(tmp) / posixpath.basename(artifact_file)
        frame.to_json(local, orient="split", index=False, date_format="iso")
        retry(f"upload {artifact_file}", client.log_artifact, run_id, str(local),
              posixpath.dirname(artifact_file) or None)
    run = retry("read the run's tags", client.get_run, run_id)
    listed = json.loads(run.data.tags.get(LOGGED_ARTIFACTS_TAG, "[]") or "[]")
    entry = {"path": artifact_file, "type": "table"}
    if entry not in listed:
        retry("list the table on the run", client.set_tag, run_id, LOGGED_ARTIFACTS_TAG,
              json.dumps([*listed, entry]))


def _upload_image(client, retry, run_id: str, image, folder: str, base: str, what: str) -> None:
    with tempfile.TemporaryDirectory(prefix="camgate-image-") as tmp:
        full, small = Path(tmp) / f"{base}.png", Path(tmp) / f"{base}+compressed.webp"
        if folder.startswith("table_images"):
            small = Path(tmp) / f"{base}.webp"  # MLflow's table layout: <id>.png and <id>.webp
        image.save(full)
        _compressed(image).save(small)
        for path in (full, small):
            retry(f"upload {what}", client.log_artifact, run_id, str(path), folder)


def _compressed(image):
    width, height = image.size
    scale = _COMPRESSED_SIZE / max(width, height, 1)
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))))


def _is_image(value) -> bool:
    return all(callable(getattr(value, name, None)) for name in ("save", "resize")) and hasattr(value, "size")


__all__ = ["log_keyed_image", "mark_images_logged", "log_table", "stable_id"]
