"""Score-CAM (Wang et al. 2020): channels weighted by how much the input they keep raises the class probability.

No gradient: a channel earns its weight from forward passes only, so a saturated softmax or a dead gradient
(the failure modes of Grad-CAM) does not silence it. The price is one forward pass per kept channel.

Per image x and class c, for each kept channel k of the target activations A [h, w, K]:

- ``H^k = s(Up(A^k))``: A^k upsampled bilinearly to the input size, min-max normalised to [0, 1] per image
  and channel (a constant channel gives an all-zero mask: it singles nothing out);
- ``w_k = p_c(x * H^k) - p_c(x_b)``: the paper's "increase of confidence" (its Definition 1, CIC), with the
  baseline ``x_b`` the all-zero input *in the model's input space* (what ``x * 0`` is: an image whose every
  channel is masked off; for a model with an embedded Rescaling it is not a mid-grey image). ``p_c`` is the
  probability of the explained class from :func:`~validator.explain.engine.head_outputs`: the softmax
  probability for softmax and logit heads (the paper), the sigmoid probability (1 - p for class 0) for a
  one-unit sigmoid head, the label's own probability for a multi-label head. The paper's later softmax over
  the channel scores is not applied: it makes every weight positive and sums them to 1, so channels that
  *lower* the confidence still add heat;
- the map is ``ReLU(sum_k w_k A^k)`` at the layer's resolution, then bilinear to the input size and clipped
  again. It is never min-max normalised (DESIGN 2: that changes the inside/outside mass ratio).

Channel cap (option ``max_channels``, default 64; None or 0: all K): when K is larger, each image keeps its
``max_channels`` channels with the largest spatial maximum and the others weigh 0. This is the cap of
Faster Score-CAM (Toshi 2020), which ranks by variance instead; the spatial max is what the min-max mask
reaches 1 at, and a channel whose maximum is 0 (a dead ReLU) masks the image to the baseline and would weigh 0
anyway.

Cost: 1 forward pass per image (activations and probabilities, hooked as the engine does), plus
min(K, max_channels) forward passes per image for the masked inputs, plus one for the baseline per batch.
The masked inputs of all images x channels of a batch go through the model in fixed chunks of
``CHUNK_FACTOR * batch_size`` rows (forward only: no activations are kept for a backward pass), built inside
the chunk so memory stays bounded by the chunk, not by images x channels.
"""

from __future__ import annotations

import numbers

from validator._tf import keras, tf
from validator.errors import ModelUsageError, UsageError
from validator.explain.engine import _hooks, head_outputs
from validator.layer_patch import bypass_head

#: Rows per masked forward pass, as a multiple of the explainer's batch size (a forward-only pass needs less
#: memory than the forward + backward pass the batch size was chosen for).
CHUNK_FACTOR = 2


def max_channels_option(value) -> int | None:
    """``max_channels`` as an int > 0, or None for all channels (None or 0); anything else is a UsageError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise UsageError(
            f"scorecam option max_channels must be an integer >= 0 or null (all channels), got {value!r}"
        )
    return int(value) or None


def build_step(explainer):
    """``step(images [n,H,W,C], class_ids [n]) -> (layer_maps [n,h,w], maps [n,H,W] >= 0, probabilities)``."""
    loaded, target, head_layer = explainer.loaded, explainer.target, explainer.head_layer
    cap = max_channels_option(explainer.options.get("max_channels"))
    chunk = CHUNK_FACTOR * explainer.batch_size
    height, width = loaded.input_size
    image_spec = tf.TensorSpec([None, height, width, loaded.channels], tf.float32)
    ids_spec = tf.TensorSpec([None], tf.int32)
    scores_and_probabilities = head_outputs(loaded)

    def probabilities(images):
        with bypass_head(head_layer, keras):
            outputs = loaded.model(images, training=False)
        return scores_and_probabilities(tf.cast(outputs, tf.float32))[1]

    @tf.function(input_signature=[image_spec], reduce_retracing=True)
    def record(images):
        """Target activations and probabilities of the images (one hooked pass), and the baseline's."""
        sink: list = []
        with _hooks(target, head_layer, sink, None):
            outputs = loaded.model(images, training=False)
        if not sink:
            raise ModelUsageError(
                f"the target layer '{target.name}' did not run when the model was called; choose a layer "
                "on the model's forward path (--layer)"
            )
        probs = scores_and_probabilities(tf.cast(outputs, tf.float32))[1]
        baseline = probabilities(tf.zeros([1, height, width, loaded.channels], tf.float32))[0]
        return tf.cast(sink[-1], tf.float32), probs, baseline

    @tf.function(
        input_signature=[image_spec, tf.TensorSpec([None, None, None, None], tf.float32), ids_spec, ids_spec,
                         ids_spec],
        reduce_retracing=True,
    )
    def masked_scores(images, activations, rows, channels, class_ids):
        """p_c(x * H^k) for the (image row, channel) pairs of one chunk; masks are built here, per chunk."""
        pairs = tf.stack([rows, channels], axis=1)
        low = tf.gather_nd(tf.transpose(activations, [0, 3, 1, 2]), pairs)  # [m, h, w]
        up = tf.image.resize(low[..., None], (height, width), method="bilinear")  # [m, H, W, 1]
        lowest = tf.reduce_min(up, axis=(1, 2, 3), keepdims=True)
        span = tf.reduce_max(up, axis=(1, 2, 3), keepdims=True) - lowest
        masks = tf.where(span > 0, (up - lowest) / tf.where(span > 0, span, 1.0), 0.0)
        probs = probabilities(tf.gather(images, rows) * masks)
        return tf.gather(probs, tf.gather(class_ids, rows), axis=1, batch_dims=1)

    def step(images, class_ids):
        activations, probs, baseline = record(images)
        n, k_all = int(activations.shape[0]), int(activations.shape[-1])
        kept = k_all if cap is None else min(cap, k_all)
        if kept < k_all:  # per image, the channels with the largest spatial maximum
            channels = tf.math.top_k(tf.reduce_max(activations, axis=(1, 2)), kept).indices
        else:
            channels = tf.tile(tf.range(k_all, dtype=tf.int32)[None], [n, 1])
        rows = tf.repeat(tf.range(n, dtype=tf.int32), kept)
        flat = tf.reshape(channels, [-1])
        scores = tf.concat(
            [masked_scores(images, activations, rows[s : s + chunk], flat[s : s + chunk], class_ids)
             for s in range(0, n * kept, chunk)],
            axis=0,
        )
        # the increase of confidence over the all-zero baseline
        weights = tf.reshape(scores, [n, kept]) - tf.gather(baseline, class_ids)[:, None]
        selected = tf.gather(activations, channels, axis=3, batch_dims=1)  # [n, h, w, kept]
        layer_maps = tf.nn.relu(tf.einsum("nhwk,nk->nhw", selected, weights))
        maps = tf.image.resize(layer_maps[..., None], (height, width), method="bilinear")[..., 0]
        return layer_maps, tf.nn.relu(maps), probs  # clip again after resampling

    step.record = record  # the traced functions, for tests (each traces once)
    step.masked_scores = masked_scores
    return step


__all__ = ["CHUNK_FACTOR", "build_step", "max_channels_option"]
