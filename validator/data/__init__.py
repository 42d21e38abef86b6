"""Held-out data: annotation readers (COCO, VOC, CSV), image decoding, preprocessing, sampling, batching.

TensorFlow is imported only by ``iter_batches`` (``validator.data.pipeline``), lazily.
"""

from __future__ import annotations

from validator.data.classes import check_num_classes, read_class_list
from validator.data.images import ImageReadError, read_image
from validator.data.loader import FORMATS, detect_format, load_dataset
from validator.data.preprocess import get_preprocess
from validator.data.records import DataIssue, Dataset, Sample
from validator.data.sampling import select_samples

__all__ = [
    "FORMATS",
    "Batch",
    "DataIssue",
    "Dataset",
    "ImageReadError",
    "Sample",
    "check_num_classes",
    "detect_format",
    "get_preprocess",
    "iter_batches",
    "load_dataset",
    "read_class_list",
    "read_image",
    "select_samples",
]


def __getattr__(name: str):
    if name in ("iter_batches", "Batch"):
        from validator.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'validator.data' has no attribute {name!r}")
