"""Every heatmap method puts more heat on the object than on the background for the clean control.

The clean shapes control (``clean_model``: learned the shapes, no cue in its data) is explained for the true
class of a few held-out images with known boxes. A method that localises at all gives the box a larger
share of the heat than of the image: mean in-box energy (box heat / total heat) > mean box area fraction,
i.e. heat density on the object above that on the background. The options are cut down so the whole file
runs in seconds; the defaults only add samples, steps or views to the same estimate.
"""

from __future__ import annotations

import numpy as np
import pytest

from validator.datasets.synthetic import make_arrays
from validator.explain import Explainer
from validator.explain.names import METHOD_NAMES

N_IMAGES = 12
HELDOUT_SEED = 5  # tests use held-out seeds 0..9 (tests/controls_fixtures.py); none is a training seed
FAST_OPTIONS = {
    # SmoothGrad's Monte Carlo noise spreads heat over the background: on this control its lift is 1.03-1.31
    # with 8 samples, 1.12-1.43 with 16, 1.17-1.52 with 25 (8-12 images, held-out seeds 0-9; saliency 1.5-2.1)
    "smoothgrad": {"samples": 16},
    "integrated_gradients": {"steps": 8},
    "augmented_gradcam": {"views": 4, "steps": 50},
    "scorecam": {"max_channels": 16},
}


@pytest.fixture(scope="module")
def control(clean_model):
    arrays = make_arrays(N_IMAGES, seed=HELDOUT_SEED, image_size=clean_model.image_size, classes=clean_model.classes)
    images = arrays.images.astype(np.float32)  # the controls take 0..255 (an embedded Rescaling)
    return clean_model.load(), images, arrays.labels.astype(np.int32), arrays.boxes


def in_box_energy(maps: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(heat inside each image's box / all its heat, box area / image area), per image."""
    n, height, width = maps.shape
    rows, cols = np.arange(height)[None, :, None], np.arange(width)[None, None, :]
    x0, y0, x1, y1 = (boxes[:, i, None, None] for i in range(4))
    inside = (cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)  # boxes: pixel edges, x1/y1 exclusive
    energy = (maps * inside).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))
    return energy, inside.sum(axis=(1, 2)) / float(height * width)


def test_the_clean_control_is_accurate_on_these_images(control):
    model, images, labels, _ = control
    predicted = Explainer(model, "gradcam").explain(images, labels).predicted
    assert (predicted == labels).mean() >= 0.875, "the clean control must recognise the held-out shapes"


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_puts_more_heat_on_the_object_than_on_the_background(control, method):
    model, images, labels, boxes = control
    result = Explainer(model, method, options=FAST_OPTIONS.get(method)).explain(images, labels)
    assert not result.dead.any(), f"{method}: dead (all-zero) maps at {np.flatnonzero(result.dead).tolist()}"
    assert np.isfinite(result.maps).all() and (result.maps >= 0).all(), f"{method}: maps not finite and >= 0"
    energy, area = in_box_energy(result.maps, boxes)
    assert energy.mean() > area.mean(), (
        f"{method}: mean in-box energy {energy.mean():.3f} <= mean box area {area.mean():.3f} "
        f"(lift {energy.mean() / area.mean():.2f}; per image {np.round(energy, 2).tolist()} "
        f"vs {np.round(area, 2).tolist()}): no more heat on the object than on the background"
    )
