"""Load a Keras classifier safely and describe what the explainers need: input size, classes, target layer, head.

Nothing here rebuilds the model as a new Functional graph (the "Graph disconnected" failure of tools that do
so on nested transfer-learning models): the explainers hook the target layer while the original model runs.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from validator.errors import ModelError, ModelUsageError
from validator.model_uri import fetch_model
from validator.safe_load import MODEL_SUFFIXES, refuse_unsafe

SOFT_ACTIVATIONS = ("softmax", "sigmoid")
MULTI_LABEL_THRESHOLD = 0.5  # a label is given when its sigmoid probability reaches this
INPUT_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA: what validator.data.read_image decodes to


@dataclass
class LoadedModel:
    """A classifier plus the facts the gate needs about it.

    The head is read off the model's *outputs* on a probe batch, not only off its last layer (see
    :func:`detect_head`): ``head_activation`` says what the outputs are ("softmax" rows of probabilities,
    "sigmoid" probabilities, or None for logits) and ``head_bypass`` whether the explainers can switch that
    activation off to explain logits (it is a layer's activation) or not (applied with ``keras.ops`` or inside
    a custom layer; then the explained score is the log-probability for softmax and the logit recovered as
    ``log(p / (1 - p))`` for a one-unit sigmoid: see :attr:`explained_score`).
    """

    model: object  # keras.Model
    source: str
    name: str
    input_size: tuple[int, int]  # (height, width)
    channels: int  # input channels: 1 (grayscale), 3 (RGB) or 4 (RGBA); also as ``input_channels``
    num_outputs: int  # units of the last layer
    head_activation: str | None  # "softmax" | "sigmoid" | None (already logits)
    extra: dict = field(default_factory=dict)
    head_bypass: bool = False  # the soft activation is head_layer's and is switched off while explaining
    head_layer: object = field(default=None, repr=False)  # the layer whose activation is bypassed, or None
    #: ``{"name": ..., "version": ...}`` of the registered model version that was loaded (an alias or
    #: ``latest`` resolved once, at load time), or None when the source is not a registered model URI.
    registry_version: dict | None = None

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
    def multi_label(self) -> bool:
        """K > 1 independent sigmoid units: each label is present or not, and an image may carry several."""
        return self.head_activation == "sigmoid" and self.num_outputs > 1

    def detected(self, probabilities, class_ids) -> np.ndarray:
        """Per row, whether the model gives label ``class_ids[i]``: its probability >= 0.5 for a multi-label
        head (per-label detection: the argmax says nothing when several labels may be on), else the argmax."""
        probabilities = np.asarray(probabilities)
        class_ids = np.asarray(class_ids, dtype=int)
        if self.multi_label:
            return probabilities[np.arange(len(class_ids)), class_ids] >= MULTI_LABEL_THRESHOLD
        return probabilities.argmax(axis=1) == class_ids

    @property
    def num_classes(self) -> int:
        return 2 if self.binary_sigmoid else self.num_outputs

    @property
    def explained_score(self) -> str:
        """What the gradient methods differentiate: ``logit`` (soft head switched off), ``log-probability``
        (a softmax that cannot be switched off), ``logit from probability`` (a one-unit sigmoid that cannot
        be: ``log(p) - log(1 - p)``) or ``model output`` (the model outputs logits)."""
        if self.head_activation is None:
            return "model output"
        if self.head_bypass:
            return "logit"
        return "log-probability" if self.head_activation == "softmax" else "logit from probability"


def _keras():
    from validator._tf import keras

    return keras


def _load_keras_object(source: str, trust: bool):
    keras = _keras()
    path = Path(source)
    if not path.exists():
        raise ModelError(f"model not found: {source}")
    if path.is_dir():
        return _load_model_dir(path, trust)
    if path.suffix not in MODEL_SUFFIXES:
        raise ModelUsageError(
            f"unsupported model file {source}: expected a .keras file, a legacy .h5 file, "
            "a folder holding one, an MLflow model folder or URI (models:/..., runs:/...)"
        )
    refuse_unsafe(path, trust)
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


def _load_model_dir(path: Path, trust: bool):
    """A folder: an MLflow model directory (MLmodel), one holding a .keras file, or a SavedModel export.
    Every model file in it is scanned, whatever its name, before anything is loaded."""
    if (path / "MLmodel").is_file():
        return load_mlflow_dir(path, trust)
    refuse_unsafe(path, trust)
    for candidate in sorted(path.glob("*.keras")) + sorted(path.glob("data/*.keras")):
        return _load_keras_object(str(candidate), trust)
    if not (path / "saved_model.pb").exists():
        raise ModelError(f"{path} is a directory without saved_model.pb or a .keras file")
    keras = _keras()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except Exception as exc:
        raise ModelUsageError(
            f"{path} is a TensorFlow SavedModel export, which keeps only the serving function and not the "
            "layer graph that CAM/Grad-CAM must reach into. Save the model with model.save('model.keras') "
            f"and audit that file. (Keras said: {type(exc).__name__})"
        ) from exc


def load_mlflow_dir(path, trust: bool = False, label: str | None = None):
    """A local MLflow model directory (``MLmodel`` + the Keras flavour's files) -> keras.Model.

    Every file in the folder is scanned (:func:`validator.safe_load.refuse_unsafe`) before MLflow's Keras
    flavour loads it with Keras' safe mode on unless ``trust``. ``label`` names the source in messages."""
    from mlflow.models import Model

    path = Path(path)
    shown = label or str(path)
    mlmodel = path / "MLmodel"
    if not mlmodel.is_file():
        raise ModelUsageError(f"{shown} is not an MLflow model (no MLmodel file)")
    try:
        conf = Model.load(str(mlmodel))
    except Exception as exc:
        raise ModelError(f"cannot read the MLmodel file of {shown}: {type(exc).__name__}: {exc}") from exc
    keras_conf = conf.flavors.get("keras")
    if keras_conf is None:
        raise ModelUsageError(
            f"{shown} has no Keras flavour (flavours: {', '.join(sorted(conf.flavors))}); camgate needs "
            "a model logged with mlflow.keras.log_model"
        )
    if keras_conf.get("save_exported_model"):
        raise ModelUsageError(
            f"{shown} was logged with save_exported_model=True: an exported serving function has no "
            "layer graph for CAM/Grad-CAM. Log the model with mlflow.keras.log_model(model) instead."
        )
    refuse_unsafe(path, trust, label=label)
    import mlflow.keras

    try:
        return mlflow.keras.load_model(str(path), load_model_kwargs={"safe_mode": not trust, "compile": False})
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise ModelUsageError(
                f"model {shown} needs unsafe deserialisation ({exc}). If you trust it, pass --trust-model."
            ) from exc
        raise ModelError(f"cannot load MLflow model {shown}: {exc}") from exc
    except Exception as exc:
        raise ModelError(f"cannot load MLflow model {shown}: {type(exc).__name__}: {_short(exc)}") from exc


def _load_uri(source: str, trust: bool, tracking_uri: str | None = None):
    """An MLflow URI -> (keras.Model, registry version or None). The URI is resolved (an alias or ``latest``
    to one version) and downloaded by :mod:`validator.model_uri`; the files are loaded here."""
    with fetch_model(source, tracking_uri=tracking_uri) as fetched:
        return load_mlflow_dir(fetched.local, trust, label=source), fetched.registry_version


def is_model_uri(source: str) -> bool:
    return "://" in source or source.startswith(("models:/", "runs:/"))


def load_model(path_or_uri, trust: bool = False) -> LoadedModel:
    """Load a classifier from a .keras file, a legacy .h5 file, a directory holding one, an MLflow model
    directory or an MLflow URI (``models:/name/3``, ``models:/name@alias``, ``runs:/<id>/model``, ...).

    ``trust=False`` keeps Keras' safe mode on and refuses, before loading, a model whose config carries code
    (Lambda layers, serialised lambdas, custom objects not registered in this process), with a message that
    names the file, the layer and the opt-in flag. A ``keras.Model`` instance is accepted as is. For a
    registered model URI, ``LoadedModel.registry_version`` is the version that was resolved and loaded.
    """
    keras = _keras()
    if isinstance(path_or_uri, LoadedModel):
        return path_or_uri
    registry_version = None
    if isinstance(path_or_uri, keras.Model):
        model, source = path_or_uri, f"<in-memory {path_or_uri.name}>"
    else:
        source = str(path_or_uri)
        if is_model_uri(source):
            model, registry_version = _load_uri(source, trust)
        else:
            model = _load_keras_object(source, trust)
    return describe(model, source, registry_version=registry_version)


def _short(exc, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(model, source: str, registry_version: dict | None = None) -> LoadedModel:
    """Read input size, output units and head activation off a built model (the head from its outputs on a
    probe batch: :func:`detect_head`)."""
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
    head = detect_head(model, (int(height), int(width), int(channels)))
    return LoadedModel(
        model=model,
        source=source,
        name=_model_name(model, source),
        input_size=(int(height), int(width)),
        channels=int(channels),
        num_outputs=int(output_shape[-1]),
        head_activation=head.activation,
        extra={"head_layer": head.layer.name if head.layer is not None else None, "head_probe": head.evidence},
        head_bypass=head.bypass,
        head_layer=head.layer if head.bypass else None,
        registry_version=registry_version,
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


@dataclass(frozen=True)
class Head:
    activation: str | None  # what the model outputs: "softmax" / "sigmoid" probabilities, or None (logits)
    bypass: bool  # the activation is ``layer``'s and switching it off leaves logits
    layer: object  # the last leaf layer (named in LoadedModel.extra["head_layer"])
    evidence: str  # how it was decided, for the report


PROBE_TOLERANCE = 2e-3  # |row sum - 1| for softmax rows; float16 heads round to ~1e-3


def probability_kind(outputs) -> str | None:
    """"softmax" if every row is in [0, 1] and sums to 1, "sigmoid" for one unit in [0, 1] that varies over
    the probe, else None (logits, or nothing can be told)."""
    values = np.asarray(outputs, dtype=np.float64)
    if values.ndim != 2 or not len(values) or not np.isfinite(values).all():
        return None
    if values.min() < -1e-6 or values.max() > 1.0 + 1e-6:
        return None
    if values.shape[1] == 1:
        return "sigmoid" if np.ptp(values) > 1e-6 else None
    return "softmax" if np.all(np.abs(values.sum(axis=1) - 1.0) <= PROBE_TOLERANCE) else None


def _outputs_fit(activation: str, outputs) -> bool:
    """Whether outputs can be what ``activation`` makes: values in [0, 1], and rows summing to 1 for softmax."""
    values = np.asarray(outputs, dtype=np.float64)
    if not np.isfinite(values).all() or values.min() < -1e-6 or values.max() > 1.0 + 1e-6:
        return False
    return activation != "softmax" or bool(np.all(np.abs(values.sum(axis=1) - 1.0) <= PROBE_TOLERANCE))


def probe_batch(shape: tuple[int, int, int]) -> np.ndarray:
    """Six images that span the usual input ranges (raw 0..255 pixels, [0, 1], [-1, 1])."""
    rng = np.random.default_rng(0)
    return np.stack([
        np.zeros(shape), np.full(shape, 255.0), rng.uniform(0, 255, shape), rng.uniform(0, 255, shape),
        rng.uniform(0, 1, shape), rng.uniform(-1, 1, shape),
    ]).astype(np.float32)


def _run_probe(model, images, head_layer=None):
    from validator.layer_patch import bypass_head

    keras = _keras()
    with bypass_head(head_layer, keras), warnings.catch_warnings():
        # Legacy .h5 models name their input ('input_1'); calling them with a bare tensor is fine but warns.
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        outputs = model(images, training=False)
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float64)


def detect_head(model, input_shape: tuple[int, int, int]) -> Head:
    """Which soft activation the model's outputs carry and whether the explainers can switch it off.

    The last layer's activation (a Dense/Conv ``activation=``, a ``Softmax`` or ``Activation`` layer) is only a
    candidate: the model runs on :func:`probe_batch` as it is and with that activation switched off. It is
    bypassed only when the plain outputs match it and the bypassed ones are no longer probabilities. Outputs
    that are probabilities with no such layer (``keras.ops.softmax`` in a Functional model, a custom layer,
    a second softmax) are reported with ``bypass=False``: the engine then explains the log-probability
    (softmax) or the logit ``log(p/(1-p))`` (one-unit sigmoid) instead of a softmax of probabilities.
    If the model cannot run on the probe, the last layer alone decides (as before probing).
    """
    from validator.layer_patch import PATCH_LOCK

    with PATCH_LOCK:  # no explainer's patch is half-applied while the head is read and probed
        layer, candidate = find_head(model)
        images = probe_batch(input_shape)
        try:
            plain = _run_probe(model, images)
        except Exception as exc:  # the explainer will run the model and report its own error
            return Head(candidate, candidate is not None, layer, f"last layer (probe failed: {type(exc).__name__})")
        found = probability_kind(plain)
        if candidate is not None and _outputs_fit(candidate, plain):
            bypassed = _run_probe(model, images, layer)
            if probability_kind(bypassed) is None:
                return Head(candidate, True, layer, f"last layer '{layer.name}' ({candidate}), bypassed")
            return Head(found or candidate, False, layer,
                        f"outputs are {found or candidate} probabilities even without '{layer.name}''s activation")
        if found is not None:
            return Head(found, False, layer, f"outputs are {found} probabilities (not from the last layer)")
        return Head(None, False, layer, "outputs are logits")


def _is_preprocessing(layer) -> bool:
    """Input and preprocessing layers (Rescaling, Resizing, ...) show pixels, not learned features."""
    keras = _keras()
    return isinstance(layer, keras.layers.InputLayer) or ".preprocessing." in type(layer).__module__


# A vision transformer's block outputs tokens [N, T, D]: T = g*g patch tokens, plus up to two leading
# special tokens (the class token; DeiT's distillation token), which are dropped before reshaping to g x g.
MAX_SPECIAL_TOKENS = 2


def token_grid(tokens: int) -> tuple[int, int] | None:
    """(g, special) when ``tokens`` = g*g patch tokens + ``special`` leading tokens (g >= 2), else None."""
    for special in range(MAX_SPECIAL_TOKENS + 1):
        g = math.isqrt(max(tokens - special, 0))
        if g >= 2 and g * g == tokens - special:
            return g, special
    return None


def target_grid(layer) -> tuple[int, int]:
    """(h, w) of the map a target layer gives: its spatial size, or the patch grid of a token sequence."""
    shape = layer.output.shape
    if len(shape) == 3:
        g, _ = token_grid(int(shape[1]))
        return g, g
    return int(shape[1]), int(shape[2])


def _spatial_output(layer) -> tuple | None:
    if _is_preprocessing(layer):
        return None
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return None
    if len(shape) == 4 and shape[1] is not None and shape[2] is not None and shape[1] > 1 and shape[2] > 1:
        return tuple(shape)
    if (len(shape) == 3 and shape[1] is not None and shape[2] is not None and shape[2] > 1
            and token_grid(int(shape[1])) is not None and _is_token_layer(layer)):
        return tuple(shape)
    return None


def _is_token_layer(layer) -> bool:
    """A transformer block's output, not a 1-D convolution over a sequence that happens to be square: the
    layer is (or ends) an attention block, a LayerNormalization, or an Add of a residual stream."""
    names = type(layer).__name__
    return names in ("MultiHeadAttention", "LayerNormalization", "Add") or "Transformer" in names or \
        "Encoder" in names or "Block" in names


def candidate_layers(model) -> list:
    """Layers whose output is a 4-D feature map with spatial size > 1 (1x1 'logit convs' excluded), or a
    transformer block's token sequence [N, g*g (+ class token), D] (a ViT: reshaped to the g x g patch grid)."""
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
                        f"feature map [N,H,W,C] with H,W > 1 nor transformer tokens [N, g*g (+1), D]; "
                        f"candidates: {_names(candidates)}"
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
