"""The shared heatmap engine: one forward and one backward pass per batch, in a traced tf.function.

The target layer is hooked while the ORIGINAL model runs (its ``call`` is wrapped to record its output), so
nested models work without rebuilding a Functional graph. A soft head (softmax/sigmoid) that is a layer's
activation is bypassed the same way, so the explained score is the logit (explaining a saturated softmax gives
vanishing gradients). Probabilities made where no layer can be switched off (``keras.ops.softmax`` in a
Functional model, a custom layer: see :func:`validator.model.detect_head`) are used as they are: the explained
score is then the log-probability (softmax; its gradient is that of ``logit_c - logsumexp(logits)``) or the
logit ``log(p) - log(1 - p)`` recovered from a one-unit sigmoid, and the reported probabilities are the model's
own (not softmaxed again). A saturated probability (exactly 0 or 1 in float32) has no gradient: a dead map.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from dataclasses import dataclass, field

import numpy as np

from validator._tf import keras, tf
from validator.errors import ModelUsageError, UsageError
from validator.explain.methods import METHODS
from validator.layer_patch import bypass_head, patched
from validator.model import LoadedModel, find_target_layer, layers_after, load_model, token_grid

CAM_HEAD_LAYERS = ("GlobalAveragePooling2D", "Dropout", "Dense", "Activation", "Softmax")


def method_options(method, given: dict | None) -> dict:
    """The method's options: its defaults updated with ``given``; an unknown name is a UsageError."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(method.defaults))
    if unknown:
        known = ", ".join(method.defaults) or "none"
        raise UsageError(f"method {method.name!r} has no option {', '.join(map(repr, unknown))} (its options: {known})")
    return {**method.defaults, **given}


class DeadMapWarning(UserWarning):
    """Some heatmaps are all zero: the explainer found no evidence, which must not count as a pass."""


@dataclass
class Explanation:
    """Heatmaps for one batch. ``maps`` are >= 0, at input resolution, not normalised."""

    maps: np.ndarray  # float32 [N, H, W]
    layer_maps: np.ndarray  # float32 [N, h, w] at the target layer's resolution
    dead: np.ndarray  # bool [N]: the map sums to 0 (or is not finite): no explanation
    probabilities: np.ndarray  # float32 [N, classes]
    predicted: np.ndarray  # int [N]
    confidence: np.ndarray  # float32 [N], probability of the predicted class
    extra: dict = field(default_factory=dict)  # per-image method diagnostics, e.g. IG's completeness gap [N]


@contextlib.contextmanager
def _hooks(target, head_layer, sink: list, tape):
    """Record the target layer's output (watched by the tape) and bypass the soft head while inside.

    Both patches go through :func:`validator.layer_patch.patched`: made under one re-entrant lock held until
    they are undone, each restored in a ``finally`` (also when applying the second one fails), and only
    active in this thread. Two explainers tracing the same model at once therefore take turns instead of
    restoring each other's wrappers (which left a wrapper recording into a dead tape)."""

    def recording_call(original, *args, **kwargs):
        output = original(*args, **kwargs)
        if tape is not None:
            tape.watch(output)
        sink.append(output)
        return output

    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(target, "call", recording_call))
        stack.enter_context(bypass_head(head_layer, keras))
        yield


def head_outputs(loaded: LoadedModel):
    """``f(outputs) -> (explained class scores [N, classes], probabilities [N, classes])`` for this model's head.

    One definition for the explainers and the forward-only :class:`~validator.explain.predict.Predictor`, so a
    probe's probabilities are the same numbers the explainer reports."""
    probabilities_out = loaded.head_activation is not None and not loaded.head_bypass
    tiny = tf.constant(1e-30, tf.float32)
    eps = tf.constant(1e-7, tf.float32)

    def scores_and_probabilities(outputs):
        """(explained class scores [N, classes], probabilities [N, classes]) from the model's outputs."""
        if probabilities_out and loaded.binary_sigmoid:  # sigmoid probability: recover the logit
            positive = tf.clip_by_value(outputs[:, :1], 0.0, 1.0)
            clipped = tf.clip_by_value(outputs[:, :1], eps, 1.0 - eps)
            logit = tf.math.log(clipped) - tf.math.log1p(-clipped)
            return tf.concat([-logit, logit], axis=1), tf.concat([1.0 - positive, positive], axis=1)
        if probabilities_out and loaded.head_activation == "softmax":  # explain log p_c
            return tf.math.log(tf.maximum(outputs, tiny)), tf.clip_by_value(outputs, 0.0, 1.0)
        if probabilities_out:  # multi-label sigmoid probabilities (not detected today): as they are
            return outputs, tf.clip_by_value(outputs, 0.0, 1.0)
        if loaded.binary_sigmoid:  # one logit: class 1 is +logit, class 0 is -logit
            positive = tf.sigmoid(outputs[:, :1])
            return tf.concat([-outputs, outputs], axis=1), tf.concat([1.0 - positive, positive], axis=1)
        if loaded.head_activation == "sigmoid":  # multi-label head: independent probabilities
            return outputs, tf.sigmoid(outputs)
        return outputs, tf.nn.softmax(outputs, axis=1)

    return scores_and_probabilities


def as_grid(values, static_shape=None):
    """A transformer's tokens [N, T, D] as a patch grid [N, g, g, D] (leading class/distillation tokens
    dropped: see :func:`validator.model.token_grid`); a 4-D feature map is returned as it is.
    ``static_shape``: the layer's declared output shape, for Keras versions whose traced T is unknown."""
    shape = tuple(static_shape) if static_shape is not None else tuple(values.shape)
    if len(shape) != 3:
        return values
    g, special = token_grid(int(shape[1]))
    return tf.reshape(values[:, special:, :], (-1, g, g, int(shape[2])))


class Explainer:
    """Batched CAM-family explainer for one model, one method and one target layer.

    Build it once and call :meth:`explain` on as many batches as needed: the graph is traced once with a
    fixed input signature ([None, H, W, C]), so batches of any size reuse it.
    """

    def __init__(self, model, method: str = "gradcam", layer: str | None = None, batch_size: int = 32,
                 options: dict | None = None):
        if method not in METHODS:
            raise UsageError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.loaded: LoadedModel = load_model(model)
        self.method = METHODS[method]
        self.options = method_options(self.method, options)
        self.batch_size = int(batch_size)
        # pixel attributions explain the input: no target layer (a layer given for them is not used)
        self.target = find_target_layer(self.loaded.model, layer) if self.method.needs_layer else None
        self.head_layer = self._head_layer()
        self.cam_kernel = self._cam_kernel() if method == "cam" else None
        if self.method.family == "cam":
            self._step = self._build_step()
        else:
            module = importlib.import_module(f"validator.explain.{self.method.family}")
            self._step = module.build_step(self)

    @property
    def settings(self) -> dict:
        return {
            "method": self.method.name,
            "layer": self.target.name if self.target is not None else None,
            "layer_shape": list(self.target.output.shape[1:]) if self.target is not None else None,
            "options": dict(self.options),
            "cost": self.method.cost,
            "batch_size": self.batch_size,
            "score": self.loaded.explained_score,
            "input_size": list(self.loaded.input_size),
        }

    def _head_layer(self):
        """The layer whose soft activation is switched off while explaining, or None."""
        return self.loaded.head_layer if self.loaded.head_bypass else None

    def _cam_kernel(self):
        after = layers_after(self.loaded.model, self.target)
        kinds = [type(layer).__name__ for layer in after]
        dense = [layer for layer in after if isinstance(layer, keras.layers.Dense)]
        if (
            not kinds
            or kinds[0] != "GlobalAveragePooling2D"
            or len(dense) != 1
            or any(kind not in CAM_HEAD_LAYERS for kind in kinds)
        ):
            raise ModelUsageError(
                f"method 'cam' needs the target layer '{self.target.name}' followed by "
                f"GlobalAveragePooling2D -> Dense; found {' -> '.join(kinds) or 'nothing'}. "
                "Use --method gradcam or hirescam for this model."
            )
        layer, binary = dense[0], self.loaded.binary_sigmoid

        def kernel():
            # read in the graph, not frozen at trace time: a cached explainer of a model that trains on (the
            # Keras callback) or whose weights are re-drawn (the sanity cascade) sees the current weights
            weights = tf.cast(tf.convert_to_tensor(layer.kernel), tf.float32)
            return tf.concat([-weights, weights], axis=1) if binary else weights  # class 0 is -logit

        return kernel

    def _build_step(self):
        loaded, method, target = self.loaded, self.method, self.target
        height, width = loaded.input_size
        spec = tf.TensorSpec([None, height, width, loaded.channels], tf.float32)

        scores_and_probabilities = head_outputs(loaded)

        @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)], reduce_retracing=True)
        def step(images, class_ids):
            sink: list = []
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                with _hooks(target, self.head_layer, sink, tape if method.needs_gradient else None):
                    outputs = loaded.model(images, training=False)
                logits, probs = scores_and_probabilities(tf.cast(outputs, tf.float32))
                chosen = tf.gather(logits, class_ids, axis=1, batch_dims=1)
            if not sink:
                raise ModelUsageError(
                    f"the target layer '{target.name}' did not run when the model was called; choose a layer "
                    "on the model's forward path (--layer)"
                )
            activations = as_grid(tf.cast(sink[-1], tf.float32), target.output.shape)
            if method.needs_gradient:
                gradients = as_grid(tf.cast(tape.gradient(chosen, sink[-1]), tf.float32), target.output.shape)
                layer_maps = method.combine(activations, gradients)
            else:
                weights = tf.transpose(tf.gather(self.cam_kernel(), class_ids, axis=1))
                layer_maps = method.combine(activations, None, weights)
            layer_maps = tf.nn.relu(layer_maps)
            maps = tf.image.resize(layer_maps[..., None], (height, width), method="bilinear")[..., 0]
            maps = tf.nn.relu(maps)  # clip again after resampling
            return layer_maps, maps, probs

        return step

    def explain(self, images, class_ids) -> Explanation:
        """Explain each image for its own class. images: float32 [N,H,W,C] (already preprocessed)."""
        images = np.asarray(images, dtype=np.float32)
        class_ids = np.asarray(class_ids).astype(np.int32).reshape(-1)
        self._validate(images, class_ids)
        parts = [
            self._run(images[start : start + self.batch_size], class_ids[start : start + self.batch_size])
            for start in range(0, len(images), self.batch_size)
        ]
        if not parts:
            h, w = self.loaded.input_size
            empty = np.zeros((0,), np.float32)
            return Explanation(
                np.zeros((0, h, w), np.float32),
                np.zeros((0, 1, 1), np.float32),
                empty.astype(bool),
                np.zeros((0, self.loaded.num_classes), np.float32),
                empty.astype(int),
                empty,
            )
        arrays = [np.concatenate(values) for values in zip(*(part[:6] for part in parts), strict=True)]
        extra = {key: np.concatenate([part[6][key] for part in parts]) for key in parts[0][6]}
        return Explanation(*arrays, extra=extra)

    def step_tensors(self, images, class_ids) -> tuple:
        """One batch (at most ``batch_size`` images) through the traced step; the outputs stay tensors on the
        device: (layer maps, maps [N, H, W], probabilities[, extras]). For scoring on the device."""
        images = np.asarray(images, dtype=np.float32)
        class_ids = np.asarray(class_ids).astype(np.int32).reshape(-1)
        self._validate(images, class_ids)
        if len(images) > self.batch_size:
            raise UsageError(f"step_tensors takes at most batch_size={self.batch_size} images, got {len(images)}")
        return self._step(tf.constant(images), tf.constant(class_ids))

    def _run(self, images, class_ids):
        out = self._step(tf.constant(images), tf.constant(class_ids))
        layer_maps, maps, probs = (np.asarray(v) for v in out[:3])
        extra = {k: np.asarray(v) for k, v in (out[3] if len(out) > 3 else {}).items()}
        maps = maps.astype(np.float32, copy=False)
        totals = maps.reshape(len(maps), -1).sum(axis=1)
        dead = ~np.isfinite(totals) | (totals <= 0)
        probs = probs.astype(np.float32, copy=False)
        predicted = probs.argmax(axis=1)
        return (maps, layer_maps.astype(np.float32, copy=False), dead, probs, predicted, probs.max(axis=1), extra)

    def _validate(self, images, class_ids):
        height, width = self.loaded.input_size
        expected = (height, width, self.loaded.channels)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise UsageError(
                f"images have shape {images.shape}; the model expects [N, {height}, {width}, {expected[2]}]"
            )
        if len(class_ids) != len(images):
            raise UsageError(f"{len(images)} images but {len(class_ids)} class ids")
        bad = class_ids[(class_ids < 0) | (class_ids >= self.loaded.num_classes)]
        if len(bad):
            raise UsageError(
                f"class id {int(bad[0])} is outside the model's {self.loaded.num_classes} classes"
            )


CACHE_ATTRIBUTE = "_camgate_explainers"


def cached_explainer(model, method: str = "gradcam", layer: str | None = None, batch_size: int = 32,
                     options: dict | None = None) -> Explainer:
    """The Explainer for this in-memory model and these settings, built once and reused.

    Building an Explainer traces its graph (seconds on a large model); ``heatmaps()`` called in a loop used to
    do it on every call. The cache lives on the model object itself, so it never keeps a model alive (the
    explainers go when the model goes) and two models never share one. A path or URI is loaded afresh on
    every call (no cache): pass a loaded ``keras.Model`` to reuse the graph."""
    target = model.model if isinstance(model, LoadedModel) else model
    if not isinstance(target, keras.Model):
        return Explainer(model, method=method, layer=layer, batch_size=batch_size, options=options)
    key = (method, layer, int(batch_size), tuple(sorted((options or {}).items())))
    cache = vars(target).setdefault(CACHE_ATTRIBUTE, {})  # vars(): Keras' __setattr__ would track the dict
    if key not in cache:
        cache[key] = Explainer(model, method=method, layer=layer, batch_size=batch_size, options=options)
    return cache[key]


def heatmaps(
    model, images, class_ids, method: str = "gradcam", layer: str | None = None, batch_size: int = 32,
    options: dict | None = None,
):
    """Heatmaps float32 [N,H,W] >= 0 at input resolution (not normalised), one per image for its class.

    ``model``: a keras.Model, a path (.keras/.h5/SavedModel dir) or an MLflow URI. For an in-memory model the
    Explainer is cached (:func:`cached_explainer`), so calling this in a loop costs what the class costs. A
    dead map (sum 0: no gradient reached the layer) is not an explanation: it raises a
    :class:`DeadMapWarning` naming the indices; use :class:`Explainer` to get the per-image ``dead`` flags.
    """
    explainer = cached_explainer(model, method=method, layer=layer, batch_size=batch_size, options=options)
    result = explainer.explain(images, class_ids)
    if result.dead.any():
        indices = np.flatnonzero(result.dead).tolist()
        warnings.warn(
            f"{len(indices)} dead heatmap(s) (sum 0, no explanation) at indices {indices[:20]}",
            DeadMapWarning,
            stacklevel=2,
        )
    return result.maps
