"""Synthetic annotated data with controllable shortcuts, and the tiny control models trained on it.

``synthetic`` needs only numpy and OpenCV; ``controls`` (TensorFlow) is imported lazily.
"""

from validator.datasets.synthetic import (
    CUES,
    SHAPES,
    SyntheticArrays,
    SyntheticSet,
    make_arrays,
    shuffled_cue_strength,
    watermark_region,
    write_dataset,
)

__all__ = [
    "CUES",
    "SHAPES",
    "SyntheticArrays",
    "SyntheticSet",
    "make_arrays",
    "shuffled_cue_strength",
    "watermark_region",
    "write_dataset",
    "ControlModel",
    "train_control",
    "build_small_cnn",
]


def __getattr__(name: str):
    if name in {"ControlModel", "train_control", "build_small_cnn"}:
        from validator.datasets import controls

        return getattr(controls, name)
    raise AttributeError(f"module 'validator.datasets' has no attribute {name!r}")
