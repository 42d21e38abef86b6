"""Forward passes only: class probabilities for a batch, as the explainer computes them.

The counterfactual and faithfulness probes call the model hundreds of times per audit; they need the same
probabilities the explainer reports (one head definition: :func:`~validator.explain.engine.head_outputs`),
without the backward pass.
"""

from __future__ import annotations

import numpy as np

from validator._tf import keras, tf
from validator.errors import UsageError
from validator.explain.engine import head_outputs
from validator.layer_patch import bypass_head
from validator.model import LoadedModel, load_model


class Predictor:
    """``predictor(images) -> probabilities float32 [N, classes]``, traced once, in chunks of ``batch_size``."""

    def __init__(self, model, batch_size: int = 64):
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        self.loaded: LoadedModel = load_model(model)
        self.batch_size = int(batch_size)
        self.calls = 0  # rows seen, for cost reports
        loaded = self.loaded
        height, width = loaded.input_size
        spec = tf.TensorSpec([None, height, width, loaded.channels], tf.float32)
        head_layer = loaded.head_layer if loaded.head_bypass else None
        to_probabilities = head_outputs(loaded)

        @tf.function(input_signature=[spec], reduce_retracing=True)
        def forward(images):
            # the same path as the explainer: a bypassable soft head is switched off, then re-applied once
            with bypass_head(head_layer, keras):
                outputs = loaded.model(images, training=False)
            return to_probabilities(tf.cast(outputs, tf.float32))[1]

        self._forward = forward

    def __call__(self, images) -> np.ndarray:
        images = np.asarray(images, dtype=np.float32)
        height, width = self.loaded.input_size
        expected = (height, width, self.loaded.channels)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise UsageError(f"images have shape {images.shape}; the model expects [N, {height}, {width}, "
                             f"{expected[2]}]")
        self.calls += len(images)
        parts = [self._forward(tf.constant(images[i:i + self.batch_size])).numpy()
                 for i in range(0, len(images), self.batch_size)]
        if not parts:
            return np.zeros((0, self.loaded.num_classes), np.float32)
        return np.concatenate(parts)
