"""Score a batch where its maps are made: on the accelerator, the maps never come back to the host.

On a GPU, scoring each map with NumPy (~500 maps/s on one core) would throttle an explainer that makes
thousands per second. Here the explainer's step, the box scores (:class:`validator.metrics.device.DeviceScorer`),
the centre share and the discovery grid maps run on the device; the host receives per-sample numbers, the
16 x 16 grid maps and, gathered on the device, only the few maps the faithfulness probe asks for.

Parity with the host path (``--score-on host``): the discrete columns (dead, hits, IoU, rank accuracy) are
equal (``ring_one_sided`` too, unless its lift lies within rounding of its threshold); heat sums differ by
summation order only (float64: ~1e-15 relative); see validator.metrics.device.
Grid maps are block sums when the grid divides the map size (224 px / 16, 64 px / 16: the same rule as
``atlas.downsample``); otherwise the maps are brought back and downsampled on the host.
"""

from __future__ import annotations

import numpy as np

from validator._tf import tf
from validator.explain.engine import Explanation
from validator.metrics.device import DeviceScorer, pad_for_device
from validator.metrics.geometry import rect_masks

SCORE_ON = ("auto", "host", "device")


def resolve(score_on: str) -> str:
    """``auto``: device where TensorFlow sees a GPU, host otherwise (on a CPU the NumPy scorer is as fast)."""
    if score_on not in SCORE_ON:
        from validator.errors import UsageError

        raise UsageError(f"--score-on must be one of {', '.join(SCORE_ON)}, got {score_on!r}")
    if score_on == "auto":
        return "device" if tf.config.list_physical_devices("GPU") else "host"
    return score_on


class DeviceMaps:
    """The batch's maps, still on the device; indexing with row numbers brings only those rows back."""

    def __init__(self, tensor):
        self.tensor = tensor
        self.shape = tuple(int(d) for d in tensor.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows))
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        return tf.gather(self.tensor, rows.astype(np.int32)).numpy().astype(np.float32, copy=False)


class DeviceBatchScorer:
    """``score(explainer, images, class_ids, boxes) -> (Explanation with DeviceMaps, scores, grid maps or None)``."""

    def __init__(self, height: int, width: int, regions=None, grid: int = 16, centre_fraction: float = 0.5):
        self.height, self.width, self.grid = int(height), int(width), int(grid)
        self.scorer = DeviceScorer(self.height, self.width, regions=regions, validate=False)
        lo, hi = (1.0 - centre_fraction) / 2.0, (1.0 + centre_fraction) / 2.0
        rect = np.array([[lo * width, lo * height, hi * width, hi * height]])
        # the centre rectangle as a 0/1 constant, by the pixel-centre rule of atlas.centre_heat
        self.centre = tf.constant(rect_masks(rect, height, width).astype(np.float64))
        self.blocks = height % grid == 0 and width % grid == 0
        self.reduce = tf.function(self._reduce, input_signature=[
            tf.TensorSpec([None, height, width], tf.float32),
            tf.TensorSpec([None, None, 4], tf.float64),
            tf.TensorSpec([None], tf.int32)])

    def _reduce(self, maps, boxes, counts):
        scores = self.scorer.score(maps, boxes, counts)
        alive = tf.equal(scores["dead"], 0.0)  # the scorer's rule: finite and a positive sum
        heat = tf.cast(maps, tf.float64)
        heat = tf.where(tf.math.is_finite(heat), heat, 0.0)
        total = tf.reduce_sum(heat, axis=[1, 2])
        unit = heat / tf.where(alive, total, 1.0)[:, None, None]
        nan = tf.constant(np.nan, tf.float64)
        out = {"scores": scores, "centre_heat": tf.where(alive, tf.reduce_sum(unit * self.centre, axis=[1, 2]), nan)}
        if self.blocks:
            g, n = self.grid, tf.shape(unit)[0]
            small = tf.reduce_sum(tf.reshape(unit, [n, g, self.height // g, g, self.width // g]), axis=[2, 4])
            out["small"] = tf.cast(tf.where(alive[:, None, None], small, nan), tf.float32)
        return out

    def score(self, explainer, images, class_ids, boxes):
        out = explainer.step_tensors(images, class_ids)
        maps, probabilities = out[1], np.asarray(out[2]).astype(np.float32, copy=False)
        padded, counts = pad_for_device(boxes)
        reduced = self.reduce(maps, tf.constant(padded, tf.float64), tf.constant(counts, tf.int32))
        scores = {key: value.numpy() for key, value in reduced["scores"].items()}
        scores["centre_heat"] = reduced["centre_heat"].numpy()
        small = reduced["small"].numpy() if "small" in reduced else None
        result = Explanation(DeviceMaps(maps), np.zeros((len(probabilities), 1, 1), np.float32),
                             scores["dead"].astype(bool), probabilities, probabilities.argmax(axis=1),
                             probabilities.max(axis=1))
        return result, scores, small
