"""The `camgate serve` config file: which registered models are gated, on what, under which policy.

Read like a policy (:mod:`validator.policy.source`): safe YAML, bounded, every key's line remembered, so an
error names the file, line and key (exit 2)::

    tracking_uri: http://127.0.0.1:5000     # default: $MLFLOW_TRACKING_URI
    secret_env: CAMGATE_WEBHOOK_SECRET      # the variable holding the webhook secret (never the secret itself)
    state: camgate-serve.db                 # the durable queue (SQLite); paths are relative to this file
    reports: camgate-serve-reports          # one report folder per audited version
    models:
      shapes:                               # a registered model name
        data: heldout/annotations.json      # its held-out set (COCO .json, VOC folder or CSV)
        policy: policies/default.yaml       # default: the shipped default policy
        baseline: champion                  # compare with models:/shapes@champion (when it is set)
        promote: champion                   # the alias set on PASS only
        options: {max_samples: 200, seed: 0}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from validator.errors import ConfigError, UsageError
from validator.policy.fields import Fields
from validator.policy.source import Source, read_policy_file

EVENTS = ("model_version.created",)  # the event that queues an audit; every other event is answered and ignored
TOP_KEYS = ("tracking_uri", "secret_env", "state", "reports", "experiment", "concurrency", "max_body_bytes",
            "timestamp_tolerance_s", "max_attempts", "retry_seconds", "audit_timeout_s", "shutdown_grace_s",
            "models")
MODEL_KEYS = ("data", "policy", "baseline", "promote", "options")
# audit options a model may set (validator.gate.AuditOptions), with their types
OPTION_TYPES = {"images": str, "classes": str, "format": str, "method": str, "layer": str, "preprocess": str,
                "max_samples": int, "seed": int, "batch_size": int, "fail_on": str, "trust_model": bool,
                "exif_orientation": str, "backend": str, "workers": int, "ray_address": str}


@dataclass
class WatchedModel:
    name: str
    data: str
    policy: str | None = None
    baseline: str | None = None  # an alias of the same registered model
    promote: str | None = None
    options: dict = field(default_factory=dict)


@dataclass
class ServeConfig:
    path: str
    models: dict[str, WatchedModel]
    secret_env: str
    tracking_uri: str | None = None
    state: str = "camgate-serve.db"
    reports: str = "camgate-serve-reports"
    experiment: str = "camgate"
    concurrency: int = 1
    max_body_bytes: int = 1 << 20
    timestamp_tolerance_s: float = 300.0
    max_attempts: int = 3
    retry_seconds: float = 60.0
    audit_timeout_s: float = 3600.0
    shutdown_grace_s: float = 60.0

    def secret(self) -> str:
        """The webhook secret from ``$secret_env``; a usage error if it is unset or empty."""
        value = os.environ.get(self.secret_env, "")
        if not value:
            raise UsageError(f"config {self.path}: secret_env: ${self.secret_env} is not set (it holds the "
                             "webhook secret given to MlflowClient().create_webhook(secret=...))")
        return value

    def resolved_tracking_uri(self) -> str:
        from validator.mlflow_plumbing import resolve_tracking_uri

        return resolve_tracking_uri(self.tracking_uri)


def load_config(path: str | Path) -> ServeConfig:
    """Parse and check ``path``; raise :class:`ConfigError` naming file, line and key."""
    raw, source = read_policy_file(path, kind="config", error_type=ConfigError)
    top = Fields(raw, "", source, TOP_KEYS, "the config")
    base = Path(path).resolve().parent
    secret_env = top.string("secret_env")
    if not secret_env.replace("_", "").isalnum():
        raise top.error("secret_env", f"{secret_env!r} is not an environment variable name: give the variable's "
                        "name, never the secret itself")
    config = ServeConfig(
        path=str(path), models={}, secret_env=secret_env,
        tracking_uri=top.string("tracking_uri", None),
        state=str(base / top.string("state", "camgate-serve.db")),
        reports=str(base / top.string("reports", "camgate-serve-reports")),
        experiment=top.string("experiment", "camgate"),
        concurrency=top.integer("concurrency", 1, lo=1),
        max_body_bytes=top.integer("max_body_bytes", 1 << 20, lo=1024),
        timestamp_tolerance_s=top.number("timestamp_tolerance_s", 300.0, lo=1, hi=86400),
        max_attempts=top.integer("max_attempts", 3, lo=1),
        retry_seconds=top.number("retry_seconds", 60.0, lo=0, hi=86400),
        audit_timeout_s=top.number("audit_timeout_s", 3600.0, lo=1, hi=7 * 86400),
        shutdown_grace_s=top.number("shutdown_grace_s", 60.0, lo=0, hi=3600),
    )
    models = top.raw_value("models")
    if not isinstance(models, dict) or not models:
        raise top.error("models", "must map at least one registered model name to its data and policy")
    for name in models:
        config.models[str(name)] = _model(str(name), models[name], f"models.{name}", source, base)
    return config


def _model(name: str, raw: object, path: str, source: Source, base: Path) -> WatchedModel:
    from validator.policy import load_policy
    from validator.tracking.options import TrackingOptions

    fields = Fields(raw, path, source, MODEL_KEYS, f"model {name!r}")
    data = str(base / fields.string("data"))
    if not Path(data).exists():
        raise fields.error("data", f"{data} does not exist")
    policy = fields.string("policy", None)
    if policy is not None:
        policy = str(base / policy)
        try:
            load_policy(policy)  # its own errors name its file and line
        except UsageError as exc:
            raise fields.error("policy", str(exc)) from None
    aliases = {}
    for key in ("baseline", "promote"):
        alias = fields.string(key, None)
        if alias is not None:
            try:
                TrackingOptions(promote=alias).check()
            except UsageError:
                raise fields.error(key, f"{alias!r} is not a registry alias (letters, digits, '_' or '-', not "
                                   "'latest' nor v<number>)") from None
        aliases[key] = alias
    options = fields.raw_value("options", {})
    opts = Fields(options, f"{path}.options", source, OPTION_TYPES, "options")
    checked = {}
    for key, kind in OPTION_TYPES.items():
        if key not in opts.raw:
            continue
        value = opts.raw[key]
        if kind is int:
            value = opts.integer(key, lo=1 if key != "seed" else 0)
        elif kind is bool:
            if not isinstance(value, bool):
                raise opts.error(key, f"must be true or false, got {value!r}")
        else:
            value = opts.string(key)
            if key in ("images", "classes"):
                value = str(base / value)
        checked[key] = value
    if checked.get("backend", "local") not in ("local", "ray"):
        raise opts.error("backend", f"unknown value {checked['backend']!r} (valid: local, ray)")
    return WatchedModel(name=name, data=data, policy=policy, options=checked, **aliases)


__all__ = ["ServeConfig", "WatchedModel", "load_config", "EVENTS"]
