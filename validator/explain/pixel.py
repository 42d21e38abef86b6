"""Pixel attributions (saliency, SmoothGrad, Integrated Gradients, occlusion) behind the one Explainer.

They explain the input itself, so there is no target layer: ``layer_maps`` is ``maps`` ([N, H, W] >= 0 at
input resolution). The explained score y_c is the one Grad-CAM explains: the model runs with its soft head
bypassed (:func:`validator.layer_patch.bypass_head`) and :func:`~validator.explain.engine.head_outputs` turns
its outputs into (logits or log-probabilities, probabilities), exactly as the Predictor does.

The multi-pass methods put the N images x (samples | steps | patch positions) rows through the model in
groups: ``g = max(1, batch_size // N)`` items for all N images per model call, so a call sees at most
``max(batch_size, N)`` rows (the memory of one Grad-CAM batch), inside one traced ``tf.while_loop``. Each
image's result depends only on that image (SmoothGrad's noise is seeded per sample index, not per batch
position), so explaining a batch gives the maps of explaining its images one by one (up to float summation
order), and reruns are bit-identical on CPU.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from validator._tf import keras, tf
from validator.errors import UsageError
from validator.explain.engine import head_outputs
from validator.explain.names import OPTION_CHOICES
from validator.layer_patch import bypass_head

#: SmoothGrad's noise for sample s is ``stateless_normal(seed=(SMOOTHGRAD_SEED, s))``: reproducible audits.
SMOOTHGRAD_SEED = 2017
#: The "blur" IG baseline: a Gaussian blur with sigma = this fraction of the image's longer side.
BLUR_SIGMA = 0.05
BASELINES = OPTION_CHOICES["integrated_gradients"]["baseline"]  # ("black", "blur")


def build_step(explainer):
    """The traced ``step(images, class_ids) -> (maps, maps, probabilities, extras)`` for a pixel method."""
    name = explainer.method.name
    options = validate_options(name, explainer.options)
    loaded = explainer.loaded
    height, width = loaded.input_size
    channels = loaded.channels
    rows = int(explainer.batch_size)
    to_scores = head_outputs(loaded)
    head_layer = explainer.head_layer

    def scores(images, class_ids):
        """(y_c [n], probabilities [n, classes]) with the soft head bypassed while the model is traced."""
        with bypass_head(head_layer, keras):
            outputs = loaded.model(images, training=False)
        explained, probabilities = to_scores(tf.cast(outputs, tf.float32))
        return tf.gather(explained, class_ids, axis=1, batch_dims=1), probabilities

    def gradients(images, class_ids):
        """(dy_c/dx [n, H, W, C], y_c [n], probabilities): rows are independent, so one tape serves all."""
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            chosen, probabilities = scores(images, class_ids)
        grads = tape.gradient(chosen, images, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.cast(grads, tf.float32), chosen, probabilities

    def over_groups(count, n, contribution, initial):
        """Sum ``contribution(items)`` ([n, ...], for all n images) over ``count`` items taken g at a time."""
        group = tf.maximum(1, rows // tf.maximum(n, 1))

        def body(start, total):
            stop = tf.minimum(start + group, count)
            return stop, total + contribution(tf.range(start, stop))

        return tf.while_loop(lambda start, _total: start < count, body, (tf.constant(0), initial))[1]

    spec = [tf.TensorSpec([None, height, width, channels], tf.float32), tf.TensorSpec([None], tf.int32)]

    if name == "saliency":

        @tf.function(input_signature=spec, reduce_retracing=True)
        def step(images, class_ids):
            grads, _, probabilities = gradients(images, class_ids)
            maps = tf.reduce_max(tf.abs(grads), axis=-1)  # max over colour channels (seeds 001/004)
            return maps, maps, probabilities, {}

        return step

    if name == "smoothgrad":
        samples, noise = options["samples"], options["noise"]

        @tf.function(input_signature=spec, reduce_retracing=True)
        def step(images, class_ids):
            n = tf.shape(images)[0]
            _, probabilities = scores(images, class_ids)
            # Smilkov et al. 2017: sigma = noise x (max - min) of each image
            spread = tf.reduce_max(images, axis=(1, 2, 3)) - tf.reduce_min(images, axis=(1, 2, 3))
            sigma = tf.constant(noise, tf.float32) * spread

            def contribution(sample_ids):
                draws = tf.map_fn(
                    lambda s: tf.random.stateless_normal(
                        [height, width, channels], seed=tf.stack([tf.constant(SMOOTHGRAD_SEED), s])
                    ),
                    sample_ids,
                    fn_output_signature=tf.float32,
                )
                group = tf.shape(sample_ids)[0]
                noisy = images[None] + draws[:, None] * sigma[None, :, None, None, None]  # [g, n, H, W, C]
                grads, _, _ = gradients(
                    tf.reshape(noisy, [-1, height, width, channels]), tf.tile(class_ids, [group])
                )
                return tf.reduce_sum(tf.reshape(grads, [group, n, height, width, channels]), axis=0)

            mean = over_groups(samples, n, contribution, tf.zeros_like(images)) / float(samples)
            maps = tf.reduce_max(tf.abs(mean), axis=-1)  # |mean gradient|, not the mean of |gradient|
            return maps, maps, probabilities, {}

        return step

    if name == "integrated_gradients":
        steps, blur = options["steps"], options["baseline"] == "blur"
        sigma_px = BLUR_SIGMA * max(height, width)

        @tf.function(input_signature=spec, reduce_retracing=True)
        def step(images, class_ids):
            n = tf.shape(images)[0]
            baseline = gaussian_blur(images, sigma_px) if blur else tf.zeros_like(images)
            delta = images - baseline
            score_x, probabilities = scores(images, class_ids)
            score_baseline, _ = scores(baseline, class_ids)

            def contribution(step_ids):
                # Riemann midpoint rule: alpha_k = (k + 1/2) / m, error O(1/m^2) for smooth scores
                alphas = (tf.cast(step_ids, tf.float32) + 0.5) / float(steps)
                group = tf.shape(step_ids)[0]
                path = baseline[None] + alphas[:, None, None, None, None] * delta[None]  # [g, n, H, W, C]
                grads, _, _ = gradients(tf.reshape(path, [-1, height, width, channels]), tf.tile(class_ids, [group]))
                return tf.reduce_sum(tf.reshape(grads, [group, n, height, width, channels]), axis=0)

            attribution = delta * over_groups(steps, n, contribution, tf.zeros_like(images)) / float(steps)
            signed = tf.reduce_sum(attribution, axis=-1)
            maps = tf.nn.relu(signed)  # positive evidence only; completeness concerns the signed sum
            difference = score_x - score_baseline
            gap = tf.reduce_sum(signed, axis=(1, 2)) - difference
            magnitude = tf.abs(difference)
            relative = tf.where(
                magnitude > 0,
                gap / tf.where(magnitude > 0, magnitude, 1.0),
                tf.where(gap == 0, 0.0, float("inf")),
            )
            return maps, maps, probabilities, {"completeness_gap": gap, "completeness_relative": relative}

        return step

    if name == "occlusion":
        geometry = occlusion_geometry((height, width), options["patch"], options["stride"])
        starts_y = tf.constant(np.repeat(geometry["starts_y"], len(geometry["starts_x"])), tf.int32)
        starts_x = tf.constant(np.tile(geometry["starts_x"], len(geometry["starts_y"])), tf.int32)
        positions = len(geometry["starts_y"]) * len(geometry["starts_x"])
        patch_h, patch_w = geometry["patch"]
        coverage = tf.constant(geometry["coverage"], tf.float32)

        @tf.function(input_signature=spec, reduce_retracing=True)
        def step(images, class_ids):
            n = tf.shape(images)[0]
            score_x, probabilities = scores(images, class_ids)
            grey = tf.reduce_mean(images, axis=(1, 2, 3))  # one value per image, the same in every channel

            def contribution(position_ids):
                group = tf.shape(position_ids)[0]
                y0 = tf.gather(starts_y, position_ids)[:, None]
                x0 = tf.gather(starts_x, position_ids)[:, None]
                rows_in = (tf.range(height)[None] >= y0) & (tf.range(height)[None] < y0 + patch_h)  # [g, H]
                cols_in = (tf.range(width)[None] >= x0) & (tf.range(width)[None] < x0 + patch_w)  # [g, W]
                inside = rows_in[:, :, None] & cols_in[:, None, :]  # [g, H, W]
                occluded = tf.where(
                    inside[:, None, :, :, None], grey[None, :, None, None, None], images[None]
                )  # [g, n, H, W, C]
                score_occluded, _ = scores(
                    tf.reshape(occluded, [-1, height, width, channels]), tf.tile(class_ids, [group])
                )
                drop = score_x[None] - tf.reshape(score_occluded, [group, n])  # [g, n]
                return tf.einsum("gn,ghw->nhw", drop, tf.cast(inside, tf.float32))

            total = over_groups(positions, n, contribution, tf.zeros_like(images[..., 0]))
            maps = tf.nn.relu(total / coverage)  # mean drop of the patches covering each pixel
            return maps, maps, probabilities, {}

        return step

    raise UsageError(f"method {name!r} is not a pixel attribution")


def validate_options(name: str, options: dict) -> dict:
    """The options as plain Python numbers, or a UsageError naming the bad one (before anything is traced)."""
    options = dict(options)
    if name == "smoothgrad":
        options["samples"] = _integer(name, "samples", options["samples"], minimum=1)
        options["noise"] = _number(name, "noise", options["noise"])
        if options["noise"] < 0:
            raise UsageError(f"{name} option 'noise' must be >= 0, got {options['noise']}")
    elif name == "integrated_gradients":
        options["steps"] = _integer(name, "steps", options["steps"], minimum=1)
        if options["baseline"] not in BASELINES:
            raise UsageError(
                f"{name} option 'baseline' must be one of {', '.join(BASELINES)}, got {options['baseline']!r}"
            )
    elif name == "occlusion":
        for key in ("patch", "stride"):
            options[key] = _number(name, key, options[key])
            if not 0 < options[key] <= 1:
                raise UsageError(
                    f"{name} option {key!r} is a fraction of the image side: 0 < {key} <= 1, got {options[key]}"
                )
        if options["stride"] > options["patch"]:
            raise UsageError(
                f"{name} option 'stride' ({options['stride']}) is larger than 'patch' ({options['patch']}): "
                "pixels between patches would never be occluded and would read as no evidence"
            )
    return options


def _integer(method: str, key: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{method} option {key!r} must be an integer, got {value!r}")
    if value < minimum:
        raise UsageError(f"{method} option {key!r} must be >= {minimum}, got {value}")
    return int(value)


def _number(method: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(f"{method} option {key!r} must be a finite number, got {value!r}")
    return float(value)


def _pixels(fraction: float, side: int) -> int:
    return max(1, int(math.floor(fraction * side + 0.5)))


def patch_starts(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one axis: every ``stride`` px, plus a last patch flush with the far edge so
    that every pixel is occluded at least once."""
    last = size - patch
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def occlusion_geometry(input_size: tuple[int, int], patch: float, stride: float) -> dict:
    """Occlusion patches in pixels: side ``patch`` x max(H, W) (clipped to each axis), stride ``stride`` x
    max(H, W), both rounded and at least 1 px; ``coverage`` [H, W] counts the patches covering each pixel."""
    height, width = input_size
    side = max(height, width)
    patch_px, stride_px = _pixels(patch, side), _pixels(stride, side)
    patch_h, patch_w = min(patch_px, height), min(patch_px, width)
    starts_y, starts_x = patch_starts(height, patch_h, stride_px), patch_starts(width, patch_w, stride_px)
    cover_y, cover_x = np.zeros(height), np.zeros(width)
    for y0 in starts_y:
        cover_y[y0 : y0 + patch_h] += 1
    for x0 in starts_x:
        cover_x[x0 : x0 + patch_w] += 1
    return {
        "patch": (patch_h, patch_w),
        "stride": stride_px,
        "starts_y": starts_y,
        "starts_x": starts_x,
        "coverage": np.outer(cover_y, cover_x).astype(np.float32),
    }


def gaussian_blur(images, sigma: float):
    """Separable Gaussian blur of [n, H, W, C] with symmetric edges (a constant image stays constant)."""
    channels = images.shape[-1]
    radius = max(1, int(math.ceil(3.0 * sigma)))
    out = images
    for axis, size in ((1, images.shape[1]), (2, images.shape[2])):
        r = min(radius, int(size))
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma, 1e-6)) ** 2)
        taps = (taps / taps.sum()).astype(np.float32)
        shape = [2 * r + 1, 1] if axis == 1 else [1, 2 * r + 1]
        kernel = tf.constant(np.tile(taps.reshape(shape + [1, 1]), [1, 1, channels, 1]))
        padding = [[0, 0], [r, r], [0, 0], [0, 0]] if axis == 1 else [[0, 0], [0, 0], [r, r], [0, 0]]
        out = tf.nn.depthwise_conv2d(tf.pad(out, padding, mode="SYMMETRIC"), kernel, [1, 1, 1, 1], "VALID")
    return out


__all__ = ["BASELINES", "BLUR_SIGMA", "SMOOTHGRAD_SEED", "build_step", "gaussian_blur", "occlusion_geometry",
           "patch_starts", "validate_options"]
