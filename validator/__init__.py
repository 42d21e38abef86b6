"""camgate: a deploy gate for image classifiers that refuses a model right for the wrong reasons.

Public API (stable): ``load_model``, ``heatmaps``, ``audit``, ``merge`` (shard audits judged once). TensorFlow is imported lazily so that
``import validator`` and the pure-numpy parts (metrics, stats, policy) stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("camgate")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

__all__ = ["__version__", "load_model", "heatmaps", "audit", "merge"]


def __getattr__(name: str):
    if name == "load_model":
        from validator.model import load_model

        return load_model
    if name == "heatmaps":
        from validator.explain import heatmaps

        return heatmaps
    if name == "audit":
        from validator.gate import audit

        return audit
    if name == "merge":
        from validator.gate import merge

        return merge
    raise AttributeError(f"module 'validator' has no attribute {name!r}")
