"""Explainer sanity: cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for
Saliency Maps", NeurIPS).

A heatmap that explains the model must change when what the model learned is destroyed. The weighted layers
are re-drawn from their initialisers top-down (output first), cumulatively, on a CLONE of the model, and each
image's map is compared with its map on the trained model by Spearman rank correlation. DESIGN.md section 5:
maps that barely change (Spearman >= 0.5) mean the heat checks cannot be trusted, so their verdict is
INCONCLUSIVE, not PASS. The policy decides that; this module only computes the correlations.

Choices, and why:

- **Normalisation layers are left as they are** (BatchNormalization, LayerNormalization, GroupNormalization:
  not randomised, not a stage). Adebayo et al. randomise the learnable weights; BN moving statistics are not
  learned evidence, and gamma/beta are per-channel affine scales with no spatial or cross-channel structure:
  they cannot say *where* to look, and the kernels they scale are already re-drawn. Counting them as stages
  would spend explain passes on layers that carry no evidence.
- **Weights are re-drawn, not shuffled**: a kernel from its layer's own ``kernel_initializer`` (likewise
  ``depthwise_initializer``, ``embeddings_initializer``, ...) seeded from ``(seed, rank from the top,
  variable)``; a bias from its ``bias_initializer`` (zeros); a variable with no random initialiser from a
  normal with the original values' std. The same layer gets the same draw at every stage, so stage ``k`` is
  exactly :func:`randomised_copy` ``(model, k, seed)``. Frozen layers (``trainable=False``, a transfer-learning
  base) are randomised too: freezing says nothing about whether the weights were learned.
- **Maps are compared at the target layer's resolution** (area downsampling; :data:`COMPARE_SIZE` when the
  model has no target layer; never finer than the maps themselves). A Grad-CAM map holds h' x w' numbers; the bilinear
  upsampling to input size adds no information but many near-ties and smooth plateaus that inflate the rank
  correlation. Maps are compared as given (no absolute value, no normalisation: Spearman is scale-free).
- **Cost**: one explain pass over the subset for the trained model and one per stage, (stages + 1) in all,
  on :data:`DEFAULT_SUBSET` images by default (the caller picks them). The model is cloned ONCE (the trained
  maps are the clone's before any re-draw) and the stages re-draw the clone's weights in place; every method,
  CAM included, reads the clone's variables inside its traced graph, so the explainer traces once and is
  reused. Stages default to every weighted layer, capped at :data:`MAX_STAGES` evenly spread (always the top
  layer alone and all layers).
- A dead or constant map (either side) has no ranking: its Spearman is NaN, never a pass or a fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from validator.errors import ModelUsageError, UsageError

DEFAULT_SUBSET = 32  # images the caller explains (stages + 1) times
MAX_STAGES = 8  # default cap on stages: each one is a full explain pass over the subset
COMPARE_SIZE = 32  # comparison grid when there is no target layer to take the resolution from
NORMALISATION_LAYERS = ("BatchNormalization", "LayerNormalization", "GroupNormalization")
# Variables whose initialiser attribute is not "<variable name>_initializer".
_INITIALIZER_ATTRIBUTES = {
    "depthwise_kernel": "depthwise_initializer",
    "pointwise_kernel": "pointwise_initializer",
    "recurrent_kernel": "recurrent_initializer",
}

ExplainFn = Callable[[object, np.ndarray, np.ndarray], np.ndarray]


@dataclass
class SanityResult:
    """Per-sample Spearman correlations between each image's map on the trained model and after each stage.

    Stage ``j`` randomised the ``n_top[j]`` topmost weighted layers, named (top-down) in ``layers[j]``."""

    method: str
    seed: int
    n_top: list[int]
    layers: list[list[str]]
    spearman: np.ndarray  # float [stages, N]; NaN for a dead or constant map
    grid: tuple[int, int]  # (h, w) the maps were compared at
    original: np.ndarray  # float32 [N, H, W] maps of the trained model, as the explainer gave them
    randomised: np.ndarray  # float32 [stages, N, h, w] maps after each stage, at the comparison grid
    original_dead: np.ndarray  # bool [N]
    dead: np.ndarray  # bool [stages, N]
    seconds: list[float]  # wall time of the original pass (clone + first trace included), then each stage

    @property
    def per_sample_final(self) -> np.ndarray:
        """Spearman after the last stage (all randomised layers): the one Adebayo et al. report."""
        return self.spearman[-1]

    @property
    def per_sample_max(self) -> np.ndarray:
        """The highest Spearman over the stages per sample (NaN only where every stage is NaN)."""
        return np.fmax.reduce(self.spearman, axis=0)

    def summary(self) -> dict:
        """JSON-serialisable: per stage the layers, mean / median Spearman over the finite samples and n."""

        def stats(values: np.ndarray) -> dict:
            finite = values[np.isfinite(values)]
            return {
                "mean": float(finite.mean()) if finite.size else None,
                "median": float(np.median(finite)) if finite.size else None,
                "n": int(finite.size),
            }

        return {
            "method": self.method,
            "seed": int(self.seed),
            "samples": int(self.spearman.shape[1]),
            "grid": [int(v) for v in self.grid],
            "original_dead": int(self.original_dead.sum()),
            "stages": [
                {"n_top": int(k), "layers": list(names), **stats(row), "dead": int(dead.sum()),
                 "seconds": round(float(sec), 3)}
                for k, names, row, dead, sec in zip(
                    self.n_top, self.layers, self.spearman, self.dead, self.seconds[1:], strict=True
                )
            ],
            "final": stats(self.per_sample_final),
            "max_over_stages": stats(self.per_sample_max),
        }


# ---------------------------------------------------------------------------------------------- layers


def _keras():
    from validator._tf import keras

    return keras


def _leaves(model) -> list:
    """Leaf layers in call order, descending into nested models, each once (a shared layer is one layer)."""
    from validator.model import iter_layers

    seen: set[int] = set()
    leaves = []
    for layer in iter_layers(model):
        if id(layer) not in seen:
            seen.add(id(layer))
            leaves.append(layer)
    return leaves


def _learnable(layer) -> list:
    """The variables a layer created as trainable, also when it is frozen (Keras 3 keeps them in
    ``_trainable_variables``; ``trainable_weights`` is empty for a frozen layer)."""
    variables = getattr(layer, "_trainable_variables", None)
    if variables is None:
        variables = layer.trainable_weights
    return list(variables)


def _is_weighted(layer) -> bool:
    return bool(_learnable(layer)) and type(layer).__name__ not in NORMALISATION_LAYERS


def _weighted_indices(leaves: list) -> list[int]:
    """Indices into ``leaves`` of the weighted layers, top-down (output first)."""
    return [i for i in reversed(range(len(leaves))) if _is_weighted(leaves[i])]


def _unwrap(model):
    keras = _keras()
    if isinstance(model, keras.Model):
        return model
    from validator.model import LoadedModel, load_model

    return (model if isinstance(model, LoadedModel) else load_model(model)).model


def weighted_layers(model) -> list[str]:
    """Names of the layers the cascade randomises, top-down (output first), walking nested models: leaf
    layers that own learnable weights, normalisation layers excepted (see the module docstring)."""
    leaves = _leaves(_unwrap(model))
    return [leaves[i].name for i in _weighted_indices(leaves)]


# ---------------------------------------------------------------------------------------------- clone


def _clone(model):
    """A clone with the original's weights copied leaf by leaf; the original is only read."""
    keras = _keras()
    try:
        clone = keras.models.clone_model(model, recursive=True)
    except Exception as exc:  # subclassed models, layers without get_config, ...
        raise ModelUsageError(
            f"the explainer sanity check needs a cloneable model (a Functional or Sequential keras.Model "
            f"whose layers have get_config), so that the caller's weights are never touched; "
            f"keras.models.clone_model failed: {type(exc).__name__}: {exc}"
        ) from exc
    originals, copies = _leaves(model), _leaves(clone)
    if len(originals) != len(copies):
        raise ModelUsageError(
            f"the clone of '{model.name}' has {len(copies)} layers, the model {len(originals)}: "
            "the explainer sanity check needs a model that clones layer for layer"
        )
    for source, target in zip(originals, copies, strict=True):
        renamed = source.name != target.name and not isinstance(source, keras.layers.InputLayer)
        if renamed or type(source) is not type(target) or len(source.weights) != len(target.weights):
            raise ModelUsageError(
                f"the clone of layer '{source.name}' does not match it (got '{target.name}' with "
                f"{len(target.weights)} weights, expected {len(source.weights)})"
            )
        for src, dst in zip(source.weights, target.weights, strict=True):
            values = np.asarray(src.numpy())
            if tuple(dst.shape) != values.shape:
                raise ModelUsageError(
                    f"weight '{src.path}' of the clone has shape {tuple(dst.shape)}, expected {values.shape}"
                )
            dst.assign(values.copy())
    return clone


def _variable_seed(seed: int, rank: int, index: int) -> int:
    """A draw depends on the seed and the layer's rank from the top only, so stages nest exactly."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(index)]).generate_state(1)[0] % (2**31 - 1))


def _short_name(variable) -> str:
    return str(getattr(variable, "name", "") or "").split("/")[-1].split(":")[0]


def _initializer(layer, name: str):
    attribute = _INITIALIZER_ATTRIBUTES.get(name, f"{name}_initializer")
    return getattr(layer, attribute, None)


def _seeded(initializer, seed: int):
    """A fresh copy of a random initialiser with ``seed``, or None if it is not random (Zeros, Constant, ...)
    or cannot be rebuilt from its config."""
    keras = _keras()
    try:
        config = keras.initializers.serialize(initializer)
        inner = config.get("config", {}) if isinstance(config, dict) else {}
        if "seed" not in inner:
            return None
        config = {**config, "config": {**inner, "seed": seed}}
        return keras.initializers.get(config)
    except Exception:
        return None


def _redraw(layer, rank: int, seed: int) -> None:
    """Re-draw every learnable variable of ``layer`` (a layer of the clone) in place."""
    keras = _keras()
    for index, variable in enumerate(_learnable(layer)):
        shape = tuple(int(d) for d in variable.shape)
        name = _short_name(variable)
        is_bias = name in ("bias", "beta") or name.endswith("bias")
        draw_seed = _variable_seed(seed, rank, index)
        initializer = _initializer(layer, name)
        values = None
        if initializer is not None:
            seeded = _seeded(initializer, draw_seed)
            if seeded is not None:
                values = seeded(shape, dtype=variable.dtype)
            elif is_bias:  # a constant bias initialiser (zeros) is what the layer started from
                values = keras.initializers.get(initializer)(shape, dtype=variable.dtype)
        if values is None and is_bias:
            values = np.zeros(shape, np.float32)
        if values is None:  # no random initialiser: a normal with the trained values' spread
            current = np.asarray(variable.numpy(), np.float64)
            std = float(current.std()) if current.size else 0.0
            if not math.isfinite(std) or std <= 0:
                std = float(np.abs(current).max()) if current.size and np.isfinite(current).all() else 0.0
                std = std or 1.0
            values = np.random.default_rng(draw_seed).normal(0.0, std, shape)
        variable.assign(np.asarray(keras.ops.convert_to_numpy(values)).reshape(shape))


def _randomise(leaves: list, weighted: list[int], start: int, stop: int, seed: int) -> None:
    """Re-draw the weighted layers of rank ``start`` to ``stop - 1`` (0 = the top) in place."""
    for rank in range(start, stop):
        _redraw(leaves[weighted[rank]], rank, seed)


def randomised_copy(model, n_top: int, seed: int = 0):
    """A clone of ``model`` whose ``n_top`` topmost weighted layers (:func:`weighted_layers`) are re-drawn.

    The caller's model and its weights are never changed. Deterministic for a seed; a layer gets the same
    draw whatever ``n_top`` is, so copies for growing ``n_top`` nest (the cascade)."""
    model = _unwrap(model)
    weighted = _weighted_indices(_leaves(model))
    if not 0 <= int(n_top) <= len(weighted):
        raise UsageError(
            f"n_top must be between 0 and the model's {len(weighted)} weighted layers, got {n_top}"
        )
    clone = _clone(model)
    _randomise(_leaves(clone), weighted, 0, int(n_top), seed)
    return clone


# ---------------------------------------------------------------------------------------------- stages


def plan_stages(n_weighted: int, stages: int | Sequence[int] | None = None) -> list[int]:
    """How many top layers each stage randomises, ascending (cumulative).

    None: every weighted layer, at most :data:`MAX_STAGES` evenly spread; an int: that many evenly spread
    (capped at ``n_weighted``); spread stages always include 1 (the top layer alone) and ``n_weighted`` (all;
    a single stage is all). A sequence: those ``n_top`` values, each in 1..n_weighted."""
    if n_weighted < 1:
        raise ModelUsageError("the model has no layer with learnable weights to randomise")
    if stages is None or isinstance(stages, int | np.integer):
        count = MAX_STAGES if stages is None else int(stages)
        if count < 1:
            raise UsageError(f"stages must be >= 1, got {stages}")
        count = min(count, n_weighted)
        if count == 1:
            return [n_weighted]
        return sorted({int(round(v)) for v in np.linspace(1, n_weighted, count)})
    values = sorted({int(v) for v in stages})
    if not values:
        raise UsageError("stages is an empty list")
    bad = [v for v in values if not 1 <= v <= n_weighted]
    if bad:
        raise UsageError(f"stage n_top {bad[0]} is outside 1..{n_weighted} (the model's weighted layers)")
    return values


# ---------------------------------------------------------------------------------------------- maps


def downsample(maps, size: tuple[int, int]) -> np.ndarray:
    """Area-downsample maps [N, H, W] to ``size`` (h, w); a map already that small is kept as it is."""
    import cv2

    maps = np.asarray(maps, np.float32)
    h, w = int(size[0]), int(size[1])
    if maps.shape[1:] == (h, w):
        return maps.copy()
    if not len(maps):
        return np.zeros((0, h, w), np.float32)
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_AREA) for m in maps])


def spearman_rows(a, b) -> np.ndarray:
    """Spearman rank correlation of each row pair of a, b [N, ...] (ties get average ranks); NaN where
    either row is constant (a dead map) or not finite."""
    from scipy.stats import rankdata

    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    out = np.full(len(a), np.nan)
    if not a.shape[1]:
        return out
    valid = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    valid &= (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0)
    if not valid.any():
        return out
    ra = rankdata(a[valid], axis=1)
    rb = rankdata(b[valid], axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    out[valid] = (ra * rb).sum(axis=1) / np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    return np.clip(out, -1.0, 1.0)


def _dead(maps: np.ndarray) -> np.ndarray:
    totals = maps.reshape(len(maps), -1).sum(axis=1)
    return ~np.isfinite(totals) | (totals <= 0)


def _grid(target, map_shape: tuple[int, int]) -> tuple[int, int]:
    if target is not None:
        from validator.model import target_grid

        h, w = target_grid(target)
    else:
        h = w = COMPARE_SIZE
    return min(h, map_shape[0]), min(w, map_shape[1])


def _target_index(model, leaves: list, layer: str | None, required: bool) -> int | None:
    from validator.model import find_target_layer

    try:
        target = find_target_layer(model, layer)
    except ModelUsageError:
        if required or layer is not None:
            raise
        return None
    return next(i for i, leaf in enumerate(leaves) if leaf is target)


class _StageExplainer:
    """Maps of the clone at its current weights: the given callable, or Grad-CAM & co. via an Explainer that
    targets the CLONE's layer (found on the original, looked up at the same position in the clone)."""

    def __init__(self, clone, clone_leaves, target_index, method, explain, batch_size, options=None):
        self.clone, self.method, self.explain_fn, self.batch_size = clone, method, explain, batch_size
        self.options = options
        self.target = clone_leaves[target_index] if target_index is not None else None
        self.explainer = None

    def _build(self):
        from validator.explain.engine import Explainer

        explainer = Explainer(self.clone, method=self.method, layer=self.target.name, batch_size=self.batch_size,
                              options=self.options)
        if explainer.target is not None and explainer.target is not self.target:
            raise ModelUsageError(
                f"the target layer name '{self.target.name}' is not unique in the model; the sanity check "
                "cannot tell which layer to explain in the clone (pass --layer with a unique name)"
            )
        return explainer

    def __call__(self, images, class_ids, groups=None) -> tuple[np.ndarray, np.ndarray]:
        if groups is not None:  # one call per group: each image is explained in the batch it came in
            parts = [self(images[rows], class_ids[rows]) for rows in _group_rows(groups)]
            return (np.concatenate([p[0] for p in parts]).astype(np.float32),
                    np.concatenate([p[1] for p in parts]).astype(bool))
        if self.explain_fn is not None:
            maps = np.asarray(self.explain_fn(self.clone, images, class_ids), np.float32)
            if maps.ndim != 3 or len(maps) != len(images):
                raise UsageError(f"the explain callable returned shape {maps.shape}; expected [N, H, W]")
            return maps, _dead(maps)
        if self.explainer is None:  # every method reads the clone's variables in the graph: one trace
            self.explainer = self._build()
        result = self.explainer.explain(images, class_ids)
        return result.maps, np.asarray(result.dead, bool)


def _group_rows(groups) -> list[np.ndarray]:
    """Row indices of each run of equal ids, in order."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return [np.arange(a, b) for a, b in zip(starts, np.r_[starts[1:], len(groups)], strict=True)]


def cascade(
    model,
    images,
    class_ids,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    explain: ExplainFn | None = None,
    stages: int | Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = 32,
    options: dict | None = None,
    groups=None,
) -> SanityResult:
    """Cascading randomisation (Adebayo et al. 2018): maps of the trained model, then of a clone whose top
    1, ..., L weighted layers are re-drawn (``stages``: see :func:`plan_stages`), and per sample the Spearman
    correlation between the trained and the randomised map at the target layer's resolution.

    ``explain(keras_model, images, class_ids) -> maps [N, H, W]`` replaces the CAM-family explainer; it is
    called with the same clone object at every stage, its weights re-drawn in place between calls (so it
    must not cache results by model identity). ``images`` is the subset (:data:`DEFAULT_SUBSET` by default,
    chosen by the caller), preprocessed as the model expects; ``class_ids`` the class explained per image.
    ``groups`` (one id per image, equal ids adjacent): the images of a group are explained together, apart from
    the others, so an image's maps do not depend on which other images were sampled (a shard's cascade gives
    what the whole set's gives, bit for bit)."""
    original = _unwrap(model)
    images = np.asarray(images, np.float32)
    class_ids = np.asarray(class_ids).astype(np.int32).reshape(-1)
    if len(class_ids) != len(images):
        raise UsageError(f"{len(images)} images but {len(class_ids)} class ids")
    leaves = _leaves(original)
    weighted = _weighted_indices(leaves)
    plan = plan_stages(len(weighted), stages)
    target_index = _target_index(original, leaves, layer, required=explain is None)

    started = time.perf_counter()
    clone = _clone(original)
    clone_leaves = _leaves(clone)
    stage_maps = _StageExplainer(clone, clone_leaves, target_index, method, explain, batch_size, options)
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != len(images):
            raise UsageError(f"{len(images)} images but {len(groups)} group ids")
    original_maps, original_dead = stage_maps(images, class_ids, groups)
    grid = _grid(leaves[target_index] if target_index is not None else None, original_maps.shape[1:])
    reference = downsample(original_maps, grid)
    seconds = [time.perf_counter() - started]

    rows, randomised, dead = [], [], []
    done = 0
    for n_top in plan:
        started = time.perf_counter()
        _randomise(clone_leaves, weighted, done, n_top, seed)
        done = n_top
        maps, stage_dead = stage_maps(images, class_ids, groups)
        small = downsample(maps, grid)
        rho = spearman_rows(reference, small)
        rho[original_dead | stage_dead] = np.nan
        rows.append(rho)
        randomised.append(small)
        dead.append(stage_dead)
        seconds.append(time.perf_counter() - started)

    names = [leaves[i].name for i in weighted]
    return SanityResult(
        method=method if explain is None else getattr(explain, "__name__", "custom"),
        seed=int(seed),
        n_top=list(plan),
        layers=[names[:k] for k in plan],
        spearman=np.stack(rows) if rows else np.zeros((0, len(images))),
        grid=grid,
        original=np.asarray(original_maps, np.float32),
        randomised=np.stack(randomised).astype(np.float32),
        original_dead=np.asarray(original_dead, bool),
        dead=np.stack(dead),
        seconds=seconds,
    )
