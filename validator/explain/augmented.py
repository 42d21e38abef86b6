"""Augmented Grad-CAM (Morbidelli et al. 2020): a higher-resolution map from the Grad-CAMs of warped views.

Each image is seen through L views (view 0 the image itself; views 1..L-1 rotated by theta_l ~ U(-rotation,
rotation) rad about the centre and shifted by t_l ~ U(-translation, translation) x side). A coarse Grad-CAM
g_l is taken of every view at the target layer's grid (h, w), and an unknown map h on a grid ``upscale``
times finer, in the original frame, is solved for:

    argmin_h  sum_l ||D(A_l h) - g_l||^2 + tv * L * TV(h) + l2 * L * ||h||^2,   h >= 0

A_l warps h by view l's transform (bilinear; the views are made with the same sampler at input resolution,
coordinates in input pixels, so image and heat move together) and D average-pools by ``upscale``. Where a
view looks past the frame it is filled by reflection (``fill="reflect"``, the default; ``"zeros"`` is the
authors' black padding) in the image and in h alike: black wedges and bands are out of distribution for a
classifier trained without them (measured on the shapes control, 16 views: the true class's mean
probability over shifted-only views 0.53 with zeros, 0.95 with reflection; agreement of each view's
Grad-CAM with the warped plain Grad-CAM, corr. 0.53 vs 0.91). TV is anisotropic (sum of |forward differences|). ``tv`` and ``l2`` are per view: the weights
used are tv * L and l2 * L (DESIGN's reference: L = 100, lambda_TV = 0.002 L, mu = 1e-4 L), so the balance
with the data term, a sum over L views, does not change with L. The seed's 1/2 factors are not used (as in
the authors' code). The solver is projected Adam (``steps`` at ``learning_rate``, h clipped to >= 0 after
every step: the problem stays convex and the learning rate stays in map units, which a softplus
parametrisation would not keep) run for all images of a chunk at once; Adam is element-wise and the loss
is a sum of per-image terms, so a batch gives the maps of its images explained one by one.

Scale: each image's g_l are divided by their common max (over all views and positions) before solving and
the solution is multiplied back, so the reference learning rate sees maps of order 1 and the map keeps
Grad-CAM's scale and mass (the authors' code divides each view by its own max, which reweights the views;
min-max per view would also change the inside/outside mass). Start: h = the identity view's map upsampled
bilinearly, i.e. plain Grad-CAM at the high-res grid (the authors start from 0; Adam moves each value by
about ``learning_rate`` per step, so 200 steps at 1e-3 from 0 would cap the map near 0.2 and flatten it).
With the reference settings the solver is therefore a bounded refinement of Grad-CAM (``extras["residual"]``
says how far from the data it ended).

The transforms are drawn once per explainer from a fixed seed (:data:`AUGMENTED_SEED`) and shared by all
images: reruns are identical and a map does not depend on the batch it came in.
"""

from __future__ import annotations

import numbers

import numpy as np

from validator._tf import tf
from validator.errors import UsageError
from validator.explain.names import OPTION_CHOICES

#: The views' transforms come from ``np.random.default_rng(AUGMENTED_SEED)``: reproducible audits.
AUGMENTED_SEED = 2020
#: Adam's moments as in the reference code (TF1 ``AdamOptimizer`` defaults).
BETA1, BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8
#: How a view is filled where it looks past the image (the same for the image and for the map h).
FILLS = OPTION_CHOICES["augmented_gradcam"]["fill"]
# The options and their defaults are the method table's (validator.explain.names.METHOD_OPTIONS): ``tv`` and
# ``l2`` per view, ``translation`` a fraction of the side, ``rotation`` in radians.

_INTS = ("views", "steps", "upscale")
_POSITIVE = ("views", "upscale", "learning_rate")


def validate_options(options: dict) -> dict:
    """The options (the table's defaults updated with the caller's) as numbers and a fill, refusing nonsense
    early (a negative weight would reward noise)."""
    options = dict(options)
    fill = options.pop("fill", FILLS[0])
    if fill not in FILLS:
        raise UsageError(f"augmented_gradcam option 'fill' must be one of {', '.join(FILLS)}, got {fill!r}")
    out = {"fill": fill}
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise UsageError(f"augmented_gradcam option {key!r} must be a finite number, got {value!r}")
        if key in _INTS and int(value) != value:
            raise UsageError(f"augmented_gradcam option {key!r} must be an integer, got {value!r}")
        if value < 0 or (key in _POSITIVE and value <= 0):
            raise UsageError(f"augmented_gradcam option {key!r} must be {'> 0' if key in _POSITIVE else '>= 0'}, "
                             f"got {value!r}")
        out[key] = int(value) if key in _INTS else float(value)
    return out


def view_transforms(views: int, rotation: float, translation: float, seed: int = AUGMENTED_SEED):
    """(theta [L] rad, shift [L, 2] as (x, y) fractions of the width/height); view 0 is the identity."""
    rng = np.random.default_rng(seed)
    theta = rng.uniform(-rotation, rotation, views) if rotation > 0 else np.zeros(views)
    shift = rng.uniform(-translation, translation, (views, 2)) if translation > 0 else np.zeros((views, 2))
    theta[0], shift[0] = 0.0, 0.0
    return theta.astype(np.float64), shift.astype(np.float64)


def sampling_taps(theta, shift, grid_hw, input_hw, fill: str = "reflect"):
    """Bilinear taps of each view on a (gh, gw) grid: (indices int32 [L, gh*gw, 4], weights float32 [L, gh*gw, 4]).

    Coordinates are input pixels about the image centre, so a transform means the same motion on every grid
    (the input, the layer's grid, the high-res grid). Output pixel p of view l reads the source at
    T_l^-1(p) = R(-theta_l)(p - t_l). Past the frame, ``fill="reflect"`` mirrors about the frame's edges (the
    same physical edges on every grid) and ``"zeros"`` gives weight 0 (the authors' zero padding)."""
    gh, gw = grid_hw
    height, width = input_hw
    sy, sx = height / gh, width / gw  # input pixels per grid cell
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    # offsets from the grid centre in cells (exact: integers minus half-integers), so the identity is exact
    cy, cx = (gh - 1) / 2.0, (gw - 1) / 2.0
    dc = (cols.ravel() - cx)[None, :] - (shift[:, 0] * width / sx)[:, None]
    dr = (rows.ravel() - cy)[None, :] - (shift[:, 1] * height / sy)[:, None]
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    # R(-theta) acts on input pixels: in cells it is S^-1 R(-theta) S with S = diag(sx, sy)
    col = cos * dc + sin * (sy / sx) * dr + cx
    row = -sin * (sx / sy) * dc + cos * dr + cy
    if fill == "reflect":  # half-sample symmetric: the picture continues as its mirror image
        col, row = _reflect(col, gw), _reflect(row, gh)
    elif fill != "zeros":
        raise ValueError(f"unknown fill {fill!r}")
    c0, r0 = np.floor(col), np.floor(row)
    fc, fr = col - c0, row - r0
    indices, weights = [], []
    for oy, ox, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        r, c = r0 + oy, c0 + ox
        if fill == "reflect":  # a tap half a cell past the edge reads the edge cell (its own mirror)
            r, c = np.clip(r, 0, gh - 1), np.clip(c, 0, gw - 1)
        inside = (r >= 0) & (r < gh) & (c >= 0) & (c < gw)
        indices.append(np.where(inside, r * gw + c, 0).astype(np.int32))
        weights.append(np.where(inside, w, 0.0).astype(np.float32))
    return np.stack(indices, axis=-1), np.stack(weights, axis=-1)


def _reflect(coordinate, size: int):
    """Fold a cell coordinate into [-0.5, size - 0.5] by mirroring about the grid's outer edges."""
    period = 2.0 * size
    folded = np.mod(coordinate + 0.5, period)
    return np.where(folded >= size, period - folded, folded) - 0.5


def warp(values, indices, weights):
    """values [n, P, C] on a grid -> every view of it [n, L, P, C] (differentiable in ``values``)."""
    taps = tf.gather(values, indices, axis=1)  # [n, L, P, 4, C]
    return tf.reduce_sum(taps * weights[None, ..., None], axis=3)


def view_operator(indices, weights, grid_hw, upscale: int) -> tf.SparseTensor:
    """D A_l for all views as one sparse matrix [L*h*w, H'*W'] (H' = h*upscale): warp, then average-pool.

    One sparse product per solver step (and its transpose for the gradient) instead of gathering and
    scattering n*L*H'*W'*4 taps: the operator does not depend on the image, so it is built once."""
    gh, gw = grid_hw
    low_h, low_w = gh // upscale, gw // upscale
    views, pixels = indices.shape[0], gh * gw
    rows, cols = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    low = ((rows // upscale) * low_w + cols // upscale).ravel()  # the coarse cell each fine pixel pools into
    out = (np.arange(views)[:, None] * (low_h * low_w) + low[None, :])[..., None]  # [L, P, 1]
    keys = (np.broadcast_to(out, indices.shape).astype(np.int64) * pixels + indices).ravel()
    values = (weights / float(upscale * upscale)).ravel().astype(np.float64)
    keep = values != 0
    unique, inverse = np.unique(keys[keep], return_inverse=True)  # merge repeated (row, column) taps
    summed = np.bincount(inverse, weights=values[keep], minlength=len(unique)).astype(np.float32)
    coords = np.stack([unique // pixels, unique % pixels], axis=1)
    return tf.SparseTensor(coords, summed, (views * low_h * low_w, pixels))


def apply_operator(operator, h_hr, views: int, low_hw):
    """D(A_l h) for a batch: h [n, H', W'] -> [n, L, h, w] (one sparse-dense product)."""
    n = tf.shape(h_hr)[0]
    flat = tf.transpose(tf.reshape(h_hr, (n, -1)))  # [P, n]
    out = tf.sparse.sparse_dense_matmul(operator, flat)  # [L*h*w, n]
    return tf.reshape(tf.transpose(out), (n, views, low_hw[0], low_hw[1]))


def forward_model(h_hr, indices, weights, upscale: int):
    """D(A_l h): the high-res maps [n, H', W'] warped by each view and average-pooled -> [n, L, H'/u, W'/u]."""
    gh, gw = int(h_hr.shape[1]), int(h_hr.shape[2])
    operator = view_operator(np.asarray(indices), np.asarray(weights), (gh, gw), upscale)
    return apply_operator(operator, h_hr, int(indices.shape[0]), (gh // upscale, gw // upscale))


def total_variation(h):
    """Anisotropic TV per image: sum of |forward differences| along rows and columns -> [n]."""
    return (tf.reduce_sum(tf.abs(h[:, 1:, :] - h[:, :-1, :]), axis=(1, 2))
            + tf.reduce_sum(tf.abs(h[:, :, 1:] - h[:, :, :-1]), axis=(1, 2)))


def make_solver(indices, weights, grid_hw, upscale: int, steps: int, learning_rate: float, tv: float, l2: float):
    """``solve(g [n, L, h, w], init [n, h*u, w*u]) -> (h >= 0, relative residual [n])``: projected Adam on the
    regularised least squares, ``grid_hw`` = (h*u, w*u).

    ``tv`` and ``l2`` are the total weights (already multiplied by L). Projection (clip at 0 after each step)
    rather than a softplus parametrisation keeps the problem convex and ``learning_rate`` in map units."""
    views = int(indices.shape[0])
    low_hw = (grid_hw[0] // upscale, grid_hw[1] // upscale)
    operator = view_operator(np.asarray(indices), np.asarray(weights), grid_hw, upscale)
    lr = tf.constant(learning_rate, tf.float32)

    def forward(h):
        return apply_operator(operator, h, views, low_hw)

    def loss(h, g):
        residual = forward(h) - g
        per_image = (tf.reduce_sum(tf.square(residual), axis=(1, 2, 3)) + tv * total_variation(h)
                     + l2 * tf.reduce_sum(tf.square(h), axis=(1, 2)))
        return tf.reduce_sum(per_image)  # a sum of independent per-image terms: batching changes nothing

    @tf.function(reduce_retracing=True)
    def solve(g, init):
        def body(t, h, m, v):
            with tf.GradientTape() as tape:
                tape.watch(h)
                value = loss(h, g)
            grad = tape.gradient(value, h)
            t1 = tf.cast(t + 1, tf.float32)
            m = BETA1 * m + (1 - BETA1) * grad
            v = BETA2 * v + (1 - BETA2) * tf.square(grad)
            step = lr * (m / (1 - BETA1**t1)) / (tf.sqrt(v / (1 - BETA2**t1)) + ADAM_EPSILON)
            return t + 1, tf.nn.relu(h - step), m, v  # project onto h >= 0 after every step

        zeros = tf.zeros_like(init)
        h = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), tf.nn.relu(init), zeros, zeros))[1]
        misfit = tf.norm(tf.reshape(forward(h) - g, (tf.shape(g)[0], -1)), axis=1)
        size = tf.norm(tf.reshape(g, (tf.shape(g)[0], -1)), axis=1)
        return h, tf.where(size > 0, misfit / tf.where(size > 0, size, 1.0), 0.0)

    return solve


def _inner_gradcam(explainer):
    """A Grad-CAM explainer on the same model, layer and head: the views' coarse maps g_l are its layer maps."""
    from validator.explain.engine import Explainer

    inner = Explainer(explainer.loaded, method="gradcam", layer=explainer.target.name,
                      batch_size=explainer.batch_size)
    if inner.target is not explainer.target:  # two layers share the name (nested models): use the very layer
        inner.target = explainer.target
        inner._step = inner._build_step()
    return inner


def build_step(explainer):
    """``step(images, class_ids) -> (high-res maps [n, h*u, w*u], maps [n, H, W], probabilities, extras)``.

    The coarse maps come from an inner Grad-CAM :class:`~validator.explain.engine.Explainer` (its
    ``layer_maps``, before upsampling), so head handling, nested models and token targets are Grad-CAM's own
    and the probabilities are Grad-CAM's (view 0 is the un-resampled image). Views are explained image by
    image (L rows per call, chunked by ``batch_size``: memory stays that of one Grad-CAM batch); the solver
    then runs on all images of the chunk at once. ``extras["residual"]`` is ||D(A h) - g|| / ||g|| per image."""
    options = validate_options(explainer.options)
    views, upscale = options["views"], options["upscale"]
    loaded = explainer.loaded
    height, width = loaded.input_size
    channels = loaded.channels
    inner = _inner_gradcam(explainer)
    probe = inner.explain(np.zeros((1, height, width, channels), np.float32), [0])
    gh, gw = (int(d) for d in probe.layer_maps.shape[1:])
    theta, shift = view_transforms(views, options["rotation"], options["translation"])
    fill = options["fill"]
    image_taps = [tf.constant(a) for a in sampling_taps(theta, shift, (height, width), (height, width), fill)]
    hr_taps = sampling_taps(theta, shift, (gh * upscale, gw * upscale), (height, width), fill)
    solve = make_solver(*hr_taps, (gh * upscale, gw * upscale), upscale, options["steps"], options["learning_rate"],
                        options["tv"] * views, options["l2"] * views)

    @tf.function(input_signature=[tf.TensorSpec([height, width, channels], tf.float32)])
    def make_views(image):
        """The L views of one image [L, H, W, C]; view 0 is the image itself (no resampling round-off)."""
        warped = warp(tf.reshape(image, (1, height * width, channels)), *image_taps)[0]
        warped = tf.reshape(warped, (views, height, width, channels))
        return tf.concat([image[None], warped[1:]], axis=0)

    def step(images, class_ids):
        images = tf.convert_to_tensor(images, tf.float32)
        ids = np.asarray(class_ids).astype(np.int32)
        n = int(images.shape[0])
        coarse = np.zeros((n, views, gh, gw), np.float32)
        probabilities = np.zeros((n, loaded.num_classes), np.float32)
        for i in range(n):
            result = inner.explain(make_views(images[i]).numpy(), np.full(views, ids[i], np.int32))
            coarse[i], probabilities[i] = result.layer_maps, result.probabilities[0]
        # one scale per image, the max over all its views: the solver's lr and weights assume maps of order 1
        scale = coarse.reshape(n, -1).max(axis=1) if n else np.zeros(0, np.float32)
        safe = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
        g = tf.constant(coarse / safe[:, None, None, None])
        init = tf.image.resize(g[:, 0, :, :, None], (gh * upscale, gw * upscale), method="bilinear")[..., 0]
        h_hr, residual = solve(g, init)
        h_hr = h_hr * tf.constant(safe)[:, None, None]
        maps = tf.nn.relu(tf.image.resize(h_hr[..., None], (height, width), method="bilinear")[..., 0])
        return h_hr, maps, tf.constant(probabilities), {"residual": residual}

    return step
