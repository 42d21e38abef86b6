"""Per-sample localisation metrics (pure numpy / cv2): heat vs annotated boxes, plus their metadata."""

from __future__ import annotations

from validator.metrics.geometry import box_mask
from validator.metrics.localisation import default_pointing_tolerance, largest_component_box, score_maps
from validator.metrics.registry import METRICS, MetricInfo, metric_info, region_info

__all__ = [
    "METRICS",
    "MetricInfo",
    "box_mask",
    "default_pointing_tolerance",
    "largest_component_box",
    "metric_info",
    "region_info",
    "score_maps",
]
