"""Heatmap engine: ``heatmaps(model, images, class_ids, method=...)`` and the reusable :class:`Explainer`.

Imported lazily: ``validator.explain.names`` (the method names) must not pull in TensorFlow.
"""

from validator.explain.names import METHOD_NAMES

__all__ = ["METHODS", "METHOD_NAMES", "DeadMapWarning", "Explainer", "Explanation", "cached_explainer", "heatmaps"]


def __getattr__(name: str):
    if name == "METHODS":
        from validator.explain.methods import METHODS

        return METHODS
    if name in {"DeadMapWarning", "Explainer", "Explanation", "cached_explainer", "heatmaps"}:
        from validator.explain import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'validator.explain' has no attribute {name!r}")
