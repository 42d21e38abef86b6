"""Heatmap engine: ``heatmaps(model, images, class_ids, method=...)`` and the reusable :class:`Explainer`."""

from validator.explain.engine import DeadMapWarning, Explainer, Explanation, heatmaps
from validator.explain.methods import METHODS

__all__ = ["METHODS", "DeadMapWarning", "Explainer", "Explanation", "heatmaps"]
