"""Vision transformers: a block's token sequence [N, T, D] is found as the target automatically, the class
token dropped and the patches reshaped to their grid (the reshape_transform users of CAM libraries get wrong)."""

from __future__ import annotations

import numpy as np
import pytest


def _vit(class_token: bool, seed: int = 0):
    """32x32 RGB -> 8x8 patches (4x4 grid) -> [class token] -> attention block -> LayerNorm -> pool -> Dense(3)."""
    from validator._tf import keras

    keras.utils.set_random_seed(seed)

    class ClassToken(keras.layers.Layer):
        def build(self, input_shape):
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="random_normal")

        def compute_output_shape(self, input_shape):  # older Keras cannot infer T + 1 through ops.tile
            return (input_shape[0], input_shape[1] + 1, input_shape[2])

        def call(self, x):
            batch = keras.ops.shape(x)[0]
            return keras.ops.concatenate([keras.ops.tile(self.token, [batch, 1, 1]), x], axis=1)

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 8, strides=8, name="patches")(inputs)  # [N, 4, 4, 16]
    x = keras.layers.Reshape((16, 16), name="tokens")(x)  # row-major patches: token r*4 + c
    if class_token:
        x = ClassToken(name="cls")(x)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    x = keras.layers.Add(name="residual")([x, attended])
    x = keras.layers.LayerNormalization(name="block_out")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(3, name="head")(x)
    return keras.Model(inputs, outputs, name="tiny_vit")


@pytest.mark.parametrize("class_token", [False, True])
def test_the_last_token_layer_is_found_and_explained_on_the_patch_grid(class_token, random_images):
    from validator._tf import keras, tf
    from validator.explain import Explainer
    from validator.model import find_target_layer

    model = _vit(class_token)
    assert find_target_layer(model).name == "block_out"  # after the 4-D patch embedding
    ids = np.array([0, 1, 2, 0, 1, 2])
    result = Explainer(model).explain(random_images, ids)
    assert result.layer_maps.shape == (6, 4, 4) and result.maps.shape == (6, 32, 32)

    # oracle: Grad-CAM by hand on the tokens, class token dropped, patches reshaped row-major
    probe = keras.Model(model.input, [model.get_layer("block_out").output, model.output])
    with tf.GradientTape() as tape:
        tokens, logits = probe(tf.constant(random_images))
        chosen = tf.gather(logits, ids, axis=1, batch_dims=1)
    grads = tape.gradient(chosen, tokens).numpy()
    tokens = tokens.numpy()
    start = 1 if class_token else 0
    a = tokens[:, start:].reshape(6, 4, 4, 16)
    g = grads[:, start:].reshape(6, 4, 4, 16)
    expected = np.maximum(np.einsum("nhwk,nk->nhw", a, g.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-4, atol=1e-6)


def test_a_square_1d_sequence_that_is_not_a_transformer_is_not_a_target():
    from validator._tf import keras
    from validator.errors import ModelUsageError
    from validator.model import find_target_layer

    inputs = keras.Input((16, 8))  # a 1-D signal of 16 steps: square, but no attention block
    x = keras.layers.Conv1D(4, 3, padding="same", name="conv1d")(inputs)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ModelUsageError, match="no convolutional feature map"):
        find_target_layer(model)
