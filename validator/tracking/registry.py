"""The gate's mark on the model registry: link the audited model to the run, tag it and its registry version,
and move an alias only on PASS.

The audited model as an MLflow 3 logged model (:func:`audited_model_id`): a registered version's own logged
model, a ``models:/m-...`` URI's, or for a local model file an *external* logged model (no artifacts: camgate
never copies the model; tags ``camgate.model_path`` and ``camgate.model_sha256``) created by the gate run, one
per run: the MLflow 3.17 runs table's "Models" column lists the logged models a run is the source of, so the
audited file shows there. Every one of them is logged as a model input of the run (the run page lists it)
and carries the gate's tags; a registered version also gets them (its page shows them).

Every call here is idempotent (setting a tag or an alias to the same value twice changes nothing; an input or
a logged model is looked up before it is created), so each goes through the record's
:class:`~validator.mlflow_plumbing.Retrier`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from validator.report.escape import mlflow_value

MODEL_DIGEST_TAG = "camgate.model_sha256"


def gate_tags(verdict, run_id: str, extra: dict | None = None) -> dict[str, str]:
    """``camgate.run_id``, ``camgate.policy_hash``, ``camgate.policy``, ``camgate.checked_at`` (and
    ``camgate.failed_checks`` when any failed), any ``extra`` tags, then ``camgate.status`` last: what a model
    version or logged model says of its gate. Written in this order, a reader (or a webhook on
    ``model_version_tag.set``) that sees the status finds every other tag of the same verdict already there."""
    policy = verdict.policy or {}
    tags = {
        "camgate.run_id": run_id,
        "camgate.policy_hash": policy.get("hash") or "",
        "camgate.policy": f"{policy.get('name')} v{policy.get('version')}" if policy else "",
        "camgate.checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "camgate.failed_checks": ", ".join(sorted({c["check_id"] for c in verdict.failed_checks})),
        **(extra or {}),
        "camgate.status": verdict.status,
    }
    return {k: v[:5000] for k, v in tags.items() if v}


def tag_model_version(client, retry, version, verdict, run_id: str, extra: dict | None = None) -> None:
    """The gate's tags (:func:`gate_tags`, ``camgate.status`` last) on the audited registry version: its page
    shows them."""
    for key, value in gate_tags(verdict, run_id, extra).items():
        if value:
            retry(f"tag model version {version.name}/{version.version}", client.set_model_version_tag,
                  version.name, str(version.version), key, mlflow_value(value))


def audited_model_id(client, retry, verdict, version, experiment_id: str, run_id: str) -> str | None:
    """The MLflow 3 logged model of the audited model, or None (an in-memory model, a ``runs:/`` URI, a
    registry version created without one)."""
    from validator.mlflow_models import parse_model_uri

    if version is not None:
        found = retry(f"read model version {version.name}/{version.version}", client.get_model_version,
                      version.name, str(version.version))
        source = parse_model_uri(str(found.source or ""))  # MLflow 3.17 leaves model_id empty: models:/m-...
        return getattr(found, "model_id", None) or (source.model_id if source is not None else None)
    ref = parse_model_uri(str(verdict.model))
    if ref is not None:
        return ref.model_id
    path = Path(str(verdict.model))
    if str(verdict.model).startswith("<") or not path.exists():
        return None
    return _external_model(client, retry, verdict, path, experiment_id, run_id)


def _external_model(client, retry, verdict, path: Path, experiment_id: str, run_id: str) -> str:
    """The gate run's external logged model of the file: found by its run tag (a later record into the run),
    else created (READY, no artifacts, ``source_run_id`` the gate run)."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_IS_EXTERNAL

    def find():
        found = client.search_logged_models([experiment_id], filter_string=f"tags.`camgate.run_id` = '{run_id}'",
                                            max_results=1)
        return found[0].model_id if found else None

    model_id = retry("look up the audited model", find)
    if model_id:
        return model_id
    name = (verdict.model_name or path.stem or "model")[:200]
    tags = {MODEL_DIGEST_TAG: file_digest(path), "camgate.model_path": str(path.resolve())[:5000],
            "camgate.run_id": run_id, MLFLOW_MODEL_IS_EXTERNAL: "true"}
    created = retry.once("create a logged model for the audited file", client.create_logged_model, experiment_id,
                         name=name, source_run_id=run_id, model_type="keras-classifier", tags=tags, landed=find)
    model_id = created if isinstance(created, str) else created.model_id
    retry("finalize the logged model", client.finalize_logged_model, model_id, "READY")
    return model_id


def file_digest(path: Path) -> str:
    """sha256 of a model file, or of a model folder's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file is not path:
            digest.update(f"\0{file.relative_to(path).as_posix()}\0".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def link_model(client, retry, run_id: str, model_id: str, verdict) -> None:
    """The audited logged model as a model input of the run (listed once), and the gate's tags on it."""
    from mlflow.entities import LoggedModelInput

    def linked():
        run = client.get_run(run_id)
        return any(m.model_id == model_id for m in (run.inputs.model_inputs or []))

    if not retry("read the run's inputs", linked):
        retry.once("link the audited model to the run", client.log_inputs, run_id,
                   models=[LoggedModelInput(model_id)], landed=linked)
    retry("tag the audited logged model", client.set_logged_model_tags, model_id, gate_tags(verdict, run_id))


def plan_promotion(client, retry, verdict, version, alias: str | None) -> dict | None:
    """What ``--promote alias`` will do, in ``verdict.tracking["promotion"]``; nothing moves yet."""
    if not alias:
        return None
    plan = {"alias": alias, "moved": False}
    if version is None:
        plan["result"] = "not promoted: the audited model is not a registered model version"
    else:
        previous = alias_version(client, retry, version.name, alias)
        plan.update({"model": version.name, "version": str(version.version), "previous_version": previous})
        if verdict.status != "PASS":
            plan["result"] = f"not promoted: gate {verdict.status}; {alias} stays at " + (
                f"version {previous}" if previous else "no version")
        elif previous == str(version.version):
            plan["result"] = f"{alias} already at version {previous}"
        else:
            plan["moved"] = True
            plan["result"] = f"{alias} moved to version {version.version}" + (
                f" (was {previous})" if previous else "")
    verdict.tracking["promotion"] = plan
    return plan


def alias_version(client, retry, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at, or None if the alias is not set yet."""
    from mlflow.exceptions import MlflowException

    def lookup():
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    return retry(f"read alias {alias} of {name}", lookup)


def promote(client, retry, plan: dict | None) -> None:
    """Move the alias as planned: the record's very last write, after everything else was recorded."""
    if not plan or not plan.get("moved"):
        return
    retry(f"move alias {plan['alias']}", client.set_registered_model_alias, plan["model"], plan["alias"],
          plan["version"])


__all__ = ["gate_tags", "tag_model_version", "audited_model_id", "file_digest", "link_model", "plan_promotion",
           "alias_version", "promote", "MODEL_DIGEST_TAG"]
