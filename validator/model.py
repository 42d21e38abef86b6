"""Load a Keras classifier safely and describe what the explainers need: input size, classes, target layer, head.

Nothing here rebuilds the model as a new Functional graph (the "Graph disconnected" failure of tools that do
so on nested transfer-learning models): the explainers hook the target layer while the original model runs.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from validator.errors import ModelError, ModelUsageError

SOFT_ACTIVATIONS = ("softmax", "sigmoid")
INPUT_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA: what validator.data.read_image decodes to


@dataclass
class LoadedModel:
    """A classifier plus the facts the gate needs about it."""

    model: object  # keras.Model
    source: str
    name: str
    input_size: tuple[int, int]  # (height, width)
    channels: int  # input channels: 1 (grayscale), 3 (RGB) or 4 (RGBA); also as ``input_channels``
    num_outputs: int  # units of the last layer
    head_activation: str | None  # "softmax" | "sigmoid" | None (already logits)
    extra: dict = field(default_factory=dict)

    @property
    def input_channels(self) -> int:
        """Channels of the model's input, read off its input shape: 1 (grayscale), 3 (RGB) or 4 (RGBA).
        Images are decoded to this count (``read_image(path, channels)``, ``iter_batches(channels=...)``)."""
        return self.channels

    @property
    def binary_sigmoid(self) -> bool:
        """A one-unit sigmoid head: class 1 is +logit, class 0 is -logit."""
        return self.num_outputs == 1

    @property
    def num_classes(self) -> int:
        return 2 if self.binary_sigmoid else self.num_outputs


def _keras():
    from validator._tf import keras

    return keras


def _config_has_lambda(config) -> bool:
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            return True
        return any(_config_has_lambda(v) for v in config.values())
    if isinstance(config, list):
        return any(_config_has_lambda(v) for v in config)
    return False


def _stored_config(path: Path) -> dict | None:
    """The architecture JSON stored in a .keras zip or an .h5 file, without deserialising any layer."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
                if raw is None:
                    return None
                return json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"cannot read model file {path}: {exc}") from exc
    return None


def _refuse_unsafe(path: Path, trust: bool) -> None:
    if trust:
        return
    config = _stored_config(path)
    if config is not None and _config_has_lambda(config):
        raise ModelUsageError(
            f"model {path} contains a Lambda layer, whose Python code would run on load; "
            "refusing it in safe mode. If you trust this file, pass --trust-model (Python: trust=True)."
        )


def _load_keras_object(source: str, trust: bool):
    keras = _keras()
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model not found: {source}")
    if path.is_dir():
        return _load_saved_model_dir(path, trust)
    if path.suffix not in (".keras", ".h5", ".hdf5"):
        raise ModelUsageError(
            f"unsupported model file {source}: expected a .keras file, a legacy .h5 file, "
            "a SavedModel directory or an MLflow URI (models:/..., runs:/...)"
        )
    _refuse_unsafe(path, trust)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelUsageError(
                f"model {source} needs unsafe deserialisation ({exc}). "
                "If you trust this file, pass --trust-model."
            ) from exc
        raise ModelError(f"cannot load model {source}: {exc}") from exc
    except Exception as exc:  # keras raises many types for corrupt files
        raise ModelError(f"cannot load model {source}: {type(exc).__name__}: {exc}") from exc


def _load_saved_model_dir(path: Path, trust: bool):
    keras = _keras()
    for candidate in sorted(path.glob("*.keras")) + sorted(path.glob("data/*.keras")):
        return _load_keras_object(str(candidate), trust)
    if not (path / "saved_model.pb").exists():
        raise ModelError(f"{path} is a directory without saved_model.pb or a .keras file")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:
        raise ModelUsageError(
            f"{path} is a TensorFlow SavedModel export, which keeps only the serving function and not the "
            "layer graph that CAM/Grad-CAM must reach into. Save the model with model.save('model.keras') "
            f"and audit that file. (Keras said: {type(exc).__name__})"
        ) from exc


def load_model(path_or_uri, trust: bool = False) -> LoadedModel:
    """Load a classifier from a .keras file, a legacy .h5 file, a directory holding one, or an MLflow URI.

    ``trust=False`` keeps Keras' safe mode on: a model with a Lambda layer is refused with a message that
    names the opt-in flag. A ``keras.Model`` instance is accepted as is.
    """
    keras = _keras()
    if isinstance(path_or_uri, LoadedModel):
        return path_or_uri
    if isinstance(path_or_uri, keras.Model):
        model, source = path_or_uri, f"<in-memory {path_or_uri.name}>"
    else:
        source = str(path_or_uri)
        if "://" in source or source.startswith(("models:/", "runs:/")):
            from validator.mlflow_models import load_mlflow_model

            model = load_mlflow_model(source, trust=trust)
        else:
            model = _load_keras_object(source, trust)
    return describe(model, source)


def describe(model, source: str) -> LoadedModel:
    """Read input size, output units and head activation off a built model."""
    input_shape = _single_shape(model.input_shape, "input", source)
    if len(input_shape) != 4:
        raise ModelUsageError(
            f"model {source} takes inputs of shape {input_shape}; expected images [N,H,W,C]"
        )
    _, height, width, channels = input_shape
    if height is None or width is None:
        raise ModelUsageError(
            f"model {source} accepts any image size; camgate needs a fixed input size "
            "(rebuild the model with keras.Input(shape=(H, W, C)))"
        )
    if channels not in INPUT_CHANNELS:
        raise ModelUsageError(
            f"model {source} takes inputs of shape {input_shape} with {channels} channels; camgate reads "
            "images as 1 (grayscale), 3 (RGB) or 4 (RGBA) channels"
        )
    output_shape = _single_shape(model.output_shape, "output", source)
    if len(output_shape) != 2:
        raise ModelUsageError(
            f"model {source} outputs shape {output_shape}; expected class scores [N, classes]"
        )
    head_layer, activation = find_head(model)
    return LoadedModel(
        model=model,
        source=source,
        name=_model_name(model, source),
        input_size=(int(height), int(width)),
        channels=int(channels),
        num_outputs=int(output_shape[-1]),
        head_activation=activation,
        extra={"head_layer": head_layer.name if head_layer is not None else None},
    )


def _model_name(model, source: str) -> str:
    if source.startswith("<in-memory"):
        return model.name
    if source.startswith("models:/"):  # models:/shapes/3 -> shapes-v3, models:/shapes@champion -> shapes-champion
        name, _, version = source[len("models:/"):].replace("@", "/").partition("/")
        return f"{name}-v{version}" if version.isdigit() else "-".join(p for p in (name, version) if p)
    if source.startswith("runs:/"):
        run_id, _, path = source[len("runs:/"):].partition("/")
        return f"run-{run_id[:8]}-{Path(path).name or 'model'}"
    stem = Path(source.rstrip("/")).stem
    return stem or model.name


def _single_shape(shape, what: str, source: str) -> tuple:
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelUsageError(
                f"model {source} has {len(shape)} {what}s; camgate explains single-{what} classifiers"
            )
        shape = shape[0]
    return tuple(shape)


def _activation_name(fn) -> str | None:
    name = getattr(fn, "__name__", None) or type(fn).__name__
    return name if name in SOFT_ACTIVATIONS else None


def iter_layers(model):
    """Every layer in call order, descending into nested models (their own layers, in order)."""
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from iter_layers(layer)
        else:
            yield layer


def find_head(model):
    """The last leaf layer and the soft activation it applies, if any (softmax/sigmoid)."""
    layers = list(iter_layers(model))
    if not layers:
        return None, None
    last = layers[-1]
    keras = _keras()
    if isinstance(last, keras.layers.Softmax):
        return last, "softmax"
    if isinstance(last, keras.layers.Activation):
        return last, _activation_name(last.activation)
    activation = getattr(last, "activation", None)
    if activation is not None:
        return last, _activation_name(activation)
    return last, None


def _is_preprocessing(layer) -> bool:
    """Input and preprocessing layers (Rescaling, Resizing, ...) show pixels, not learned features."""
    keras = _keras()
    return isinstance(layer, keras.layers.InputLayer) or ".preprocessing." in type(layer).__module__


def _spatial_output(layer) -> tuple | None:
    if _is_preprocessing(layer):
        return None
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return None
    if len(shape) == 4 and shape[1] is not None and shape[2] is not None and shape[1] > 1 and shape[2] > 1:
        return tuple(shape)
    return None


def candidate_layers(model) -> list:
    """Layers whose output is a 4-D feature map with spatial size > 1 (1x1 'logit convs' excluded)."""
    return [layer for layer in iter_layers(model) if _spatial_output(layer) is not None]


def find_target_layer(model, name: str | None = None):
    """The named layer, or the last layer with a 4-D spatial output, searching nested models."""
    candidates = candidate_layers(model)
    if name is not None:
        for layer in iter_layers(model):
            if layer.name == name:
                if _spatial_output(layer) is None:
                    raise ModelUsageError(
                        f"layer '{name}' has output shape {getattr(layer.output, 'shape', '?')}, not a spatial "
                        f"feature map [N,H,W,C] with H,W > 1; candidates: {_names(candidates)}"
                    )
                return layer
        raise ModelUsageError(f"no layer named '{name}' in the model; candidates: {_names(candidates)}")
    if not candidates:
        raise ModelUsageError(
            "the model has no convolutional feature map (no layer with a 4-D output larger than 1x1), "
            "so CAM/Grad-CAM cannot be computed"
        )
    return candidates[-1]


def _names(layers) -> str:
    names = [layer.name for layer in layers]
    if not names:
        return "(none)"
    if len(names) > 12:
        return ", ".join(names[-12:]) + f" (and {len(names) - 12} earlier)"
    return ", ".join(names)


def layers_after(model, target) -> list:
    """Leaf layers that run after the target layer in call order."""
    layers = list(iter_layers(model))
    index = next(i for i, layer in enumerate(layers) if layer is target)
    return layers[index + 1 :]
