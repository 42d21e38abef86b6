"""The gate's mark on the model registry: tag the audited model version, and move an alias only on PASS.

Every call here is idempotent (setting a version tag or an alias to the same value twice changes nothing),
so each goes through the record's :class:`~validator.mlflow_plumbing.Retrier` as is.
"""

from __future__ import annotations

import time

from validator.report.escape import mlflow_value


def tag_model_version(client, retry, version, verdict, run_id: str, extra: dict | None = None) -> None:
    """``camgate.run_id``, ``camgate.policy_hash``, ``camgate.policy``, ``camgate.checked_at``, any ``extra``
    tags, then ``camgate.status`` last: a reader (or a webhook on ``model_version_tag.set``) that sees the
    status finds every other tag of the same verdict already there."""
    policy = verdict.policy or {}
    tags = {
        "camgate.run_id": run_id,
        "camgate.policy_hash": policy.get("hash") or "",
        "camgate.policy": f"{policy.get('name')} v{policy.get('version')}" if policy else "",
        "camgate.checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
        "camgate.status": verdict.status,
    }
    for key, value in tags.items():
        if value:
            retry(f"tag model version {version.name}/{version.version}", client.set_model_version_tag,
                  version.name, str(version.version), key, mlflow_value(value))


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


__all__ = ["tag_model_version", "plan_promotion", "alias_version", "promote"]
