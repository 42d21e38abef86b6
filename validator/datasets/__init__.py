"""Synthetic annotated data with controllable shortcuts, and the tiny control models trained on it.

Data families (numpy + OpenCV; digits also read scikit-learn's and scikit-image's bundled data):
``synthetic`` (64 px shapes), ``digits`` (real handwriting on real photographs, 10 or 20 classes) and
``xray`` (1-channel radiograph-like images). ``controls`` (TensorFlow) is imported lazily.
"""

from validator.datasets.digits import DigitArrays, make_digits, write_digits
from validator.datasets.synthetic import (
    CUES,
    MARK_CUES,
    SHAPES,
    SyntheticArrays,
    SyntheticSet,
    make_arrays,
    shuffled_cue_strength,
    watermark_region,
    write_arrays,
    write_dataset,
)
from validator.datasets.xray import XrayArrays, make_xray, write_xray

__all__ = [
    "CUES",
    "MARK_CUES",
    "SHAPES",
    "DigitArrays",
    "SyntheticArrays",
    "SyntheticSet",
    "XrayArrays",
    "make_arrays",
    "make_digits",
    "make_xray",
    "shuffled_cue_strength",
    "watermark_region",
    "write_arrays",
    "write_dataset",
    "write_digits",
    "write_xray",
    "ControlModel",
    "train_control",
    "build_small_cnn",
]


def __getattr__(name: str):
    if name in {"ControlModel", "train_control", "build_small_cnn"}:
        from validator.datasets import controls

        return getattr(controls, name)
    raise AttributeError(f"module 'validator.datasets' has no attribute {name!r}")
