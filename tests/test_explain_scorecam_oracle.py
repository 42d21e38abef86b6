"""Score-CAM against an independent eager implementation: per image, per channel, one masked forward pass."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model


def _oracle(model, images, class_ids, keep=None):
    from validator._tf import keras, tf

    feat = keras.Model(model.input, model.get_layer("feat").output)
    maps = []
    for x, c in zip(images, class_ids, strict=True):
        a = feat(x[None]).numpy()[0]  # [h, w, K]
        p_base = model(np.zeros_like(x)[None]).numpy()[0, c]
        channels = range(a.shape[-1]) if keep is None else np.argsort(-a.reshape(-1, a.shape[-1]).max(0))[:keep]
        weights = np.zeros(a.shape[-1])
        for k in channels:
            up = tf.image.resize(a[None, :, :, k:k + 1], x.shape[:2], method="bilinear").numpy()[0, :, :, 0]
            lo, hi = up.min(), up.max()
            mask = (up - lo) / (hi - lo) if hi > lo else np.zeros_like(up)
            weights[k] = model((x * mask[..., None])[None]).numpy()[0, c] - p_base
        maps.append(np.maximum(np.einsum("hwk,k->hw", a, weights), 0))
    return np.stack(maps)


@pytest.mark.parametrize("cap", [None, 3])
def test_batched_score_cam_matches_the_per_channel_oracle(cap, random_images):
    from validator.explain import Explainer

    model = build_gap_model()  # softmax head: the oracle reads its probabilities directly
    ids = np.array([0, 1, 2, 0, 1, 2])
    options = {"max_channels": cap} if cap else {"max_channels": 0}
    result = Explainer(model, method="scorecam", options=options).explain(random_images, ids)
    np.testing.assert_allclose(result.layer_maps, _oracle(model, random_images, ids, keep=cap), rtol=1e-3, atol=1e-6)
    alone = np.concatenate([Explainer(model, method="scorecam", options=options)
                            .explain(random_images[i:i + 1], ids[i:i + 1]).maps for i in range(6)])
    np.testing.assert_allclose(result.maps, alone, rtol=1e-4, atol=1e-7)
    assert result.maps.shape == (6, 32, 32) and (result.maps >= 0).all()
    np.testing.assert_allclose(result.probabilities, Explainer(model).explain(random_images, ids).probabilities,
                               atol=1e-5)
