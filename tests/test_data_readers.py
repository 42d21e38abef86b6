"""Annotation readers (COCO, VOC, CSV), class lists and box validation, on small datasets written here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from validator.data import check_num_classes, load_dataset, read_class_list
from validator.errors import DataError


def write_png(path: Path, width: int = 40, height: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 100, np.uint8))
    return path


def issues_of(dataset, action):
    return [i for i in dataset.issues if i.action == action]


# ---------------------------------------------------------------- COCO


def coco_doc(**overrides):
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
            {"id": 3, "file_name": "c.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 5]},
            {"id": 11, "image_id": 2, "category_id": 7, "bbox": [0, 0, 4, 4]},
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [5, 6, 3, 2]},
            {"id": 13, "image_id": 2, "category_id": 3, "bbox": [20, 10, 2, 2]},
        ],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
    }
    doc.update(overrides)
    return doc


def write_coco(tmp_path: Path, doc: dict, images=("a.png", "b.png", "c.png"), subdir="images") -> Path:
    for name in images:
        write_png(tmp_path / subdir / name)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_round_trip(tmp_path):
    ds = load_dataset(write_coco(tmp_path, coco_doc()))
    assert ds.format == "coco"
    assert ds.class_names == ["cat", "dog"]  # sorted by category id: 3 -> 0, 7 -> 1
    by_id = {s.sample_id: s for s in ds.samples}
    assert set(by_id) == {"a.png#dog", "b.png#dog", "b.png#cat", "c.png"}
    assert by_id["a.png#dog"].boxes == ((1.0, 2.0, 11.0, 7.0),)
    assert by_id["a.png#dog"].class_id == 1
    # the multi-class image gives one sample per class, with the union of that class's boxes
    cat = by_id["b.png#cat"]
    assert cat.class_id == 0 and cat.boxes == ((5.0, 6.0, 8.0, 8.0), (20.0, 10.0, 22.0, 12.0))
    assert cat.annotation_ids == ("12", "13")
    assert cat.image_path == str((tmp_path / "images" / "b.png").resolve())
    # an image without annotations is kept, unlabelled, and counted
    assert by_id["c.png"].boxes == () and by_id["c.png"].class_id is None
    assert (ds.n_images, ds.n_no_box) == (3, 1)
    assert ds.issues == []


def test_coco_images_beside_json_and_images_dir_override(tmp_path):
    path = write_coco(tmp_path, coco_doc(), subdir=".")
    assert load_dataset(path).samples[0].image_path == str((tmp_path / "a.png").resolve())
    other = tmp_path / "elsewhere"
    for name in ("a.png", "b.png", "c.png"):
        write_png(other / name)
    ds = load_dataset(path, images_dir=other)
    assert all(Path(s.image_path).parent == other.resolve() for s in ds.samples)


def test_coco_explicit_classes_override_order_and_skip_unknown(tmp_path):
    ds = load_dataset(write_coco(tmp_path, coco_doc()), classes=["dog", "bird"])
    assert ds.class_names == ["dog", "bird"]
    assert {s.sample_id: s.class_id for s in ds.samples if s.boxes} == {"a.png#dog": 0, "b.png#dog": 0}
    # cat is a class of the file that the model does not cover: out of scope, not a broken box
    assert issues_of(ds, "skipped_box") == []
    outside = issues_of(ds, "out_of_scope_box")
    assert sorted(i.annotation for i in outside) == ["12", "13"]
    assert all(i.reason == "class 'cat' is outside --classes (not audited)" for i in outside)


def test_an_image_of_classes_outside_the_list_is_out_of_scope_not_skipped(tmp_path):
    doc = coco_doc()
    doc["images"].append({"id": 4, "file_name": "d.png", "width": 40, "height": 30})
    doc["annotations"].append({"id": 14, "image_id": 4, "category_id": 3, "bbox": [1, 1, 5, 5]})
    ds = load_dataset(write_coco(tmp_path, doc, images=("a.png", "b.png", "c.png", "d.png")), classes=["dog"])
    assert issues_of(ds, "skipped_sample") == []
    (record,) = issues_of(ds, "out_of_scope")
    assert record.file.endswith("d.png") and "outside --classes" in record.reason
    # without a class list every class of the file is audited; a category id nobody declared is still broken
    assert issues_of(load_dataset(write_coco(tmp_path, doc, images=("a.png", "b.png", "c.png", "d.png"))),
                     "out_of_scope") == []


def test_coco_unknown_category_id_is_skipped_box(tmp_path):
    doc = coco_doc()
    doc["annotations"].append({"id": 99, "image_id": 1, "category_id": 42, "bbox": [0, 0, 3, 3]})
    ds = load_dataset(write_coco(tmp_path, doc))
    (issue,) = issues_of(ds, "skipped_box")
    assert (issue.annotation, issue.reason, issue.file) == ("99", "unknown category id 42", str(tmp_path / "ann.json"))


@pytest.mark.parametrize(
    ("bbox", "reason_start"),
    [([3, 3, 0, 5], "zero-area box"), ([3, 3, -2, 5], "inverted box"), ([3, float("nan"), 2, 2], "non-finite")],
)
def test_coco_bad_box_rejected_with_file_and_id(tmp_path, bbox, reason_start):
    doc = coco_doc()
    doc["annotations"].append({"id": 55, "image_id": 1, "category_id": 7, "bbox": bbox})
    ds = load_dataset(write_coco(tmp_path, doc))
    (issue,) = issues_of(ds, "skipped_box")
    assert issue.reason.startswith(reason_start)
    assert (issue.file, issue.annotation) == (str(tmp_path / "ann.json"), "55")
    assert "a.png#dog" in {s.sample_id for s in ds.samples}  # the other box of the image survives


def test_coco_box_outside_image_clipped_at_read_time(tmp_path):
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [-5, 20, 20, 15]  # x -5..15, y 20..35 in a 40x30 image
    ds = load_dataset(write_coco(tmp_path, doc))
    sample = next(s for s in ds.samples if s.sample_id == "a.png#dog")
    assert sample.boxes == ((0.0, 20.0, 15.0, 30.0),)
    (issue,) = issues_of(ds, "clipped_box")
    assert issue.annotation == "10" and "clipped to [0, 20, 15, 30]" in issue.reason


def test_coco_sample_with_all_boxes_rejected_is_skipped(tmp_path):
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [1, 1, 0, 0]
    ds = load_dataset(write_coco(tmp_path, doc))
    assert "a.png#dog" not in {s.sample_id for s in ds.samples}
    (skip,) = issues_of(ds, "skipped_sample")
    assert skip.file == str(tmp_path / "images" / "a.png") and "class 'dog' were rejected" in skip.reason
    assert ds.n_images == 2


def test_coco_missing_image_file_skips_sample(tmp_path):
    ds = load_dataset(write_coco(tmp_path, coco_doc(), images=("b.png", "c.png")))
    (issue,) = issues_of(ds, "skipped_sample")
    assert issue.file.endswith("a.png") and "not found" in issue.reason and issue.annotation == "10"
    assert ds.n_images == 2


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_coco_missing_top_level_key(tmp_path, key):
    doc = coco_doc()
    del doc[key]
    with pytest.raises(DataError, match=f"missing key '{key}'") as err:
        load_dataset(write_coco(tmp_path, doc))
    assert "ann.json" in str(err.value) and err.value.exit_code == 2


def test_coco_missing_bbox_key_names_it(tmp_path):
    doc = coco_doc()
    del doc["annotations"][1]["bbox"]
    with pytest.raises(DataError, match=r"annotations\[1\] is missing key 'bbox'"):
        load_dataset(write_coco(tmp_path, doc))


def test_coco_invalid_json(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset(path)


def test_empty_set_is_data_error(tmp_path):
    doc = coco_doc(images=[{"id": 1, "file_name": "gone.png"}], annotations=[])
    with pytest.raises(DataError, match="no usable sample"):
        load_dataset(write_coco(tmp_path, doc, images=()))


# ---------------------------------------------------------------- VOC


def voc_xml(filename, objects, size=(40, 30)):
    parts = [f"<annotation><filename>{filename}</filename>"]
    if size:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, (x0, y0, x1, y1) in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def write_voc(tmp_path: Path, files: dict) -> Path:
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    for stem, (objects, size) in files.items():
        write_png(root / "JPEGImages" / f"{stem}.png")
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.png", objects, size))
    return root


def test_voc_round_trip_and_one_based_conversion(tmp_path):
    root = write_voc(
        tmp_path,
        {
            "img1": ([("horse", (1, 1, 10, 20))], (40, 30)),
            "img2": ([("person", (5, 6, 5, 6)), ("horse", (11, 3, 20, 8)), ("person", (30, 1, 40, 30))], None),
            "img3": ([], (40, 30)),
        },
    )
    ds = load_dataset(root)
    assert ds.format == "voc" and ds.class_names == ["horse", "person"]
    by_id = {s.sample_id: s for s in ds.samples}
    # xmin=1..xmax=10 (1-based, inclusive) is the continuous interval [0, 10): 10 pixels wide
    assert by_id["img1#horse"].boxes == ((0.0, 0.0, 10.0, 20.0),)
    # xmin == xmax is one pixel, not zero area
    assert by_id["img2#person"].boxes == ((4.0, 5.0, 5.0, 6.0), (29.0, 0.0, 40.0, 30.0))
    assert by_id["img2#person"].annotation_ids == ("img2#0", "img2#2")
    assert by_id["img2#horse"].boxes == ((10.0, 2.0, 20.0, 8.0),)
    assert by_id["img3"].boxes == ()
    assert (ds.n_images, ds.n_no_box) == (3, 1)
    assert load_dataset(root / "Annotations").samples == ds.samples  # the Annotations folder works too


def test_voc_inverted_box_and_clip_with_size(tmp_path):
    root = write_voc(tmp_path, {"a": ([("cat", (10, 5, 4, 9)), ("cat", (30, 20, 45, 35))], (40, 30))})
    ds = load_dataset(root)
    (skipped,) = issues_of(ds, "skipped_box")
    assert skipped.annotation == "a#0" and skipped.reason.startswith("inverted box [9, 4, 4, 9]")
    assert skipped.file == str(root / "Annotations" / "a.xml")
    (clipped,) = issues_of(ds, "clipped_box")
    assert clipped.annotation == "a#1"
    assert ds.samples[0].boxes == ((29.0, 19.0, 40.0, 30.0),)


def test_voc_missing_name_is_data_error(tmp_path):
    root = write_voc(tmp_path, {"a": ([("cat", (1, 1, 5, 5))], (40, 30))})
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<name>cat</name>", ""))
    with pytest.raises(DataError, match="a.xml: object 0 is missing key 'name'"):
        load_dataset(root)


# ---------------------------------------------------------------- CSV


def write_csv(tmp_path: Path, rows: list[str], images=("a.png", "b.png", "c.png")) -> Path:
    for name in images:
        write_png(tmp_path / "img" / name)
    path = tmp_path / "set.csv"
    path.write_text("\n".join(["image,label,xmin,ymin,xmax,ymax", *rows]) + "\n")
    return path


def test_csv_with_names(tmp_path):
    path = write_csv(
        tmp_path,
        ["img/a.png,zebra,1,2,11,12", "img/a.png,ant,0,0,5,5", "img/a.png,zebra,20,2,30,12", "img/b.png,ant,,,,"],
    )
    ds = load_dataset(path)
    assert ds.format == "csv" and ds.class_names == ["ant", "zebra"]
    by_id = {s.sample_id: s for s in ds.samples}
    assert by_id["img/a.png#zebra"].boxes == ((1.0, 2.0, 11.0, 12.0), (20.0, 2.0, 30.0, 12.0))
    assert by_id["img/a.png#zebra"].annotation_ids == ("row 2", "row 4")
    assert by_id["img/a.png#ant"].class_id == 0
    # a label-only row is a no-box image with that label
    assert (by_id["img/b.png#ant"].boxes, by_id["img/b.png#ant"].class_id) == ((), 0)
    assert (ds.n_images, ds.n_no_box, ds.labels_are_indices) == (2, 1, False)


def test_csv_with_indices_and_images_dir(tmp_path):
    path = write_csv(tmp_path, ["a.png,2,1,1,5,5", "b.png,0,0,0,3,3"])
    ds = load_dataset(path, images_dir=tmp_path / "img")
    assert {s.sample_id: s.class_id for s in ds.samples} == {"a.png#2": 2, "b.png#0": 0}
    assert ds.class_names == ["0", "1", "2"] and ds.labels_are_indices
    check_num_classes(ds, 5)  # index labels fit a wider model: names are padded
    assert ds.class_names == ["0", "1", "2", "3", "4"]


def test_csv_indices_with_explicit_classes(tmp_path):
    path = write_csv(tmp_path, ["img/a.png,1,1,1,5,5", "img/b.png,cat,0,0,3,3", "img/c.png,7,0,0,3,3"])
    ds = load_dataset(path, classes=["cat", "dog"])
    assert {s.sample_id: (s.class_id, s.class_name) for s in ds.samples} == {
        "img/a.png#dog": (1, "dog"),
        "img/b.png#cat": (0, "cat"),
    }
    (issue,) = issues_of(ds, "skipped_box")
    assert issue.annotation == "row 4" and issue.reason == "class index 7 out of range for 2 classes"


def test_csv_bad_boxes_recorded(tmp_path):
    path = write_csv(
        tmp_path, ["img/a.png,cat,5,5,5,9", "img/a.png,cat,nan,1,4,4", "img/a.png,cat,1,1,4,", "img/b.png,cat,0,0,3,3"]
    )
    ds = load_dataset(path)
    reasons = {i.annotation: i.reason for i in issues_of(ds, "skipped_box")}
    assert reasons["row 2"].startswith("zero-area box [5, 5, 5, 9]")
    assert reasons["row 3"].startswith("non-finite")
    assert reasons["row 4"].startswith("incomplete box")
    assert [s.sample_id for s in ds.samples] == ["img/b.png#cat"]
    assert issues_of(ds, "skipped_sample")[0].file.endswith("a.png")


def test_csv_missing_column(tmp_path):
    path = tmp_path / "set.csv"
    path.write_text("image,label,xmin,ymin,xmax\na.png,cat,1,1,3\n")
    with pytest.raises(DataError, match="missing column 'ymax'"):
        load_dataset(path)


# ---------------------------------------------------------------- format, classes


def test_undetectable_format_names_path_and_option(tmp_path):
    path = tmp_path / "set.txt"
    path.write_text("x")
    with pytest.raises(DataError, match="--format") as err:
        load_dataset(path)
    assert str(path) in str(err.value)
    # the explicit format is honoured
    csv_path = write_csv(tmp_path, ["img/a.png,cat,0,0,3,3"])
    renamed = csv_path.rename(tmp_path / "manifest.txt")
    assert load_dataset(renamed, format="csv").samples[0].class_name == "cat"


def test_check_num_classes_mismatch(tmp_path):
    ds = load_dataset(write_coco(tmp_path, coco_doc()))
    check_num_classes(ds, 2)
    check_num_classes(ds, 1)  # a one-unit sigmoid head fits two classes
    with pytest.raises(DataError, match=r"model has 5 outputs but the data has 2 classes: \['cat', 'dog'\]"):
        check_num_classes(ds, 5)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.txt", "cat\n dog \n\nbird\n"),
        ("c.json", '["cat", "dog", "bird"]'),
        ("c.yaml", "- cat\n- dog\n- bird\n"),
        ("c.yml", "{1: dog, 0: cat, 2: bird}"),
    ],
)
def test_read_class_list(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert read_class_list(path) == ["cat", "dog", "bird"]


def test_read_class_list_rejects_duplicates_and_empty(tmp_path):
    (tmp_path / "d.txt").write_text("cat\ncat\n")
    (tmp_path / "e.txt").write_text("\n")
    with pytest.raises(DataError, match="duplicate"):
        read_class_list(tmp_path / "d.txt")
    with pytest.raises(DataError, match="empty"):
        read_class_list(tmp_path / "e.txt")


def test_issue_to_dict(tmp_path):
    doc = coco_doc()
    doc["annotations"][0]["bbox"] = [1, 1, math.inf, 2]
    issue = issues_of(load_dataset(write_coco(tmp_path, doc)), "skipped_box")[0]
    assert issue.to_dict() == {
        "file": str(tmp_path / "ann.json"),
        "annotation": "10",
        "reason": "non-finite box coordinates [1, 1, inf, 3]",
        "action": "skipped_box",
    }


def test_csv_labels_outside_the_class_list_are_out_of_scope(tmp_path):
    path = write_csv(tmp_path, ["img/a.png,cat,1,1,5,5", "img/a.png,zebra,6,6,9,9", "img/b.png,zebra,0,0,3,3",
                                "img/c.png,zebra,,,,"])
    ds = load_dataset(path, classes=["cat", "dog"])
    assert [s.sample_id for s in ds.samples] == ["img/a.png#cat"]
    assert issues_of(ds, "skipped_sample") == [] and issues_of(ds, "skipped_box") == []
    assert [i.annotation for i in issues_of(ds, "out_of_scope_box")] == ["row 3", "row 4"]
    assert sorted(Path(i.file).name for i in issues_of(ds, "out_of_scope")) == ["b.png", "c.png"]
