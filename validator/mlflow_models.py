"""Keras models from MLflow: ``models:/name/3``, ``models:/name@alias``, ``models:/name/latest``,
``models:/<logged model id>``, ``runs:/<run id>/model`` and artifact URIs, loaded through MLflow's Keras flavour
with Keras' safe mode kept on unless ``trust``.

A registry alias (or ``latest``) is resolved to one version first and that version is loaded, so the version
the gate tags (and may promote) is the version it audited even if the alias moves meanwhile.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from validator.errors import ModelError, ModelUsageError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[\w\-]+))?/?$")
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{8,}$")
_TRACKING_URI: ContextVar[str | None] = ContextVar("camgate_model_tracking_uri", default=None)
# (tracking uri, model uri) -> (name, version) resolved at load time
_RESOLVED: dict[tuple[str, str], tuple[str, str]] = {}


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``models:/`` URI. ``version`` is a number, ``latest`` or a (legacy) stage name."""

    name: str | None = None
    version: str | None = None
    alias: str | None = None
    model_id: str | None = None  # MLflow 3 logged model (models:/m-...)

    @property
    def registered(self) -> bool:
        return self.name is not None


@dataclass(frozen=True)
class VersionRef:
    name: str
    version: str


def parse_model_uri(uri: str) -> ModelRef | None:
    """``models:/name/3`` -> ModelRef(name, version='3'); ``models:/name@champion`` -> alias; else None."""
    match = _MODELS_URI.match(str(uri))
    if match is None:
        return None
    name, version, alias = match.group("name"), match.group("version"), match.group("alias")
    if version is None and alias is None and _LOGGED_MODEL_ID.match(name):
        return ModelRef(model_id=name)
    return ModelRef(name=name, version=version, alias=alias)


@contextlib.contextmanager
def registry_context(tracking_options):
    """While auditing, MLflow model URIs resolve against the gate's tracking URI (``--tracking-uri``)."""
    token = _TRACKING_URI.set(getattr(tracking_options, "uri", None) or None)
    try:
        yield
    finally:
        _TRACKING_URI.reset(token)


def _tracking_uri(explicit: str | None = None) -> str:
    from validator.tracking import resolve_tracking_uri

    return resolve_tracking_uri(explicit or _TRACKING_URI.get())


def load_mlflow_model(uri: str, trust: bool = False, tracking_uri: str | None = None):
    """Download an MLflow model and load it with ``mlflow.keras`` (safe mode unless ``trust``)."""
    from validator.tracking import quiet_mlflow

    tracking = _tracking_uri(tracking_uri)
    with quiet_mlflow():
        return _load(str(uri), trust, tracking)


def _load(uri: str, trust: bool, tracking: str):
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    from validator.model import _refuse_unsafe

    client = mlflow.MlflowClient(tracking_uri=tracking)
    concrete = uri
    ref = parse_model_uri(uri)
    try:
        if ref is not None and ref.registered:
            version = _resolve_version(client, ref, uri)
            _RESOLVED[(tracking, uri)] = (ref.name, version)
            concrete = f"models:/{ref.name}/{version}"
        with tempfile.TemporaryDirectory(prefix="camgate-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=concrete, dst_path=tmp, tracking_uri=tracking, registry_uri=client._registry_uri
            )
            mlmodel = Path(local) / "MLmodel"
            if not mlmodel.is_file():
                raise ModelUsageError(f"{uri} is not an MLflow model (no MLmodel file at {concrete})")
            conf = Model.load(str(mlmodel))
            keras_conf = conf.flavors.get("keras")
            if keras_conf is None:
                raise ModelUsageError(
                    f"{uri} has no Keras flavour (flavours: {', '.join(sorted(conf.flavors))}); camgate needs "
                    "a model logged with mlflow.keras.log_model"
                )
            if keras_conf.get("save_exported_model"):
                raise ModelUsageError(
                    f"{uri} was logged with save_exported_model=True: an exported serving function has no "
                    "layer graph for CAM/Grad-CAM. Log the model with mlflow.keras.log_model(model) instead."
                )
            data = Path(local) / keras_conf.get("data", "data")
            keras_file = data / "model.keras" if data.is_dir() else data.with_suffix(".keras")
            if keras_file.is_file():
                _refuse_unsafe(keras_file, trust)
            import mlflow.keras

            try:
                return mlflow.keras.load_model(local, load_model_kwargs={"safe_mode": not trust, "compile": False})
            except ValueError as exc:
                if "safe_mode" in str(exc) or "Lambda" in str(exc):
                    raise ModelUsageError(
                        f"model {uri} needs unsafe deserialisation ({exc}). If you trust it, pass --trust-model."
                    ) from exc
                raise
    except (ModelError, ModelUsageError):
        raise
    except MlflowException as exc:
        raise _model_error(uri, tracking, exc) from exc
    except Exception as exc:
        raise ModelError(f"cannot load MLflow model {uri} (tracking URI {tracking}): "
                         f"{type(exc).__name__}: {_short(exc)}") from exc


class RegistryNotFoundError(ModelError):
    """The registered model, version or alias does not exist (e.g. no ``champion`` yet)."""


def _model_error(uri: str, tracking: str, exc) -> ModelError:
    from validator.tracking import is_transient

    if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
        return RegistryNotFoundError(f"MLflow model {uri} not found at {tracking}: {_short(exc)}")
    if is_transient(exc):
        return ModelError(f"cannot load MLflow model {uri}: tracking server {tracking} unreachable ({_short(exc)})")
    return ModelError(f"cannot load MLflow model {uri} from {tracking}: {_short(exc)}")


def _resolve_version(client, ref: ModelRef, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias is not None:
            return str(client.get_model_version_by_alias(ref.name, ref.alias).version)
        if ref.version is None or ref.version.lower() == "latest":
            versions = client.search_model_versions(f"name = '{ref.name}'")
            if not versions:
                raise RegistryNotFoundError(f"registered model {ref.name} has no versions ({uri})")
            return str(max(int(v.version) for v in versions))
        if ref.version.isdigit():
            return str(client.get_model_version(ref.name, ref.version).version)
        latest = client.get_latest_versions(ref.name, stages=[ref.version])  # legacy stage URI
        if not latest:
            raise RegistryNotFoundError(f"no version of {ref.name} in stage {ref.version} ({uri})")
        return str(latest[0].version)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            what = f"alias @{ref.alias}" if ref.alias else f"version {ref.version}"
            raise RegistryNotFoundError(
                f"{uri}: registered model {ref.name} has no {what} ({_short(exc)})"
            ) from exc
        raise


def registered_version(uri: str, client, call=None) -> VersionRef | None:
    """The registry version behind ``uri`` (as resolved when it was loaded), or None if not registered."""
    ref = parse_model_uri(uri)
    if ref is None or not ref.registered:
        return None
    tracking = getattr(client, "_tracking_client", None)
    tracking_uri = getattr(tracking, "tracking_uri", None)
    for (t_uri, m_uri), (name, version) in _RESOLVED.items():
        if m_uri == uri and (tracking_uri is None or t_uri == tracking_uri):
            return VersionRef(name, version)
    call = call or (lambda _what, fn, *a, **k: fn(*a, **k))
    return VersionRef(ref.name, call(f"resolve {uri}", _resolve_version, client, ref, uri))


def _short(exc, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["load_mlflow_model", "parse_model_uri", "registered_version", "registry_context", "ModelRef",
           "RegistryNotFoundError"]
