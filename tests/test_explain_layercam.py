"""LayerCAM (Jiang et al. 2021): on a GAP head its per-location gradient is the constant w_k / (h w), so with
non-negative class weights it is Grad-CAM exactly; with mixed signs it keeps only the positive channels."""

from __future__ import annotations

import numpy as np
from conftest import build_gap_model


def test_layercam_is_grad_cam_on_a_gap_head_with_non_negative_weights(random_images):
    from validator.explain import Explainer

    model = build_gap_model(activation=None)
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    head.set_weights([np.abs(kernel), bias])
    ids = np.arange(len(random_images)) % 3
    layercam = Explainer(model, method="layercam").explain(random_images, ids)
    gradcam = Explainer(model, method="gradcam").explain(random_images, ids)
    np.testing.assert_allclose(layercam.layer_maps, gradcam.layer_maps, rtol=1e-5, atol=1e-8)


def test_layercam_keeps_only_positively_weighted_channels(random_images):
    from validator._tf import keras
    from validator.explain import Explainer

    model = build_gap_model(activation=None)
    ids = np.arange(len(random_images)) % 3
    maps = Explainer(model, method="layercam").explain(random_images, ids).layer_maps
    a = keras.Model(model.input, model.get_layer("feat").output)(random_images).numpy()
    w = model.get_layer("head").get_weights()[0][:, ids].T / (a.shape[1] * a.shape[2])  # [n, K]
    expected = np.einsum("nhwk,nk->nhw", a, np.maximum(w, 0))
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-8)
