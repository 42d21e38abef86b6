"""MLflow model URIs: ``models:/name/3``, ``models:/name@alias``, ``models:/name/latest``, ``models:/<logged model
id>``, ``runs:/<run id>/model`` and artifact URIs, resolved and downloaded to a local MLflow model folder.

A registry alias (or ``latest``) is resolved to one version first and that version is downloaded, so the
version the gate tags (and may promote) is the version it audited even if the alias moves meanwhile: the
resolved version travels with the download (:attr:`FetchedModel.registry_version`, then
``LoadedModel.registry_version``), not in a module-level cache.

Layering: this module imports nothing from ``validator`` except the error types at import time, and the
MLflow plumbing (``resolve_tracking_uri``, ``quiet_mlflow``, ``is_transient``, ``Retrier``) lazily from the leaf
:mod:`validator.mlflow_plumbing`. Loading the downloaded files is :func:`validator.model.load_mlflow_dir`'s job
(this module does not import it), and nothing here imports :mod:`validator.tracking`.

Transient errors (connection refused or reset, timeouts, 429/5xx, a locked SQLite file) while resolving or
downloading are retried with backoff within ``$CAMGATE_MLFLOW_RETRY_SECONDS`` (default 15 s) in total.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from validator.errors import ModelError, ModelUsageError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[\w\-]+))?/?$")
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{8,}$")
_TRACKING_URI: ContextVar[str | None] = ContextVar("camgate_model_tracking_uri", default=None)


class RegistryNotFoundError(ModelError):
    """The registered model, version or alias does not exist (e.g. no ``champion`` yet)."""


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

    def to_dict(self) -> dict:
        return {"name": self.name, "version": str(self.version)}


@dataclass(frozen=True)
class FetchedModel:
    """A downloaded MLflow model folder (valid inside :func:`fetch_model`'s ``with`` only)."""

    uri: str  # as given
    concrete_uri: str  # what was downloaded: models:/name/<version> for a registered model
    tracking_uri: str
    local: Path
    registry_version: dict | None  # {"name", "version"} for a registered model URI, else None


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


def current_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI models resolve against: ``explicit``, else the gate's (:func:`registry_context`),
    else the environment's / MLflow's, else camgate's default."""
    from validator.mlflow_plumbing import resolve_tracking_uri

    return resolve_tracking_uri(explicit or _TRACKING_URI.get())


@contextlib.contextmanager
def fetch_model(uri: str, tracking_uri: str | None = None, retry_seconds: float | None = None
                ) -> Iterator[FetchedModel]:
    """Resolve ``uri`` (an alias or ``latest`` to one version) and download it to a temporary folder that
    lives while inside. MLflow's own retries and INFO noise are off throughout (``quiet_mlflow``); transient
    errors are retried within ``retry_seconds`` (default: ``$CAMGATE_MLFLOW_RETRY_SECONDS``, else 15)."""
    from validator.mlflow_plumbing import Retrier, quiet_mlflow, retry_budget

    tracking = current_tracking_uri(tracking_uri)
    uri = str(uri)
    retry = Retrier(tracking, retry_budget(retry_seconds))
    with quiet_mlflow(), tempfile.TemporaryDirectory(prefix="camgate-model-") as tmp:
        concrete, version, local = _download(uri, tracking, tmp, retry)
        yield FetchedModel(uri, concrete, tracking, local, version.to_dict() if version else None)


def _download(uri: str, tracking: str, tmp: str, retry) -> tuple[str, VersionRef | None, Path]:
    import mlflow
    from mlflow.exceptions import MlflowException

    from validator.errors import TrackingError

    def retried(what: str, fn, *args, **kwargs):
        """``retry`` for transient errors only; any other error comes out as itself, not wrapped."""
        def attempt():
            try:
                return True, fn(*args, **kwargs)
            except Exception as exc:
                if _transient(exc):
                    raise
                return False, exc

        ok, value = retry(what, attempt)
        if not ok:
            raise value
        return value

    try:
        client = mlflow.MlflowClient(tracking_uri=tracking)
        concrete, version = uri, None
        ref = parse_model_uri(uri)
        if ref is not None and ref.registered:
            version = VersionRef(ref.name, retried(f"resolve {uri}", resolve_version, client, ref, uri))
            concrete = f"models:/{version.name}/{version.version}"
        local = retried(f"download {concrete}", mlflow.artifacts.download_artifacts, artifact_uri=concrete,
                        dst_path=tmp, tracking_uri=tracking, registry_uri=client._registry_uri)
    except (ModelError, ModelUsageError):
        raise
    except TrackingError as exc:  # transient errors until the retry budget was spent
        raise _model_error(uri, tracking, exc.__cause__ or exc) from exc
    except MlflowException as exc:
        raise _model_error(uri, tracking, exc) from exc
    except Exception as exc:
        raise ModelError(f"cannot load MLflow model {uri} (tracking URI {tracking}): "
                         f"{type(exc).__name__}: {_short(exc)}") from exc
    local = Path(local)
    if not (local / "MLmodel").is_file():
        raise ModelUsageError(f"{uri} is not an MLflow model (no MLmodel file at {concrete})")
    return concrete, version, local


def _transient(exc) -> bool:
    from validator.mlflow_plumbing import is_transient

    return is_transient(exc)


def _model_error(uri: str, tracking: str, exc) -> ModelError:
    if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST":
        return RegistryNotFoundError(f"MLflow model {uri} not found at {tracking}: {_short(exc)}")
    if _transient(exc):
        return ModelError(f"cannot load MLflow model {uri}: tracking server {tracking} unreachable ({_short(exc)})")
    return ModelError(f"cannot load MLflow model {uri} from {tracking}: {_short(exc)}")


def resolve_version(client, ref: ModelRef, uri: str) -> str:
    """The one version number ``ref`` names now (an alias, ``latest``, a number or a legacy stage)."""
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


def registered_version(uri: str, client, call=None, resolved=None) -> VersionRef | None:
    """The registry version behind ``uri``, or None if ``uri`` is not a registered model URI.

    ``resolved``: the version resolved when the model was loaded (``LoadedModel.registry_version``: a dict
    ``{"name", "version"}`` or a :class:`VersionRef`); pass it so that the version recorded is the one audited
    even if an alias moved since. Without it the URI is resolved again now, through ``call(what, fn, *args)``
    (a retrier) when given.
    """
    ref = parse_model_uri(uri)
    if ref is None or not ref.registered:
        return None
    if isinstance(resolved, VersionRef):
        return resolved
    if isinstance(resolved, dict) and resolved.get("name") and resolved.get("version") is not None:
        return VersionRef(str(resolved["name"]), str(resolved["version"]))
    call = call or (lambda _what, fn, *a, **k: fn(*a, **k))
    return VersionRef(ref.name, call(f"resolve {uri}", resolve_version, client, ref, uri))


def _short(exc, limit: int = 300) -> str:
    from validator.mlflow_plumbing import short_error

    return short_error(exc, limit)


__all__ = ["FetchedModel", "ModelRef", "RegistryNotFoundError", "VersionRef", "fetch_model", "parse_model_uri",
           "registered_version", "registry_context", "resolve_version", "current_tracking_uri"]
