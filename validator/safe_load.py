"""Refuse model files whose loading would run code, before Keras deserialises anything.

A leaf module: it imports nothing from ``validator`` except the error types and the input limits, so every loader (files, folders,
MLflow models) uses the same scan. What is refused unless the caller trusts the file (``--trust-model``,
``trust=True``):

- ``Lambda`` layers (their Python bytecode is stored in the file) and any ``__lambda__`` object;
- legacy (Keras 2) configs whose ``function_type`` / ``output_shape_type`` is ``"lambda"``;
- custom objects Keras cannot resolve to a built-in or to a registered class/function: a ``class_name`` outside
  Keras' own modules with no ``registered_name`` known to ``keras.saving`` (``register_keras_serializable`` or a
  ``custom_object_scope``) in this process. Older Keras releases imported the module a config names.

What is scanned: the ``config.json`` of a ``.keras`` zip, the ``model_config`` attribute of an HDF5 file, and
in a folder (a model folder, an MLflow model directory) every file whose *content* is one of those or a Keras
model JSON, whatever its name.
"""

from __future__ import annotations

import contextlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from validator.errors import ModelError, ModelUsageError
from validator.limits import MAX_CONFIG_BYTES, MAX_ZIP_RATIO, ZIP_RATIO_MIN_BYTES, fmt_bytes

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"
# Serialised values that carry data, not code.
_DATA_MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__",
                 "__typespec__"}
# Keras namespaces whose public names a legacy (module-less) config may refer to.
_KERAS_NAMESPACES = ("layers", "models", "initializers", "regularizers", "constraints", "activations", "losses",
                     "metrics", "optimizers", "dtype_policies", "ops", "random")
_KERAS_MODEL_CLASSES = {"Functional", "Sequential", "Model"}
_KERAS_PACKAGES = {"keras", "keras_hub", "keras_cv", "keras_nlp"}
_JSON_LIMIT = MAX_CONFIG_BYTES  # a Keras model JSON larger than this is not a config file


@dataclass(frozen=True)
class Finding:
    """One object in a model config whose loading would run code that is not already in this process."""

    layer: str  # the enclosing layer's name ("?" when the config has none)
    class_name: str
    reason: str


def refuse_unsafe(path, trust: bool = False, label: str | None = None) -> None:
    """Raise :class:`ModelUsageError` if ``path`` (a model file or a folder) holds anything that runs code on load.

    ``label`` names the source in the message (an MLflow URI for a downloaded folder). With ``trust`` only the
    size bounds of a .keras zip are checked (:func:`_check_entries`: a zip bomb is refused whatever the trust).
    Raises :class:`ModelError` when a model file cannot be read at all.
    """
    path = Path(path)
    shown = label or str(path)
    if trust:  # code may run, but a zip bomb is refused all the same
        for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
            with contextlib.suppress(OSError, zipfile.BadZipFile):  # unreadable: the loader says so
                if _is_zip(file):
                    with zipfile.ZipFile(file) as archive:
                        _check_entries(archive, file)
        return
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            inner = file.relative_to(path).as_posix()
            config = stored_config(file, strict=file.suffix.lower() in MODEL_SUFFIXES)
            if config is not None:
                _raise_for(find_unsafe(config), f"{shown} ({inner})" if label else str(file))
        return
    config = stored_config(path, strict=True)
    if config is not None:
        _raise_for(find_unsafe(config), shown)


def stored_config(path, strict: bool = True) -> dict | None:
    """The architecture JSON stored in a .keras zip, an HDF5 file or a Keras model JSON, read without
    deserialising any layer; None if the file holds no model config (weights only, another kind of file).

    The kind is told by the content, not the name. ``strict``: a file that looks like a model but cannot be
    read raises :class:`ModelError` (else it is skipped: it cannot be loaded either)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head.startswith(_ZIP_MAGIC):
            with zipfile.ZipFile(path) as archive:
                _check_entries(archive, path)
                if "config.json" not in archive.namelist():
                    return None
                with archive.open("config.json") as handle:
                    raw = handle.read(MAX_CONFIG_BYTES + 1)  # the declared size was checked; the read is bounded too
                if len(raw) > MAX_CONFIG_BYTES:
                    raise ModelUsageError(f"model file {path}: its config.json inflates past {fmt_bytes(MAX_CONFIG_BYTES)}, "
                                          "the limit for a model config; refused")
                return _as_config(json.loads(raw))
        if head == _HDF5_MAGIC or _is_hdf5(path):
            import h5py

            with h5py.File(path, "r") as handle:
                if "model_config" not in handle.attrs:
                    raw = None
                else:  # the attribute's stored size, checked before it is read (it is read whole)
                    stored = h5py.h5a.open(handle.id, b"model_config").get_storage_size()
                    if stored > MAX_CONFIG_BYTES:
                        raise ModelUsageError(f"model file {path}: its model_config attribute holds "
                                              f"{fmt_bytes(stored)}, over the {fmt_bytes(MAX_CONFIG_BYTES)} limit "
                                              "for a model config; refused unread")
                    raw = handle.attrs.get("model_config")
            if raw is None:
                return None
            return _as_config(json.loads(raw.decode() if isinstance(raw, bytes) else raw))
        if path.suffix.lower() == ".json" and path.stat().st_size <= _JSON_LIMIT:
            config = json.loads(path.read_text(encoding="utf-8"))
            return config if isinstance(config, dict) and "class_name" in config else None
        if strict and path.suffix.lower() in MODEL_SUFFIXES:
            raise ModelError(f"cannot read model file {path}: neither a .keras zip nor an HDF5 file")
    except ModelError:
        raise
    except (OSError, KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        if strict:
            raise ModelError(f"cannot read model file {path}: {exc}") from exc
    return None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == _ZIP_MAGIC


def _check_entries(archive: zipfile.ZipFile, path) -> None:
    """Refuse a zip by what its directory declares, before any entry is inflated: a ``config.json`` larger than
    ``MAX_CONFIG_BYTES`` uncompressed, or an entry over 1 MiB that inflates more than ``MAX_ZIP_RATIO`` times
    its stored size (Keras stores its entries uncompressed; see validator.limits)."""
    for info in archive.infolist():
        if info.filename == "config.json" and info.file_size > MAX_CONFIG_BYTES:
            raise ModelUsageError(
                f"model file {path}: its config.json declares {fmt_bytes(info.file_size)} uncompressed, over the "
                f"{fmt_bytes(MAX_CONFIG_BYTES)} limit for a model config; refused unread")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > ZIP_RATIO_MIN_BYTES and ratio > MAX_ZIP_RATIO:
            raise ModelUsageError(
                f"model file {path}: its entry {info.filename} declares {fmt_bytes(info.file_size)} from "
                f"{info.compress_size:,} stored bytes, a compression ratio of {ratio:,.0f}, over the limit of "
                f"{MAX_ZIP_RATIO} (a zip bomb?); refused unread")


def _as_config(config) -> dict | None:
    return config if isinstance(config, dict) else None


def _is_hdf5(path: Path) -> bool:
    """HDF5 files may start with a user block (the signature then sits at 512, 1024, ...)."""
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return False
    try:
        import h5py

        return bool(h5py.is_hdf5(path))
    except (ImportError, OSError):
        return False


def find_unsafe(config) -> list[Finding]:
    """Every object in a Keras config whose loading runs code from the file or code Keras cannot resolve."""
    findings: list[Finding] = []
    _walk(config, "?", findings)
    unique: dict[tuple[str, str], Finding] = {}
    for finding in findings:  # a Lambda and its __lambda__ function are one finding
        unique.setdefault((finding.layer, finding.class_name if finding.class_name != "__lambda__" else "Lambda"),
                          finding)
    return list(unique.values())


def _walk(node, layer: str, findings: list[Finding]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, layer, findings)
        return
    if not isinstance(node, dict):
        return
    class_name = node.get("class_name")
    inner = node.get("config")
    if isinstance(class_name, str):
        name = node.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
        if isinstance(name, str) and class_name not in _DATA_MARKERS:
            layer = name
        reason = _unsafe_reason(node, class_name, inner)
        if reason is not None:
            findings.append(Finding(layer, class_name, reason))
    elif node.get("function_type") == "lambda" or node.get("output_shape_type") == "lambda":
        findings.append(Finding(node.get("name") or layer, "Lambda", "a legacy Lambda config with Python bytecode"))
    for value in node.values():
        _walk(value, layer, findings)


def _unsafe_reason(node: dict, class_name: str, inner) -> str | None:
    if class_name == "Lambda":
        return "is a Lambda layer, whose Python code is stored in the file and would run on load"
    if class_name == "__lambda__":
        return "holds a serialised Python lambda (bytecode) that would run on load"
    if isinstance(inner, dict) and ("lambda" in (inner.get("function_type"), inner.get("output_shape_type"))):
        return "holds a legacy lambda function (Python bytecode) that would run on load"
    if class_name in _DATA_MARKERS:
        return None
    module = node.get("module")
    registered = node.get("registered_name")
    if class_name == "function":
        name = inner if isinstance(inner, str) else None
        if _is_keras_module(module) or _registered(registered, name):
            return None
        if module in (None, "builtins") and name is not None and _keras_builtin_function(name):
            return None
        return (f"refers to a custom function '{name}' (module {module}) that is not registered with "
                "keras.saving in this process")
    if _is_keras_module(module):
        return None  # Keras resolves these itself and refuses non-modeling APIs
    if _registered(registered, class_name):
        return None
    if module is None and _keras_builtin_class(class_name):
        return None  # legacy HDF5 configs carry no module
    where = f"module {module}" if module else "no module"
    return (f"is a custom object ({where}, registered name {registered or class_name}) that is not a Keras "
            "built-in and not registered with keras.saving in this process, so its code is not known")


def _is_keras_module(module) -> bool:
    """Keras' own modules and the Keras packages Keras itself imports (keras_hub, keras_cv, keras_nlp)."""
    return isinstance(module, str) and module.split(".", 1)[0] in _KERAS_PACKAGES


def _registered(*names) -> bool:
    try:
        import keras
    except ImportError:
        return False
    for name in names:
        if isinstance(name, str) and name and keras.saving.get_registered_object(name) is not None:
            return True
    return False


def _keras_builtin_class(class_name: str) -> bool:
    if class_name in _KERAS_MODEL_CLASSES:
        return True
    import keras

    return any(isinstance(getattr(getattr(keras, ns, None), class_name, None), type) for ns in _KERAS_NAMESPACES)


def _keras_builtin_function(name: str) -> bool:
    import keras

    return any(callable(getattr(getattr(keras, ns, None), name, None)) for ns in ("activations", "losses",
                                                                                  "metrics", "ops"))


def _raise_for(findings: list[Finding], source: str) -> None:
    if not findings:
        return
    shown = "; ".join(f"layer '{f.layer}' ({f.class_name}) {f.reason}" for f in findings[:3])
    more = f"; and {len(findings) - 3} more" if len(findings) > 3 else ""
    raise ModelUsageError(
        f"model {source} is refused in safe mode: {shown}{more}. "
        "If you trust this file, pass --trust-model (Python: trust=True)."
    )


__all__ = ["Finding", "MODEL_SUFFIXES", "find_unsafe", "refuse_unsafe", "stored_config"]
