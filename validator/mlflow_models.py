"""Keras models from MLflow (compatibility module).

URI parsing, alias resolution and download live in :mod:`validator.model_uri` (a leaf below
:mod:`validator.model`); loading the downloaded folder, with the safe-mode scan of every file in it, is
:func:`validator.model.load_mlflow_dir`. This module keeps the names other code imports from here.
The version a registry URI resolved to is carried on ``LoadedModel.registry_version`` (no module cache).
"""

from __future__ import annotations

from validator.model_uri import (
    ModelRef,
    RegistryNotFoundError,
    VersionRef,
    parse_model_uri,
    registered_version,
    registry_context,
    resolve_version,
)


def load_mlflow_model(uri: str, trust: bool = False, tracking_uri: str | None = None):
    """Download an MLflow model and load it (keras.Model), safe mode unless ``trust``.

    Use :func:`validator.model.load_model` for the :class:`~validator.model.LoadedModel` with the
    resolved ``registry_version``."""
    from validator.model import _load_uri

    model, _version = _load_uri(str(uri), trust, tracking_uri=tracking_uri)
    return model


__all__ = ["load_mlflow_model", "parse_model_uri", "registered_version", "registry_context", "resolve_version",
           "ModelRef", "RegistryNotFoundError", "VersionRef"]
