"""Multi-label heads (K sigmoid units): each annotated class is explained by its own logit, and `correct` is
per-label detection (p >= 0.5), not the argmax. A one-unit sigmoid stays binary."""

from __future__ import annotations

import json

import numpy as np
from conftest import build_gap_model


def test_a_k_unit_sigmoid_head_is_multi_label_and_a_one_unit_one_is_not():
    from validator.model import load_model

    multi = load_model(build_gap_model(classes=3, activation="sigmoid"))
    assert multi.multi_label and multi.num_classes == 3 and multi.head_bypass
    assert not load_model(build_gap_model(classes=1, activation="sigmoid")).multi_label
    assert not load_model(build_gap_model(classes=3)).multi_label
    probs = np.array([[0.9, 0.8, 0.1], [0.2, 0.3, 0.4]])
    np.testing.assert_array_equal(multi.detected(probs, [1, 2]), [True, False])  # argmax would say [False, True]


def test_each_label_is_explained_by_its_own_logit(random_images):
    from validator._tf import keras, tf
    from validator.explain import Explainer

    model = build_gap_model(classes=3, activation="sigmoid", separate_activation=True)
    result = Explainer(model).explain(random_images[:2], np.array([0, 2]))
    feat = keras.Model(model.input, [model.get_layer("feat").output, model.get_layer("head").output])  # logits
    with tf.GradientTape() as tape:
        a, logits = feat(tf.constant(random_images[:2]))
        chosen = tf.gather(logits, [0, 2], axis=1, batch_dims=1)
    g = tape.gradient(chosen, a).numpy()
    expected = np.maximum(np.einsum("nhwk,nk->nhw", a.numpy(), g.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(result.layer_maps, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.probabilities, tf.sigmoid(logits).numpy(), rtol=1e-5)


def test_the_gate_scores_each_label_of_a_two_label_image_by_detection(tmp_path, small_set):
    """Every image of the set gets a second annotated object of the other class; the table's `correct` is
    the label's sigmoid probability >= 0.5, computed here independently from the model's own outputs."""
    from validator import audit
    from validator.data import iter_batches, load_dataset

    coco = json.loads(small_set.coco_path.read_text())
    categories = [c["id"] for c in coco["categories"]]
    extra = []
    for ann in coco["annotations"]:
        other = next(c for c in categories if c != ann["category_id"])
        extra.append({**ann, "id": 100000 + ann["id"], "category_id": other, "bbox": [0, 0, 8, 8], "area": 64})
    coco["annotations"] += extra
    path = tmp_path / "two_labels.json"
    path.write_text(json.dumps(coco))
    for image in coco["images"]:
        image["file_name"] = str(small_set.coco_path.parent / image["file_name"])
    path.write_text(json.dumps(coco))

    model = build_gap_model(input_size=64, classes=len(categories), activation="sigmoid")
    model_path = tmp_path / "multi.keras"
    model.save(model_path)
    policy = {"name": "t", "version": 1, "sample": {"min_samples": 1, "min_per_class": 1, "max_samples": None},
              "checks": [{"id": "any", "metric": "dead", "aggregate": "rate", "max": 1.0}]}
    verdict = audit(str(model_path), str(path), policy=policy, out=tmp_path / "r")
    assert verdict.error is None, verdict.error
    table = verdict.table
    assert len(table["sample_id"]) == 2 * len(coco["images"])  # one row per (image, label)
    samples = {s.sample_id: s for s in load_dataset(path).samples}
    ordered = [samples[i] for i in table["sample_id"]]
    probs = np.concatenate([model(b.images).numpy() for b in iter_batches(ordered, input_size=(64, 64),
                                                                           batch_size=16)])
    expected = probs[np.arange(len(ordered)), [s.class_id for s in ordered]] >= 0.5
    np.testing.assert_array_equal(table["correct"].astype(bool), expected)
