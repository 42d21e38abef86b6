"""heatmaps() reuses one Explainer per in-memory model and settings, without keeping the model alive."""

from __future__ import annotations

import gc
import weakref

import numpy as np
from conftest import build_gap_model


def test_heatmaps_reuses_the_explainer_and_gives_the_class_results(random_images):
    from validator.explain import Explainer, cached_explainer, heatmaps

    model = build_gap_model()
    ids = np.arange(len(random_images)) % 3
    first = cached_explainer(model)
    assert cached_explainer(model) is first  # the graph is traced once
    assert cached_explainer(model, method="hirescam") is not first  # keyed on method ...
    assert cached_explainer(model, layer="c1") is not first  # ... and layer
    np.testing.assert_allclose(heatmaps(model, random_images, ids), Explainer(model).explain(random_images, ids).maps,
                               rtol=1e-5, atol=1e-7)
    traced = first._step.experimental_get_tracing_count()
    heatmaps(model, random_images, ids)
    heatmaps(model, random_images[:2], ids[:2])
    assert first._step.experimental_get_tracing_count() == traced  # no new trace on later calls


def test_the_cache_does_not_keep_a_model_alive_nor_share_between_models(random_images):
    from validator.explain import cached_explainer, heatmaps

    a, b = build_gap_model(seed=0), build_gap_model(seed=1)
    assert cached_explainer(a) is not cached_explainer(b)
    heatmaps(a, random_images, np.zeros(len(random_images), int))
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None


def test_a_cached_cam_explainer_sees_weights_changed_after_tracing(random_images):
    """CAM's Dense kernel is read in the graph: a model that trains on is explained with its new weights."""
    from validator.explain import Explainer, cached_explainer

    model = build_gap_model()
    ids = np.arange(len(random_images)) % 3
    cached = cached_explainer(model, method="cam")
    before = cached.explain(random_images, ids).maps
    dense = next(layer for layer in model.layers if layer.__class__.__name__ == "Dense")
    dense.kernel.assign(-np.asarray(dense.kernel))  # flip the class evidence
    after = cached.explain(random_images, ids).maps
    fresh = Explainer(model, method="cam").explain(random_images, ids).maps
    np.testing.assert_allclose(after, fresh, rtol=1e-5, atol=1e-7)
    assert not np.allclose(after, before)
