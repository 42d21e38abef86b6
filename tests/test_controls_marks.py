"""Issue 21: a shortcut along the top edge fails the default policy on the edge check, which names the top
edge; the clean control passes that check, on data with and without the strip. Held-out seeds 0..9."""

from __future__ import annotations

import pytest

from validator import audit

HELDOUT_SEED = 1


def _overall(verdict, check_id):
    return next(c for c in verdict.checks if c["check_id"] == check_id and c["slice"] == "overall")


def test_edge_strip_shortcut_fails_on_edge_heat_naming_the_top_edge(tmp_path, edge_strip_model, heldout_coco):
    assert edge_strip_model.reliance >= 0.4  # the strip carries the accuracy: chance without it
    data = heldout_coco("edge_strip", n=200, seed=HELDOUT_SEED)
    verdict = audit(str(edge_strip_model.path), str(data.coco_path), out=tmp_path / "report")
    assert verdict.status == "FAIL"
    edge = _overall(verdict, "edge-heat")
    assert edge["outcome"] == "FAIL"
    assert "the evidence sits along the top edge" in edge["message"]


@pytest.mark.parametrize("cue", [None, "edge_strip"])
def test_clean_model_passes_the_edge_check(tmp_path, clean_model, heldout_coco, cue):
    data = heldout_coco(cue, n=200, seed=HELDOUT_SEED)
    verdict = audit(str(clean_model.path), str(data.coco_path), out=tmp_path / "report")
    edge = _overall(verdict, "edge-heat")
    assert edge["outcome"] == "PASS" and edge["compared"] < 2.0, edge["message"]
    assert verdict.status in ("PASS", "WARN")


def test_partial_edge_strip_fails_on_edge_heat(tmp_path, control_cache_dir, heldout_coco):
    """Item 5: the strip agrees with the label 90% of the time and the shape always; the model uses both
    (above chance without the strip, better with it). Trained once (~30 s), cached."""
    from validator.datasets.controls import train_control

    model = train_control("edge_strip", seed=0, cue_strength=0.9, epochs=10, cache_dir=control_cache_dir)
    assert model.counterfactual_accuracy > 0.53 and model.reliance >= 0.2
    data = heldout_coco("edge_strip", n=200, seed=HELDOUT_SEED)
    verdict = audit(str(model.path), str(data.coco_path), out=tmp_path / "report")
    edge = _overall(verdict, "edge-heat")
    assert edge["outcome"] == "FAIL" and "the evidence sits along the top edge" in edge["message"]


def test_a_mark_beside_the_object_fails_a_heatmap_check_and_the_clean_model_passes_it(
        tmp_path, beside_mark_model, clean_model, heldout_coco):
    """Issue 21 item 3: the mark touching the object is caught by the maps themselves (``beside-heat``: the
    ring's heat gathers on one side), not only by the probes; the clean control passes that check on the same
    data."""
    from validator.metrics import metric_info
    from validator.metrics.registry import HEATMAP

    assert metric_info("ring_one_sided").source == HEATMAP  # read from the maps: independent of the probes
    data = heldout_coco("beside_mark", n=200, seed=HELDOUT_SEED)
    shortcut = _overall(audit(str(beside_mark_model.path), str(data.coco_path), out=tmp_path / "s"), "beside-heat")
    clean = _overall(audit(str(clean_model.path), str(data.coco_path), out=tmp_path / "c"), "beside-heat")
    assert shortcut["outcome"] == "FAIL" and shortcut["observed"] > 0.3, shortcut["message"]
    assert clean["outcome"] == "PASS" and clean["observed"] < 0.15, clean["message"]
