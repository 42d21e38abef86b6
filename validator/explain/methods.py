"""CAM-family methods. Each one only says how it combines activations A and gradients G into a layer map.

Shapes: A, G are [N, h, w, K] (channels last); the result is [N, h, w] before the ReLU that the engine applies.
"""

from __future__ import annotations

from dataclasses import dataclass

from validator._tf import tf
from validator.explain.names import METHOD_NAMES

EPS = 1e-7


@dataclass(frozen=True)
class Method:
    name: str
    needs_gradient: bool
    description: str

    def combine(self, activations, gradients, cam_weights=None):
        raise NotImplementedError


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
        CAM("cam", False, "CAM: channels weighted by the GAP->Dense kernel (no gradient)"),
    )
}
if tuple(METHODS) != METHOD_NAMES:  # the shared list and the implementations must not drift apart
    raise ImportError(f"validator.explain.names.METHOD_NAMES {METHOD_NAMES} != implemented {tuple(METHODS)}")
