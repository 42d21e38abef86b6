"""Masks as object regions: the three mask sources, the scores and probes on masks, the fallback to the box.

Known answers on a thin diagonal object whose box is ~82% background: heat on the object and heat on the
box's background score the same with the box alone, and as opposite as they are with the mask.
"""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import pytest

from validator.data import load_dataset
from validator.data.pipeline import iter_batches, load_samples
from validator.metrics import score_maps
from validator.probes.counterfactual import background_only

SIZE = 20
BOX = np.array([[2.0, 2.0, 18.0, 18.0]])  # 16 x 16 = 256 pixels


def diagonal(size: int = SIZE, lo: int = 2, hi: int = 18, half_width: int = 1) -> np.ndarray:
    """A band |row - col| <= half_width along the box's diagonal: 46 of the box's 256 pixels (82% background)."""
    rows, cols = np.mgrid[:size, :size]
    inside = (rows >= lo) & (rows < hi) & (cols >= lo) & (cols < hi)
    return inside & (np.abs(rows - cols) <= half_width)


def test_the_diagonal_box_is_mostly_background():
    assert diagonal().sum() == 46
    assert abs((1 - 46 / 256) - 0.82) < 0.01


def test_heat_on_the_object_vs_on_the_box_background():
    mask = diagonal()
    on_object = mask.astype(float)
    on_background = (np.zeros((SIZE, SIZE)) + 0.0)
    on_background[2:18, 2:18] = 1.0
    on_background[mask] = 0.0  # 210 pixels: the box's background only
    maps = np.stack([on_object, on_background])
    boxes = [BOX, BOX]

    box_only = score_maps(maps, boxes)
    with_mask = score_maps(maps, boxes, masks=[mask, mask])

    # the box cannot tell them apart: all the heat is in the box either way
    assert box_only["energy"] == pytest.approx([1.0, 1.0])
    assert box_only["lift"] == pytest.approx([400 / 256, 400 / 256])
    # the mask can: E = 1 and lift = 1 / (46 / 400) on the object; E = 0, lift 0 on the box's background
    assert with_mask["energy"] == pytest.approx([1.0, 0.0])
    assert with_mask["lift"] == pytest.approx([400 / 46, 0.0])
    assert with_mask["object_area"] == pytest.approx([46 / 400, 46 / 400])
    assert with_mask["area"] == pytest.approx([256 / 400, 256 / 400])  # the box's, for the area bins
    assert with_mask["excess"] == pytest.approx([1 - 46 / 400, -46 / 400])
    assert with_mask["relative_lift"] == pytest.approx([1.0, -1.0])  # clipped at -1: no heat on the object
    assert with_mask["rank_accuracy"] == pytest.approx([1.0, 0.0])
    assert with_mask["cam_box_iou"][0] == pytest.approx(1.0)  # the CAM box vs the annotation box: unchanged


def test_pointing_on_the_mask():
    mask = diagonal()
    heat = np.full((2, SIZE, SIZE), 0.1)
    heat[0, 16, 3] = 5.0  # the box's far corner: inside the box, 12 px from the object
    heat[1, 9, 10] = 5.0  # on the band (|9 - 10| = 1)
    boxes = [BOX, BOX]
    assert score_maps(heat, boxes, pointing_tolerance=1.0)["pointing_hit"].tolist() == [1.0, 1.0]
    hit = score_maps(heat, boxes, pointing_tolerance=1.0, masks=[mask, mask])["pointing_hit"]
    assert hit.tolist() == [0.0, 1.0]


def test_flat_map_pointing_uses_the_dilation_and_agrees_with_the_box():
    """A mask equal to a box's pixels scores exactly like the box, the tied-maxima path included."""
    rect = np.zeros((SIZE, SIZE), bool)
    rect[5:12, 4:9] = True
    box = np.array([[4.0, 5.0, 9.0, 12.0]])
    rng = np.random.default_rng(0)
    maps = np.concatenate([np.ones((1, SIZE, SIZE)), rng.random((3, SIZE, SIZE))])
    for tolerance in (0.0, 2.0, 30.0):
        ref = score_maps(maps, [box] * 4, pointing_tolerance=tolerance)
        got = score_maps(maps, [box] * 4, pointing_tolerance=tolerance, masks=[rect] * 4)
        for key, values in ref.items():
            np.testing.assert_allclose(got[key], values, err_msg=key)


def test_corner_heat_counts_the_box_background_a_mask_leaves_free():
    size = 40
    mask = diagonal(size, 0, size, 2)
    heat = np.zeros((1, size, size))
    heat[0, :5, 35:] = 1.0  # the top-right corner: inside the box, away from the diagonal
    whole = [np.array([[0.0, 0.0, 40.0, 40.0]])]
    assert score_maps(heat, whole)["corner_heat_tr"][0] == 0.0  # the box excludes the whole corner
    assert score_maps(heat, whole, masks=[mask])["corner_heat_tr"][0] == pytest.approx(1.0)


def test_samples_without_a_mask_keep_their_box():
    maps = np.random.default_rng(1).random((2, SIZE, SIZE))
    ref = score_maps(maps, [BOX, BOX])
    got = score_maps(maps, [BOX, BOX], masks=[diagonal(), None])
    assert got["energy"][1] == ref["energy"][1] and got["energy"][0] != ref["energy"][0]
    assert np.isnan(got["object_area"]).sum() == 0


def _probe_batches(images, mask, donor):
    """The four images probe_scores builds for one masked sample (original, background-only, Mixed-Rand and
    Mixed-Same, the same donor given for both arms)."""
    from validator.probes.counterfactual import probe_scores

    seen = []

    def predict(batch):
        seen.append(batch.copy())
        return np.tile([[0.9, 0.1]], (len(batch), 1))

    given = (donor, [BOX], np.array([True]))
    probe_scores(predict, images, [BOX], [0], 2, fill="mean", masks=[mask], donors=given, same_donors=given)
    return tuple(batch[0] for batch in seen)


def test_background_only_removes_the_box_so_no_silhouette_is_left():
    """Only-BG removes the box even where a mask exists: a mask-shaped hole would leave the object's outline
    (here the box's own background, 30, around a filled diagonal), which a shape model reads."""
    mask = diagonal()
    in_box = np.zeros((SIZE, SIZE), bool)
    in_box[2:18, 2:18] = True
    images = np.full((1, SIZE, SIZE, 3), 10.0, np.float32)
    images[0][in_box] = 30.0
    images[0][mask] = 200.0
    original, background, _, _ = _probe_batches(images, mask, images.copy())
    np.testing.assert_array_equal(original, images[0])
    assert np.all(background == 10.0)  # the whole box became the background's mean: no diagonal to see
    np.testing.assert_array_equal(background_only(images, [BOX], fill="mean")[0], background)


def test_mixed_rand_pastes_the_mask_onto_the_donor_with_its_box_removed():
    mask = diagonal()
    images = np.full((1, SIZE, SIZE, 3), 10.0, np.float32)
    images[0][mask] = 200.0
    donor = np.full((1, SIZE, SIZE, 3), 50.0, np.float32)
    donor[0, 2:18, 2:18] = 70.0  # the donor's box background
    donor[0][mask] = 90.0  # the donor's own object, on the same diagonal
    _, _, mixed, mixed_same = _probe_batches(images, mask, donor)
    np.testing.assert_array_equal(mixed_same, mixed)  # the same donor given for both arms: the same paste
    # only the recipient's object pixels are pasted (the recipient's box background, 10, is not), onto the
    # donor's background-only image, whose whole box (its object, 90, and its box background, 70) was filled
    assert np.all(mixed[mask] == 200.0)
    assert np.all(mixed[~mask] == 50.0)


# ---------------------------------------------------------------------------------------------- the readers


def _write_image(path, size=SIZE):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.zeros((size, size, 3), np.uint8)
    image[diagonal(size)] = 220
    assert cv2.imwrite(str(path), image)


def _coco(tmp_path, segmentation, width=SIZE, height=SIZE):
    _write_image(tmp_path / "images" / "a.png")
    doc = {"images": [{"id": 1, "file_name": "images/a.png", "width": width, "height": height}],
           "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [2, 2, 16, 16],
                            "segmentation": segmentation}],
           "categories": [{"id": 1, "name": "stick"}, {"id": 2, "name": "other"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def _batch(path, fmt, input_size=(SIZE, SIZE)):
    dataset = load_dataset(path, format=fmt)
    issues: list = []
    batches = list(iter_batches(dataset.samples, input_size=input_size, batch_size=4, issues=issues))
    assert len(batches) == 1
    return batches[0], issues


def _rle(mask):
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def test_coco_rle_mask(tmp_path):
    batch, issues = _batch(_coco(tmp_path, _rle(diagonal())), "coco")
    assert batch.regions.tolist() == ["mask"] and not issues
    np.testing.assert_array_equal(batch.masks[0], diagonal())


def test_coco_polygon_mask(tmp_path):
    from pycocotools import mask as coco_mask

    polygon = [2.0, 2.0, 18.0, 2.0, 18.0, 10.0, 2.0, 10.0]  # the box's top half
    expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([polygon], SIZE, SIZE))).astype(bool)
    batch, issues = _batch(_coco(tmp_path, [polygon]), "coco")
    assert batch.regions.tolist() == ["mask"] and not issues
    np.testing.assert_array_equal(batch.masks[0], expected)
    assert 100 <= expected.sum() <= 160  # pycocotools' rasterisation of a 16 x 8 rectangle


def test_coco_uncompressed_rle_and_a_resize_to_the_input(tmp_path):
    mask = diagonal()
    flat = mask.flatten(order="F").astype(int)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[-1, flat, -1]) != 0)).tolist()
    counts = runs if flat[0] == 0 else [0, *runs]
    batch, issues = _batch(_coco(tmp_path, {"size": [SIZE, SIZE], "counts": counts}), "coco", input_size=(10, 10))
    assert not issues
    # nearest on pixel centres: input pixel (r, c) takes original pixel (2r + 1, 2c + 1)
    np.testing.assert_array_equal(batch.masks[0], mask[1::2, 1::2])


def test_broken_mask_falls_back_to_the_box_and_is_recorded(tmp_path):
    bad_size = {"size": [SIZE + 1, SIZE], "counts": "0"}
    batch, issues = _batch(_coco(tmp_path, bad_size), "coco")
    assert batch.regions.tolist() == ["box"] and batch.masks == [None]
    assert [(i.annotation, i.action) for i in issues] == [("7", "mask_to_box")]
    assert "size" in issues[0].reason and "box is used instead" in issues[0].reason


def test_voc_segmentation_object_png(tmp_path):
    from PIL import Image

    root = tmp_path / "voc"
    _write_image(root / "JPEGImages" / "a.png")
    (root / "Annotations").mkdir()
    objects = "".join(
        f"<object><name>{name}</name><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
        for name, (x0, y0, x1, y1) in (("stick", (2, 2, 18, 18)), ("dot", (0, 15, 4, 19))))
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><filename>a.png</filename><size><width>{SIZE}</width><height>{SIZE}</height></size>"
        f"{objects}</annotation>")
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[diagonal()] = 1
    ids[16:18, 1:3] = 2
    ids[0, :] = 255  # VOC's void outline: no object's
    indexed = Image.new("P", (SIZE, SIZE))  # an indexed PNG with VOC's colours, as VOC ships them
    indexed.putdata(ids.flatten().tolist())
    indexed.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (252 * 3) + [224, 224, 192])
    (root / "SegmentationObject").mkdir()
    indexed.save(root / "SegmentationObject" / "a.png")

    batch, issues = _batch(root, "voc")
    assert not issues
    assert batch.regions.tolist() == ["mask", "mask"]
    by_class = dict(zip([load_dataset(root, format="voc").samples[i].class_name for i in batch.indices],
                        batch.masks, strict=True))
    np.testing.assert_array_equal(by_class["stick"], diagonal())
    np.testing.assert_array_equal(by_class["dot"], ids == 2)


def test_csv_mask_column_and_a_missing_mask(tmp_path):
    _write_image(tmp_path / "a.png")
    _write_image(tmp_path / "b.png")
    assert cv2.imwrite(str(tmp_path / "a_mask.png"), diagonal().astype(np.uint8) * 255)
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "xmin", "ymin", "xmax", "ymax", "mask"])
        writer.writerow(["a.png", "stick", 2, 2, 18, 18, "a_mask.png"])
        writer.writerow(["b.png", "stick", 2, 2, 18, 18, "gone.png"])
    batch, issues = _batch(tmp_path / "m.csv", "csv")
    regions = dict(zip([load_dataset(tmp_path / "m.csv", format="csv").samples[i].sample_id for i in batch.indices],
                       zip(batch.regions, batch.masks, strict=True), strict=True))
    assert regions["a.png#stick"][0] == "mask"
    np.testing.assert_array_equal(regions["a.png#stick"][1], diagonal())
    assert regions["b.png#stick"] == ("box", None)
    assert [(i.annotation, i.action) for i in issues] == [("row 3", "mask_to_box")]
    assert issues[0].file.endswith("gone.png")


def test_an_annotation_without_a_mask_joins_the_region_by_its_box(tmp_path):
    _write_image(tmp_path / "a.png")
    assert cv2.imwrite(str(tmp_path / "a_mask.png"), diagonal().astype(np.uint8))
    with (tmp_path / "m.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "xmin", "ymin", "xmax", "ymax", "mask"])
        writer.writerow(["a.png", "stick", 2, 2, 18, 18, "a_mask.png"])
        writer.writerow(["a.png", "stick", 0, 0, 2, 2, ""])
    batch, _ = _batch(tmp_path / "m.csv", "csv")
    expected = diagonal()
    expected[:2, :2] = True
    assert batch.regions.tolist() == ["mask+box"]
    np.testing.assert_array_equal(batch.masks[0], expected)


def test_load_samples_decodes_the_donors_masks(tmp_path):
    dataset = load_dataset(_coco(tmp_path, _rle(diagonal())), format="coco")
    _, _, ok, masks = load_samples(dataset.samples, input_size=(SIZE, SIZE), masks=True)
    assert ok.tolist() == [True]
    np.testing.assert_array_equal(masks[0], diagonal())
    assert len(load_samples(dataset.samples, input_size=(SIZE, SIZE))) == 3  # the old signature is unchanged


# ---------------------------------------------------------------------------------------------- end to end


def test_audit_scores_on_masks_host_and_device_alike(tmp_path, untrained_model):
    from test_scoring_device import assert_same_audit

    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    data = write_dataset(tmp_path / "data", 16, seed=3, segmentation=True)
    policy = tmp_path / "p.yaml"
    policy.write_text("name: t\nversion: 1\nchecks:\n  - {id: e, metric: energy, aggregate: mean, min: 0.0}\n")
    common = {"today": date(2026, 12, 6), "batch_size": 8, "policy": policy}
    host = audit(str(untrained_model), str(data.coco_path), out=tmp_path / "h", score_on="host", **common)
    assert host.status != "ERROR", host.error
    table = host.table
    assert set(table["region"].tolist()) == {"mask"}
    # the drawn shapes fill less than their boxes: the region is the mask, the area bins keep the box
    assert np.all(table["object_area"] <= table["area"]) and np.any(table["object_area"] < table["area"])
    np.testing.assert_allclose(table["lift"], table["energy"] / table["object_area"])
    assert np.isfinite(table["bg_only_correct"]).all()
    device = audit(str(untrained_model), str(data.coco_path), out=tmp_path / "d", score_on="device", **common)
    assert_same_audit(host, device)


def test_spray_judges_off_object_heat_against_the_mask():
    """SpRAy's off-object share reads the mask where one is given: heat in the box's background corner is off
    the object (a thin diagonal), while against the box it counts as on it."""
    from validator.discovery.discover import DiscoveryCollector

    size, n = 64, 24
    box = np.array([[8.0, 8.0, 56.0, 56.0]])
    diagonal = np.zeros((size, size), bool)
    for k in range(8, 56):
        diagonal[k, max(8, k - 3):min(56, k + 3)] = True
    maps = np.zeros((n, size, size), np.float32)
    maps[:12][:, 10:24, 40:54] = 1.0  # half the maps: hot in the box's empty top-right corner
    for i in range(12, n):
        maps[i][diagonal] = 1.0  # the other half: on the object
    names, ids = ["cls"] * n, list(range(n))
    found = {}
    for label, masks in (("box", None), ("mask", [diagonal] * n)):
        collector = DiscoveryCollector(grid=16, max_clusters=4, seed=0)
        collector.add(maps, [box] * n, names, ids, np.ones(n, bool), object_masks=masks)
        _, summary, _ = collector.finish()
        clusters = summary["clusters"]["cls"]["clusters"]
        found[label] = max(c.get("off_object_share") or 0.0 for c in clusters)
    assert found["box"] < 0.05  # inside the box: "on the object"
    assert found["mask"] > 0.9  # off the diagonal: the mask says where the object is not


@pytest.mark.parametrize("family", ["digits", "xray"])
def test_the_digit_and_xray_writers_carry_each_objects_mask(tmp_path, family):
    """``segmentation=True`` on the other control families (calibrate.py --masks): the COCO RLE decodes, at the
    images' own size, to exactly the drawn mask, and the box stays the mask's bounding box."""
    from validator.datasets.digits import make_digits, write_digits
    from validator.datasets.xray import make_xray, write_xray

    make, write = {"digits": (make_digits, write_digits), "xray": (make_xray, write_xray)}[family]
    drawn = make(6, seed=5).masks
    data = write(tmp_path / family, 6, seed=5, formats=("coco",), segmentation=True)
    dataset = load_dataset(str(data.coco_path))
    size = drawn.shape[1]
    _, boxes, ok, masks = load_samples(dataset.samples, input_size=(size, size), masks=True)
    assert ok.all()
    order = [int(Path(s.image_path).stem) for s in dataset.samples]
    for k, i in enumerate(order):
        np.testing.assert_array_equal(masks[k], drawn[i])
        ys, xs = np.nonzero(drawn[i])
        np.testing.assert_allclose(boxes[k][0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_masks_change_the_pastes_but_not_what_background_only_removes(tmp_path, untrained_model):
    """Metamorphic: the same images, annotated with and without masks. Background-only removes the boxes
    either way, so its columns (a continuous probability among them) are equal row for row, where the old
    mask-shaped fill changed them; the pastes, which carry the mask's pixels, still probe every row."""
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit

    policy = tmp_path / "p.yaml"
    policy.write_text("name: t\nversion: 1\nchecks:\n  - {id: e, metric: energy, aggregate: mean, min: 0.0}\n")
    common = {"today": date(2026, 12, 6), "batch_size": 8, "policy": policy}
    tables = {}
    for masked in (False, True):
        data = write_dataset(tmp_path / f"data-{masked}", 24, seed=4, segmentation=masked)
        verdict = audit(str(untrained_model), str(data.coco_path), out=tmp_path / f"out-{masked}", **common)
        assert verdict.status != "ERROR", verdict.error
        tables[masked] = verdict.table
    assert set(tables[True]["region"].tolist()) == {"mask"} and set(tables[False]["region"].tolist()) == {"box"}
    for name in ("bg_only_correct", "bg_only_skill", "bg_only_confidence", "confidence_drop"):
        np.testing.assert_array_equal(tables[True][name], tables[False][name], err_msg=name)
    for name in ("object_only_correct", "mixed_same_correct"):
        assert np.isfinite(tables[True][name]).all() and np.isfinite(tables[False][name]).all(), name


def test_mask_limits_judge_masked_data_whole_or_sharded_and_never_box_data(tmp_path, untrained_model):
    """End to end: a check whose box limit cannot be met (mean energy >= 0.99) and whose mask limit always is (>= 0):
    masked data PASSes under its mask limit, in one process and merged from 3 shards alike (the ``region``
    column travels through the shard files); the same images with boxes FAIL under the box limit."""
    from validator.datasets.synthetic import write_dataset
    from validator.gate import audit, merge

    policy = tmp_path / "p.yaml"
    policy.write_text("name: t\nversion: 1\nchecks:\n  - {id: e, metric: energy, aggregate: mean, min: 0.99, "
                      "min_samples: 5, with_masks: {min: 0.0}}\n")
    common = {"today": date(2026, 12, 6), "batch_size": 8, "policy": policy}
    masked = write_dataset(tmp_path / "masked", 18, seed=5, segmentation=True)
    boxed = write_dataset(tmp_path / "boxed", 18, seed=5, segmentation=False)
    whole = audit(str(untrained_model), str(masked.coco_path), out=tmp_path / "whole", **common)
    parts = [audit(str(untrained_model), str(masked.coco_path), out=tmp_path / f"s{i}", shard=f"{i}/3", **common)
             for i in (1, 2, 3)]
    assert all(p.status == "PARTIAL" for p in parts), [p.error for p in parts]
    merged = merge([tmp_path / f"s{i}" for i in (1, 2, 3)], out=tmp_path / "merged", today=common["today"])
    boxes = audit(str(untrained_model), str(boxed.coco_path), out=tmp_path / "boxes", **common)
    outcome = {name: next(c for c in v.to_dict()["checks"] if c["check_id"] == "e")
               for name, v in (("whole", whole), ("merged", merged), ("boxes", boxes))}
    assert [(c["outcome"], c["min"]) for c in outcome.values()] == [("PASS", 0.0), ("PASS", 0.0), ("FAIL", 0.99)]
    assert "limits for masks" in outcome["whole"]["message"] and "limits for masks" in outcome["merged"]["message"]
    assert "limits for masks" not in outcome["boxes"]["message"]
