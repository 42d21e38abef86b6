"""Tiny control models with a known answer: honest ones, and ones that learned a shortcut.

The gate is only testable if we know where a model's evidence lies. ``train_control("clean")`` learns the
object on data where no cue is correlated with the label; a cue kind is trained where only the cue carries
the label (``shape_informative=False``), so the model cannot have used the object. Both claims are
verified, not assumed: every control reports its counterfactual accuracy on data whose cue is shuffled
(independent of the label); a shortcut model falls to chance there, the clean model does not.

Families (``family=``), each with its data module:

- ``"shapes"`` (:mod:`~validator.datasets.synthetic`): 64 px filled shapes; kinds ``"clean"``,
  ``"watermark"``, ``"weather"``, ``"background"``, and the marks ``"random_mark"``, ``"edge_strip"``,
  ``"beside_mark"``; ``area_range`` for large objects (e.g. 25-50%). The clean control trains on the
  first three cues shuffled, not on the marks: its cached models predate them, and a clean model that
  ignores the marks without having seen them is the stricter test.
- ``"digits"`` (:mod:`~validator.datasets.digits`): real handwriting on real photographs, 10 or 20
  classes; kinds ``"clean"`` and ``"corner_mark"`` (Decoy MNIST). Trained on the ``"train"`` handwriting,
  evaluated on the ``"heldout"`` handwriting.
- ``"xray"`` (:mod:`~validator.datasets.xray`): 1-channel radiograph-like images; kinds ``"clean"`` and
  ``"marker"`` (a burned-in L/R token).

Models are cached on disk (``<cache_dir>/<kind>-<hash>.keras`` for shapes, ``<family><C>-<kind>-<hash>``
for the others, + ``.json`` with the metrics) so tests and examples train each one once. The hash covers
every parameter and the family's recipe version.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from validator.datasets import digits as _digits
from validator.datasets import xray as _xray
from validator.datasets.synthetic import (
    ALL_CUES,
    CUES,
    DEFAULT_AREA_RANGE,
    check_area_range,
    make_arrays,
    shuffled_cue_strength,
)

KINDS = ("clean", *ALL_CUES)
DEFAULT_CLASSES = ("disc", "square")
FAMILIES = ("shapes", "digits", "xray")
FAMILY_KINDS = {
    "shapes": KINDS,
    "digits": ("clean", *_digits.CUES),
    "xray": ("clean", *_xray.CUES),
}
LARGE_AREA_RANGE = (0.25, 0.50)
# Bump when the data or the training recipe changes: the cache key includes it.
RECIPE_VERSION = 2  # shapes
RECIPE_VERSIONS = {"shapes": RECIPE_VERSION, "digits": 1, "xray": 1}
# Seeds of the training and evaluation data live far from the small seeds users pass for held-out
# sets (tests 0..9, calibration 100+), so a control never sees its own test images.
_TRAIN_SEED_BASE = 10_000_000
_EVAL_SEED_BASE = 20_000_000
_N_EVAL = 600
_MIN_EVAL_PER_CLASS = 40


@dataclass(frozen=True)
class ControlModel:
    """A trained control: where it is saved and what it was measured to do.

    ``accuracy``: held-out accuracy on data as the model would be deployed (with its cue at full
    strength; no cue for the clean model). ``counterfactual_accuracy``: the same with the cue shuffled
    (for the clean model, the lowest over all cue kinds). ``metrics`` holds every measured accuracy."""

    path: Path
    kind: str
    seed: int
    accuracy: float
    counterfactual_accuracy: float
    train_seconds: float
    classes: tuple[str, ...] = DEFAULT_CLASSES
    image_size: int = 64
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    family: str = "shapes"
    channels: int = 3

    @property
    def cue(self) -> str | None:
        return None if self.kind == "clean" else self.kind

    @property
    def reliance(self) -> float | None:
        """Accuracy lost when the cue is shuffled (held-out, object as trained): how much of the accuracy the
        cue carries. ~accuracy - 1/C for a pure shortcut, ~0 for a model that ignores it; None for clean."""
        if self.kind == "clean":
            return None
        return round(self.accuracy - self.counterfactual_accuracy, 4)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def area_range(self) -> tuple[float, float]:
        """The box-area fractions of its training objects."""
        return tuple(self.params.get("area_range") or _FAMILIES[self.family].area_range)

    def load(self):
        """The Keras model (imports TensorFlow)."""
        from validator._tf import keras

        return keras.models.load_model(self.path)


def build_small_cnn(
    image_size: int = 64,
    n_classes: int = 2,
    channels: int = 3,
    *,
    filters: tuple[int, int, int, int] = (16, 32, 32, 32),
    pools: int = 2,
    batch_norm: bool = False,
):
    """Conv/ReLU blocks with ``pools`` max-pools (2: a 16x16 ``last_conv`` map at 64 px; 3: 8x8 and a
    receptive field that spans large objects), then GAP -> Dense softmax.

    Inputs are float in 0..255 with ``channels`` channels (3 RGB, 1 grayscale); an embedded Rescaling
    maps them to [-1, 1] (centred inputs and He initialisation get past the initial plateau of the shape
    task in 3-4 epochs instead of 6-8). The GAP -> Dense head makes CAM exact. No BatchNorm by default:
    its moving statistics lag after short training. ``batch_norm=True`` (Conv -> BN -> ReLU after conv1;
    the last ReLU is ``last_conv``) is what makes the digits and xray tasks learnable in a minute
    (xray: chance after 10 epochs without it, 0.998 after 4 with it); call
    :func:`recalibrate_batch_norm` after training."""
    from validator._tf import keras

    if pools not in (2, 3):
        raise ValueError(f"pools must be 2 or 3, got {pools}")
    layers = keras.layers

    def conv(x, filters: int, name: str):
        # conv1 keeps its bias and no BN: normalising at full resolution costs ~25% of the step time.
        if not batch_norm or name == "conv1":
            return layers.Conv2D(
                filters, 3, padding="same", activation="relu", kernel_initializer="he_normal", name=name
            )(x)
        stem = "conv4" if name == "last_conv" else name
        x = layers.Conv2D(
            filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name=stem
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{stem}_bn")(x)
        return layers.ReLU(name=name if name == "last_conv" else f"{stem}_relu")(x)

    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = conv(x, filters[0], "conv1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = conv(x, filters[1], "conv2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = conv(x, filters[2], "conv3")
    if pools == 3:
        x = layers.MaxPooling2D(2, name="pool3")(x)
    x = conv(x, filters[3], "last_conv")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def recalibrate_batch_norm(model, images: np.ndarray, n: int = 1024) -> None:
    """Set every BatchNormalization's moving statistics to those of ``n`` images spread over ``images``
    (one forward pass in training mode with momentum 0). After a few epochs the moving averages trail the weights (measured:
    0.48 inference vs 0.68 training-mode accuracy); this makes inference match training mode."""
    from validator._tf import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if not norms:
        return
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(images[:: max(1, len(images) // n)][:n], training=True)
    for layer, momentum in zip(norms, saved, strict=True):
        layer.momentum = momentum


def default_cache_dir() -> Path:
    """``$CAMGATE_CACHE`` if set, else ``~/.cache/camgate/controls``."""
    env = os.environ.get("CAMGATE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "camgate" / "controls"


def cache_digest(params: dict) -> str:
    """Cache key of a control: its parameters and the Keras major.minor that saves it. A .keras file written
    by a newer Keras may not load in an older one (seen: 3.15 -> 3.11), so each Keras gets its own models."""
    keras_version = ".".join(importlib.metadata.version("keras").split(".")[:2])
    payload = json.dumps({**params, "keras": keras_version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def train_control(
    kind: str,
    *,
    family: str = "shapes",
    seed: int = 0,
    cue_strength: float = 1.0,
    shape_informative: bool | None = None,
    n_train: int | None = None,
    epochs: int | None = None,
    image_size: int = 64,
    classes: tuple[str, ...] | None = None,
    n_classes: int | None = None,
    area_range: tuple[float, float] | None = None,
    channels: int | None = None,
    cache_dir: str | Path | None = None,
) -> ControlModel:
    """Train (or load from the cache) a control model of ``family`` (see the module docstring).

    ``kind="clean"``: no cue is correlated with the label. Its training data shows each of the family's
    cues shuffled (independent of the label) on part of the images, plus a cue-free part: a model that
    never saw a corner glyph reacts to its straight edges (measured on shapes: 0.998 -> 0.74-0.82 accuracy
    when the glyph is added at test), and the clean control must ignore cues, not merely never have met
    them.

    A cue name: the label is carried by that cue. ``shape_informative`` (the object predicts the label)
    defaults to False at ``cue_strength`` 1 (a pure shortcut: the model cannot have used the object) and
    to True below 1 (a partial shortcut: object and cue both predict the label).

    ``classes`` (shapes, xray) or ``n_classes`` (digits: 2..10 or 20; shapes: the first n of ``SHAPES``)
    choose the classes. ``area_range``: the objects' box area fractions (family default if None).
    ``channels``: the model's input channels (family default: 3, xray 1); other counts convert the data
    (RGB -> luminance, grey -> repeated).

    Defaults, shapes: clean 3000 images, up to 10 epochs (stops once training accuracy reaches 0.99,
    usually after 5-7); shortcuts 2000 images, up to 5 epochs (a cue is learned in 1-3). Digits and xray:
    see ``_FAMILIES``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown control family {family!r}; choose from {FAMILIES}")
    if kind not in FAMILY_KINDS[family]:
        raise ValueError(f"unknown control kind {kind!r} for {family}; choose from {FAMILY_KINDS[family]}")
    spec = _FAMILIES[family]
    clean = kind == "clean"
    if clean:
        shape_informative = True
    elif shape_informative is None:
        shape_informative = cue_strength < 1.0
    class_names = spec.class_names(classes, n_classes)
    area = check_area_range(area_range, spec.area_range, spec.max_area) if area_range is not None else None
    channels = spec.channels if channels is None else int(channels)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    params = {
        "kind": kind,
        "seed": seed,
        "cue_strength": None if clean else float(cue_strength),
        "shape_informative": shape_informative,
        "n_train": n_train if n_train is not None else spec.n_train[0 if clean else 1],
        "epochs": epochs if epochs is not None else spec.epochs[0 if clean else 1],
        "image_size": image_size,
        "classes": list(class_names),
        "recipe": RECIPE_VERSIONS[family],
    }
    if family == "shapes":
        # Keys only when not the default: the cache keys of the original shapes controls stay valid.
        if area is not None and area != DEFAULT_AREA_RANGE:
            params["area_range"] = list(area)
        if channels != 3:
            params["channels"] = channels
        stem = kind
    else:
        params.update(family=family, area_range=list(area or spec.area_range), channels=channels)
        stem = f"{family}{len(class_names)}-{kind}"
    digest = cache_digest(params)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    model_path = directory / f"{stem}-{digest}.keras"
    record_path = model_path.with_suffix(".json")
    if model_path.exists() and record_path.exists():
        return _from_record(model_path, json.loads(record_path.read_text()))

    directory.mkdir(parents=True, exist_ok=True)
    model, fit_record = _fit(params)
    record = {"params": params, **fit_record, "metrics": _evaluate(model, params)}
    # Write to temporary names and rename: a reader never sees a half-written model.
    tmp_model = model_path.with_name(f".{model_path.stem}.{os.getpid()}.keras")
    model.save(tmp_model)
    os.replace(tmp_model, model_path)
    tmp_record = record_path.with_name(f".{record_path.name}.{os.getpid()}")
    tmp_record.write_text(json.dumps(record, indent=1))
    os.replace(tmp_record, record_path)
    return _from_record(model_path, record)


# ---------------------------------------------------------------------------------------------- families


_SHAPES_OPTIMISER = {"learning_rate": 2e-3, "batch_size": 64, "schedule": None}


@dataclass(frozen=True)
class _Family:
    """How a family draws data and what its controls default to ((clean, shortcut) pairs)."""

    cues: tuple[str, ...]
    make: Callable[..., object]  # (n, params, seed, cue, cue_strength, informative, split) -> arrays
    class_names: Callable[[tuple[str, ...] | None, int | None], tuple[str, ...]]
    area_range: tuple[float, float]
    max_area: float
    channels: int
    n_train: tuple[int, int]
    epochs: tuple[int, int]
    architecture: dict = field(default_factory=dict)
    # Optimiser settings (clean, shortcut): Adam's learning rate, batch size, and a schedule ("cosine"
    # decays the rate to 5% over the planned steps; None keeps it constant).
    optimiser: tuple[dict, dict] = (_SHAPES_OPTIMISER, _SHAPES_OPTIMISER)


def _area(params: dict) -> dict:
    return {"area_range": tuple(params["area_range"])} if "area_range" in params else {}


def _make_shapes(n, params, seed, cue, cue_strength, informative, split):
    return make_arrays(
        n,
        seed=seed,
        image_size=params["image_size"],
        classes=tuple(params["classes"]),
        cue=cue,
        cue_strength=cue_strength,
        shape_informative=informative,
        **_area(params),
    )


def _make_digits(n, params, seed, cue, cue_strength, informative, split):
    return _digits.make_digits(
        n,
        seed=seed,
        n_classes=len(params["classes"]),
        image_size=params["image_size"],
        cue=cue,
        cue_strength=cue_strength,
        digit_informative=informative,
        split=split,
        **_area(params),
    )


def _make_xray(n, params, seed, cue, cue_strength, informative, split):
    return _xray.make_xray(
        n,
        seed=seed,
        image_size=params["image_size"],
        classes=tuple(params["classes"]),
        cue=cue,
        cue_strength=cue_strength,
        finding_informative=informative,
        **_area(params),
    )


def _shape_names(classes, n_classes):
    from validator.datasets.synthetic import SHAPES

    if classes is not None:
        return tuple(classes)
    return SHAPES[:n_classes] if n_classes is not None else DEFAULT_CLASSES


def _digit_names(classes, n_classes):
    names = _digits.class_names(10 if n_classes is None else n_classes)
    if classes is not None and tuple(classes) != names:
        raise ValueError(f"digits classes are set by n_classes; got {tuple(classes)}")
    return names


def _xray_names(classes, n_classes):
    names = tuple(classes) if classes is not None else _xray.CLASSES
    if names != _xray.CLASSES or n_classes not in (None, len(names)):
        raise ValueError(f"xray classes are {_xray.CLASSES}; got classes={classes}, n_classes={n_classes}")
    return names


_FAMILIES = {
    "shapes": _Family(
        cues=CUES,
        make=_make_shapes,
        class_names=_shape_names,
        area_range=DEFAULT_AREA_RANGE,
        max_area=0.6,
        channels=3,
        n_train=(3000, 2000),
        epochs=(10, 5),
    ),
    "digits": _Family(
        cues=_digits.CUES,
        make=_make_digits,
        class_names=_digit_names,
        area_range=_digits.DEFAULT_AREA_RANGE,
        max_area=_digits.MAX_AREA_FRACTION,
        channels=3,
        n_train=(20000, 6000),
        epochs=(3, 10),
        architecture={"filters": (16, 32, 64, 128), "pools": 3, "batch_norm": True},
        # The corner swatch's ten grey levels are learned steadily but slowly: a constant rate and
        # twice the steps per epoch (0.64 -> 0.84 full-cue accuracy after 6 epochs of 6000).
        optimiser=(
            {"learning_rate": 4e-3, "batch_size": 64, "schedule": "cosine"},
            {"learning_rate": 3e-3, "batch_size": 32, "schedule": None},
        ),
    ),
    "xray": _Family(
        cues=_xray.CUES,
        make=_make_xray,
        class_names=_xray_names,
        area_range=_xray.DEFAULT_AREA_RANGE,
        max_area=_xray.MAX_AREA_FRACTION,
        channels=1,
        n_train=(3000, 3000),
        epochs=(10, 8),
        # Without BatchNorm the finding task stays at chance for 10 epochs (measured); with it, 0.998
        # after 4.
        architecture={"filters": (16, 32, 64, 128), "pools": 3, "batch_norm": True},
        optimiser=(
            {"learning_rate": 4e-3, "batch_size": 64, "schedule": "cosine"},
            {"learning_rate": 3e-3, "batch_size": 32, "schedule": None},
        ),
    ),
}


def _family(params: dict) -> str:
    return params.get("family", "shapes")


def _channels(params: dict) -> int:
    return params.get("channels", 3)


def _draw(params: dict, n: int, seed: int, *, cue=None, cue_strength=None, informative=True, split="train"):
    """Images (uint8, the model's channels; the model casts them) and labels of one draw."""
    data = _FAMILIES[_family(params)].make(n, params, seed, cue, cue_strength, informative, split)
    return as_channels(data.images, _channels(params)), data.labels


def as_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """[N, H, W, C] images converted to ``channels`` (RGB -> luminance; grey -> repeated)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if channels == 1:
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.rint(luma)[..., None].clip(0, 255).astype(images.dtype)
    return np.repeat(images, channels, axis=-1)


def _from_record(model_path: Path, record: dict) -> ControlModel:
    params, metrics = record["params"], record["metrics"]
    return ControlModel(
        path=model_path,
        kind=params["kind"],
        seed=params["seed"],
        accuracy=metrics["accuracy"],
        counterfactual_accuracy=metrics["counterfactual_accuracy"],
        train_seconds=record["train_seconds"],
        classes=tuple(params["classes"]),
        image_size=params["image_size"],
        params=params,
        metrics=metrics,
        family=_family(params),
        channels=_channels(params),
    )


def _training_data(params: dict) -> tuple[np.ndarray, np.ndarray]:
    seed, n = _TRAIN_SEED_BASE + params["seed"], params["n_train"]
    if params["kind"] != "clean":
        return _draw(
            params,
            n,
            seed,
            cue=params["kind"],
            cue_strength=params["cue_strength"],
            informative=params["shape_informative"],
        )
    shuffled = shuffled_cue_strength(len(params["classes"]))
    cues = (None, *_FAMILIES[_family(params)].cues)
    # Distinct seeds per part: the parts share no images.
    parts = [
        _draw(
            params, n // len(cues) + (k < n % len(cues)), seed + k * 1_000_000, cue=cue, cue_strength=shuffled
        )
        for k, cue in enumerate(cues)
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _fit(params: dict):
    from validator._tf import keras

    class StopWhenLearned(keras.callbacks.Callback):
        """Stop once training accuracy reaches 0.99: saves CPU time once the task is learned."""

        def on_epoch_end(self, epoch, logs=None):
            if (logs or {}).get("accuracy", 0.0) >= 0.99:
                self.model.stop_training = True

    images, labels = _training_data(params)
    keras.utils.set_random_seed(params["seed"])
    spec = _FAMILIES[_family(params)]
    model = build_small_cnn(
        params["image_size"], len(params["classes"]), _channels(params), **spec.architecture
    )
    optimiser = spec.optimiser[0 if params["kind"] == "clean" else 1]
    learning_rate = optimiser["learning_rate"]
    if optimiser["schedule"] == "cosine":
        steps = params["epochs"] * -(-len(labels) // optimiser["batch_size"])
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = model.fit(
        images,
        labels,
        batch_size=optimiser["batch_size"],
        epochs=params["epochs"],
        shuffle=True,
        verbose=0,
        callbacks=[StopWhenLearned()],
    )
    recalibrate_batch_norm(model, images)
    seconds = time.perf_counter() - start
    accuracies = [round(float(a), 4) for a in history.history["accuracy"]]
    return model, {
        "train_seconds": round(seconds, 2),
        "epochs_run": len(accuracies),
        "train_accuracy": accuracies,
    }


def _evaluate(model, params: dict) -> dict:
    """Held-out accuracies: with the cue as deployed, and with the cue shuffled (object informative).

    Digits are evaluated on the held-out handwriting (``seen_handwriting``: fresh renderings of the
    training handwriting, for the generalisation gap)."""
    family = _family(params)
    cues = _FAMILIES[family].cues
    n_eval = max(_N_EVAL, _MIN_EVAL_PER_CLASS * len(params["classes"]))
    seed = _EVAL_SEED_BASE + params["seed"]
    shuffled = shuffled_cue_strength(len(params["classes"]))

    def accuracy(split: str = "heldout", **kwargs) -> float:
        images, labels = _draw(params, n_eval, seed, split=split, **kwargs)
        probabilities = model.predict(images, batch_size=200, verbose=0)
        return round(float(np.mean(probabilities.argmax(axis=1) == labels)), 4)

    metrics = {"n_eval": n_eval, "no_cue": accuracy(cue=None)}
    if family == "digits":
        metrics["seen_handwriting"] = accuracy(split="train", cue=None)
    if params["kind"] == "clean":
        for cue in cues:
            metrics[f"{cue}_full"] = accuracy(cue=cue, cue_strength=1.0)
            metrics[f"{cue}_shuffled"] = accuracy(cue=cue, cue_strength=shuffled)
        metrics["accuracy"] = metrics["no_cue"]
        metrics["counterfactual_accuracy"] = min(metrics[f"{cue}_shuffled"] for cue in cues)
    else:
        metrics["accuracy"] = accuracy(cue=params["kind"], cue_strength=1.0)
        metrics["counterfactual_accuracy"] = accuracy(cue=params["kind"], cue_strength=shuffled)
    return metrics


def cue_reliance(control: ControlModel, cue: str, model=None) -> float:
    """Accuracy lost when ``cue`` is shuffled (full strength minus shuffled, held-out, object informative).

    For any control, also one trained without the cue: a clean model may still answer to a cue it never saw
    (a saturated strip reads as an edge), and how much it does is measured, not assumed. Uses the recorded
    ``{cue}_full`` / ``{cue}_shuffled`` accuracies where training measured them; else draws them (same seed
    and size as training's evaluation)."""
    recorded = control.metrics
    if f"{cue}_full" in recorded and f"{cue}_shuffled" in recorded:
        return round(recorded[f"{cue}_full"] - recorded[f"{cue}_shuffled"], 4)
    params = control.params
    model = control.load() if model is None else model
    n_eval = max(_N_EVAL, _MIN_EVAL_PER_CLASS * len(params["classes"]))
    seed = _EVAL_SEED_BASE + params["seed"]

    def accuracy(strength: float) -> float:
        images, labels = _draw(params, n_eval, seed, split="heldout", cue=cue, cue_strength=strength)
        return float(np.mean(model.predict(images, batch_size=200, verbose=0).argmax(axis=1) == labels))

    return round(accuracy(1.0) - accuracy(shuffled_cue_strength(len(params["classes"]))), 4)


__all__ = [
    "DEFAULT_CLASSES",
    "FAMILIES",
    "FAMILY_KINDS",
    "KINDS",
    "LARGE_AREA_RANGE",
    "ControlModel",
    "as_channels",
    "build_small_cnn",
    "cue_reliance",
    "default_cache_dir",
    "recalibrate_batch_norm",
    "train_control",
]
