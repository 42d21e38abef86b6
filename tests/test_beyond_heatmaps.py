"""Issue 12 on real controls: checks that do not trust one heatmap.

Counterfactual probes separate a model that reads the background from one that reads the object; the sanity
cascade tells Grad-CAM maps (which change when the weights are randomised) from maps that ignore the model;
the heat atlas finds a corner tag on data with no boxes; SpRAy recovers a planted subgroup of tag-reading maps
inside one class. Models are the session's cached controls (tests/controls_fixtures.py)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from validator import audit


def _audit(model, data, out, **options):
    return audit(str(model.path), str(data), out=out, **options)


def _overall(verdict, check_id):
    return next(c for c in verdict.checks if c["check_id"] == check_id and c["slice"] == "overall")


def _estimate(verdict, metric, aggregate="mean"):
    return verdict.summary["overall"][metric][aggregate]


def test_weather_shortcut_reads_the_background_and_the_clean_model_does_not(tmp_path, heldout_coco, weather_model,
                                                                            clean_model):
    data = heldout_coco("weather").coco_path
    shortcut = _audit(weather_model, data, tmp_path / "weather")
    clean = _audit(clean_model, data, tmp_path / "clean")
    chance = 1 / 2
    # background only (object boxes filled): the shortcut still answers, the clean model is near chance
    assert _estimate(shortcut, "bg_only_correct", "rate")["lo"] > 0.9  # measured 1.0
    assert abs(_estimate(clean, "bg_only_correct", "rate")["value"] - chance) < 0.2  # measured 0.57 (square-ish fill)
    assert _overall(shortcut, "background-only")["outcome"] == "FAIL"
    assert _overall(clean, "background-only")["outcome"] == "PASS"
    # the object on the other class's background: the shortcut follows the background
    assert _estimate(shortcut, "bg_gap")["lo"] > 0.6 and _overall(shortcut, "background-swap")["outcome"] == "FAIL"
    # the clean upper bound: 0.30 for the control trained on the dependency floors (make test-min)
    assert _estimate(clean, "bg_gap")["hi"] < 0.4 < 0.6 < _estimate(shortcut, "bg_gap")["lo"]
    assert _overall(clean, "background-swap")["outcome"] == "PASS"
    # two independent signals: the heat check and the probes that never read a map
    failed = {c["check_id"] for c in shortcut.failed_checks}
    assert {"object-heat", "background-only", "background-swap"} <= failed
    assert clean.status == "PASS"
    assert shortcut.probes["counterfactual"]["fill"] == "tile"


def test_randomising_a_trained_model_changes_its_grad_cam_maps(tmp_path, heldout_coco, clean_model):
    verdict = _audit(clean_model, heldout_coco(None).coco_path, tmp_path / "r")
    sanity = verdict.probes["sanity"]
    assert sanity["samples"] == 32 and len(sanity["stages"]) >= 2
    assert sanity["stages"][-1]["n_top"] == len(sanity["stages"][-1]["layers"])  # the last stage randomises all
    assert sanity["final"]["mean"] < 0.3  # measured 0.06
    check = _overall(verdict, "explainer-sanity")
    assert check["outcome"] == "PASS" and check["n"] == 32
    assert verdict.status == "PASS"
    on_disk = json.loads((tmp_path / "r" / "verdict.json").read_text())
    assert on_disk["probes"]["sanity"]["final"]["mean"] == pytest.approx(sanity["final"]["mean"])
    assert "Sanity cascade" in (tmp_path / "r" / "summary.md").read_text()


def _model_with_a_weight_free_layer(path):
    """Grayscale 64 px: AveragePooling (no weights, the chosen target) -> Conv -> GAP -> Dense. Grad-CAM on the
    pooling layer is ReLU(alpha * pooled image): the image itself wherever it is alive, whatever the weights."""
    from validator._tf import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64, 64, 1))
    x = keras.layers.AveragePooling2D(2, name="pool")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    keras.Model(inputs, outputs).save(path)
    return path


def test_a_map_that_ignores_the_model_is_inconclusive_not_a_pass(tmp_path, heldout_xray):
    model = _model_with_a_weight_free_layer(tmp_path / "m.keras")
    verdict = audit(str(model), str(heldout_xray().coco_path), out=tmp_path / "r", layer="pool")
    assert verdict.error is None
    check = _overall(verdict, "explainer-sanity")
    assert check["outcome"] == "INCONCLUSIVE" and check["observed"] > 0.9
    heat = [c for c in verdict.checks if c["check_id"] in ("object-heat", "object-heat-share", "corner-heat",
                                                             "dead-maps")]
    assert heat and all(c["outcome"] in ("INCONCLUSIVE", "FAIL") for c in heat)
    assert any(c["outcome"] == "INCONCLUSIVE" and "not trusted" in c["message"] for c in heat)
    assert verdict.status in ("INCONCLUSIVE", "FAIL") and verdict.exit_code != 0
    junit = (tmp_path / "r" / "junit.xml").read_text()
    assert "INCONCLUSIVE.sanity_spearman" in junit  # a CI reporter shows it as a failed case


def _manifest_without_boxes(data, path):
    with open(data.manifest_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "label", "xmin", "ymin", "xmax", "ymax"])
        writer.writeheader()
        for r in rows:
            writer.writerow({"image": str(data.manifest_path.parent / r["image"]), "label": r["label"],
                             "xmin": "", "ymin": "", "xmax": "", "ymax": ""})
    return path


def test_without_any_box_the_audit_runs_and_the_atlas_finds_the_watermark_corner(tmp_path, heldout_coco,
                                                                                watermark_model, clean_model):
    data = _manifest_without_boxes(heldout_coco("watermark"), tmp_path / "nobox.csv")
    shortcut = _audit(watermark_model, data, tmp_path / "wm")
    clean = _audit(clean_model, data, tmp_path / "clean")
    for verdict in (shortcut, clean):
        assert verdict.error is None
        assert _overall(verdict, "object-heat")["outcome"] == "NOT_JUDGED"
        assert _overall(verdict, "background-only")["outcome"] == "NOT_JUDGED"
        assert _overall(verdict, "hotspot")["outcome"] == "NOT_JUDGED"  # "off the object" needs the object
    atlas = shortcut.discovery["atlas"]["overall"]
    corners = {c: atlas[f"corner_{c}"] / atlas[f"area_corner_{c}"] for c in ("tl", "tr", "bl", "br")}
    assert max(corners, key=corners.get) == "br"  # the watermark corner (synthetic.watermark_region)
    assert corners["br"] > 8  # measured 16
    assert _overall(shortcut, "corner-heat")["outcome"] == "FAIL" and shortcut.status == "FAIL"
    assert "bottom-right" in _overall(shortcut, "corner-heat")["message"]
    clean_atlas = clean.discovery["atlas"]["overall"]
    assert clean_atlas["corner_br"] / clean_atlas["area_corner_br"] < corners["br"] / 3
    assert clean.status == "PASS"  # box-free checks only, and they hold


def test_spray_recovers_a_planted_subgroup_of_tag_reading_maps_inside_one_class(heldout_coco, clean_model,
                                                                              watermark_model):
    """One class's maps: 70 from the clean model (on the object) and 30 from the watermark model on tagged
    images (on the corner tag), all real Grad-CAM maps. SpRAy must separate the 30 and flag them."""
    from sklearn.metrics import adjusted_rand_score

    from validator.data import iter_batches, load_dataset
    from validator.discovery.discover import DiscoveryCollector
    from validator.explain import Explainer
    from validator.model import load_model

    def maps_of(model, data, n):
        loaded = load_model(str(model.path))
        samples = [s for s in load_dataset(data.coco_path).samples if s.class_name == "disc"][:n]
        explainer = Explainer(loaded)
        out = []
        for batch in iter_batches(samples, input_size=loaded.input_size, batch_size=32):
            result = explainer.explain(batch.images, np.zeros(len(batch.indices), int))
            out.append((result.maps, batch.boxes, result.dead))
        return [np.concatenate([o[i] for o in out]) if i != 1 else sum((o[1] for o in out), []) for i in range(3)]

    plain_maps, plain_boxes, plain_dead = maps_of(clean_model, heldout_coco(None), 70)
    tag_maps, tag_boxes, tag_dead = maps_of(watermark_model, heldout_coco("watermark"), 30)
    maps = np.concatenate([plain_maps, tag_maps])
    boxes = plain_boxes + tag_boxes
    alive = ~np.concatenate([plain_dead, tag_dead])
    planted = np.r_[np.zeros(70, bool), np.ones(30, bool)]
    collector = DiscoveryCollector(grid=16, max_clusters=8, seed=0)
    collector.add(maps, boxes, ["disc"] * len(maps), [f"s{i}" for i in range(len(maps))], alive)
    _, summary, labels = collector.finish()
    entry = summary["clusters"]["disc"]
    assert entry["k"] >= 2
    ari = adjusted_rand_score(planted[alive], labels[alive])
    assert ari >= 0.8, (ari, entry["k"])
    flagged = [c for c in entry["clusters"] if c["off_object"]]
    assert flagged, entry
    tagged_cluster = np.bincount(labels[planted & alive]).argmax()
    assert any(c["cluster"] == tagged_cluster for c in flagged)
