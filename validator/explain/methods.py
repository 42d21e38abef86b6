"""The heatmap methods. A CAM-family method only says how it combines activations A and gradients G into a
layer map (pytorch-grad-cam's template); the other families (Score-CAM, pixel attributions) build their own batched step in their module (``validator.explain.<family>``), behind the same
:class:`~validator.explain.engine.Explainer`.

Shapes: A, G are [N, h, w, K] (channels last); the result is [N, h, w] before the ReLU that the engine applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from validator._tf import tf
from validator.explain.names import METHOD_NAMES, METHOD_OPTIONS

EPS = 1e-7


@dataclass(frozen=True)
class Method:
    name: str
    needs_gradient: bool
    description: str
    family: str = "cam"  # "cam" (this module's combine) or the module validator.explain.<family> that builds the step
    needs_layer: bool = True  # explains a target layer (False: attributions on the input pixels)
    cost: str = "1 forward + 1 backward pass per image"
    defaults: dict = field(default_factory=dict)  # the method's options and their defaults

    def combine(self, activations, gradients, cam_weights=None):
        raise NotImplementedError(f"method {self.name!r} ({self.family}) builds its own step")


class GradCAM(Method):
    def combine(self, activations, gradients, cam_weights=None):
        # alpha_k = spatial mean of dy/dA^k (Selvaraju et al. 2017)
        alpha = tf.reduce_mean(gradients, axis=(1, 2))
        return tf.einsum("nhwk,nk->nhw", activations, alpha)


class GradCAMPlusPlus(Method):
    def combine(self, activations, gradients, cam_weights=None):
        # Chattopadhyay et al. 2018, closed form with the exponential-score trick (as pytorch-grad-cam).
        g2 = tf.square(gradients)
        g3 = g2 * gradients
        sum_a = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + sum_a * g3 + EPS)
        alpha = tf.where(gradients != 0.0, alpha, tf.zeros_like(alpha))
        weights = tf.reduce_sum(tf.nn.relu(gradients) * alpha, axis=(1, 2))
        return tf.einsum("nhwk,nk->nhw", activations, weights)


class HiResCAM(Method):
    def combine(self, activations, gradients, cam_weights=None):
        # Element-wise gradient x activation (Draelos & Carin 2020): faithful for GAP heads.
        return tf.reduce_sum(gradients * activations, axis=-1)


class LayerCAM(Method):
    def combine(self, activations, gradients, cam_weights=None):
        # Jiang et al. 2021: each location weighted by its own positive gradient, sum_k ReLU(G^k) * A^k; on a GAP
        # head whose gradients are positive and spatially constant it is Grad-CAM up to a positive scale.
        return tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1)


class CAM(Method):
    def combine(self, activations, gradients, cam_weights=None):
        # cam_weights: [N, K], the Dense kernel column of each sample's class (Zhou et al. 2016).
        return tf.einsum("nhwk,nk->nhw", activations, cam_weights)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        GradCAM("gradcam", True, "Grad-CAM: channels weighted by their mean gradient"),
        GradCAMPlusPlus("gradcampp", True, "Grad-CAM++: higher-order weighting of positive gradients"),
        HiResCAM("hirescam", True, "HiResCAM: element-wise gradient x activation"),
        CAM("cam", False, "CAM: channels weighted by the GAP->Dense kernel (no gradient)",
            cost="1 forward pass per image"),
        LayerCAM("layercam", True, "LayerCAM: each location weighted by its positive gradient; fine on early layers"),
        Method("scorecam", False, "Score-CAM: channels weighted by the class score of the input masked by each",
               family="scorecam",
               cost="1 + min(K, max_channels) forward passes per image (all K channels if max_channels is null or "
                    "0), plus 1 per batch for the all-zero baseline",
               defaults=METHOD_OPTIONS["scorecam"]),
        Method("saliency", True, "Vanilla saliency: |dy/dx|, max over colour channels", family="pixel",
               needs_layer=False),
        Method("smoothgrad", True, "SmoothGrad: |mean gradient| over noisy copies", family="pixel", needs_layer=False,
               cost="1 + samples forward + samples backward passes per image (the 1: the clean image's prediction)",
               defaults=METHOD_OPTIONS["smoothgrad"]),
        Method("integrated_gradients", True, "Integrated Gradients from a baseline, with its completeness gap",
               family="pixel", needs_layer=False,
               cost="2 + steps forward + steps backward passes per image (the 2: the image and its baseline, for "
                    "the prediction and the completeness gap)",
               defaults=METHOD_OPTIONS["integrated_gradients"]),
        Method("occlusion", False, "Occlusion: class-score drop when a patch is greyed out", family="pixel",
               needs_layer=False, cost="1 + (patch positions) forward passes per image",
               defaults=METHOD_OPTIONS["occlusion"]),
        Method("augmented_gradcam", True, "Augmented Grad-CAM: TV-regularised super-resolution of the Grad-CAMs of "
               "rotated and shifted views (Morbidelli et al. 2020)", family="augmented",
               cost="views forward + views backward passes per image (view 0 is the image), plus the solver: steps "
                    "iterations of 2 sparse products on the high-res maps per batch",
               defaults=METHOD_OPTIONS["augmented_gradcam"]),
    )
}
if tuple(METHODS) != METHOD_NAMES:  # the shared list and the implementations must not drift apart
    raise ImportError(f"validator.explain.names.METHOD_NAMES {METHOD_NAMES} != implemented {tuple(METHODS)}")
