"""The forward-only Predictor gives the explainer's probabilities (one head definition for both)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_gap_model


@pytest.mark.parametrize("kwargs", [{}, {"separate_activation": True}, {"activation": None},
                                    {"classes": 1, "activation": "sigmoid"}])
def test_predictor_matches_the_explainer_probabilities(kwargs, random_images):
    from validator.explain import Explainer
    from validator.explain.predict import Predictor

    model = build_gap_model(**kwargs)
    explainer = Explainer(model)
    predictor = Predictor(model, batch_size=4)  # two chunks for six images
    expected = explainer.explain(random_images, np.zeros(len(random_images), int)).probabilities
    got = predictor(random_images)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert predictor.calls == len(random_images)


def test_predictor_refuses_the_wrong_shape(gap_model):
    from validator.errors import UsageError
    from validator.explain.predict import Predictor

    with pytest.raises(UsageError, match=r"expects \[N, 32, 32, 3\]"):
        Predictor(gap_model)(np.zeros((2, 16, 16, 3), np.float32))
