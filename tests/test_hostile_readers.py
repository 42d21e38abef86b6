"""Hostile and odd inputs to the readers (issue 22): identity clashes in each format are a data-schema error
(exit 2) naming both entries, never a silent join; values that crashed a reader (a huge integer, a name too
long for the file system, a NaN polygon) are recorded or refused with the project's own errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import run_cli

from validator.data import load_dataset
from validator.errors import DataError


def write_png(path: Path, width: int = 40, height: int = 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 100, np.uint8))
    return path


def load_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        load_dataset(path, **kwargs)
    assert err.value.exit_code == 2
    return str(err.value)


# ---------------------------------------------------------------- COCO


def coco(tmp_path: Path, images=None, annotations=None, categories=None, files=("a.png", "b.png")) -> Path:
    for name in files:
        write_png(tmp_path / "images" / name)
    doc = {
        "images": images if images is not None else [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "annotations": annotations if annotations is not None else [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
            {"id": 11, "image_id": 2, "category_id": 2, "bbox": [20, 5, 10, 10]},
        ],
        "categories": categories if categories is not None else [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_duplicate_image_id_names_both_entries(tmp_path):
    """Today's silent mislabel: the second entry replaced the first, and a.png's box was scored on b.png."""
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}])
    message = load_error(path)
    assert str(path) in message
    assert "images[1]" in message and "images[0]" in message
    assert "'a.png'" in message and "'b.png'" in message and "image ids must be unique" in message


def test_coco_ids_that_print_alike_or_alias_are_refused(tmp_path):
    # 1 and "1" print the same in every report; true == 1 for a dict: an annotation of image 1 joined image true
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png"}, {"id": "1", "file_name": "b.png"}])
    assert "images[1]" in load_error(path) and "images[0]" in load_error(path)
    path = coco(tmp_path, images=[{"id": True, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}])
    message = load_error(path)
    assert "images[0] key 'id' must be an integer or a string, got True" in message
    for bad in ([1], {"a": 1}, None, 1.0):  # unhashable ids crashed with TypeError
        path = coco(tmp_path, annotations=[{"id": 10, "image_id": bad, "category_id": 1, "bbox": [1, 1, 5, 5]}])
        assert "annotations[0] key 'image_id' must be an integer or a string" in load_error(path)
        path = coco(tmp_path, categories=[{"id": bad, "name": "cat"}])
        assert "categories[0] key 'id' must be an integer or a string" in load_error(path)


def test_coco_one_file_under_two_ids_names_both_entries(tmp_path):
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "a.png"}])
    message = load_error(path)
    assert str(path) in message and "images[0] (id 1, file_name 'a.png')" in message
    assert "images[1] (id 2, file_name 'a.png')" in message and "name the same image file" in message
    # two spellings of one file
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "./a.png"}])
    message = load_error(path)
    assert "images[0]" in message and "'./a.png'" in message
    assert str((tmp_path / "images" / "a.png").resolve()) in message
    # --images DIR falls back to the base name: x/a.png and y/a.png would both read DIR/a.png
    path = coco(tmp_path, images=[{"id": 1, "file_name": "x/a.png"}, {"id": 2, "file_name": "y/a.png"}])
    message = load_error(path, images_dir=tmp_path / "images")
    assert "'x/a.png'" in message and "'y/a.png'" in message


def test_coco_duplicate_annotation_ids_within_and_across_images(tmp_path):
    across = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
              {"id": 10, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]}]
    message = load_error(coco(tmp_path, annotations=across))
    assert "annotations[1] (id 10, image_id 2) repeats the id of annotations[0] (image_id 1)" in message
    within = [{"id": "x", "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
              {"id": 7, "image_id": 1, "category_id": 1, "bbox": [9, 9, 5, 5]},
              {"id": "x", "image_id": 1, "category_id": 2, "bbox": [1, 1, 5, 5]}]
    message = load_error(coco(tmp_path, annotations=within))
    assert "annotations[2] (id x, image_id 1) repeats the id of annotations[0] (image_id 1)" in message
    # an annotation without an id is '#<index>'; an explicit '#0' would be the same id in every report
    unnamed = [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
               {"id": "#0", "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    assert "annotations[1]" in load_error(coco(tmp_path, annotations=unnamed))


def test_coco_duplicate_category_ids_and_names(tmp_path):
    # today the second name silently replaced the first: every 'cat' box was scored as 'lynx'
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 1, "name": "lynx"}]
    message = load_error(coco(tmp_path, categories=cats))
    assert "categories[2] (id 1, name 'lynx') repeats the id of categories[0] (name 'cat')" in message
    # two ids, one name: with --classes both were merged into one class without a word
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": " cat "}]
    for classes in (None, ["cat", "dog"]):
        message = load_error(coco(tmp_path, categories=cats), classes=classes)
        assert "categories[1] (id 2) and categories[0] (id 1) are both named 'cat'" in message


def test_coco_values_that_crashed_the_reader(tmp_path):
    huge = 10**400  # valid JSON; float() of it raised OverflowError
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png", "width": huge, "height": 30},
                                  {"id": 2, "file_name": "b.png"}],
                annotations=[{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, huge, 5]},
                             {"id": 11, "image_id": 2, "category_id": 2, "bbox": [1, 1, 5, 5]}])
    ds = load_dataset(path)
    assert [s.sample_id for s in ds.samples] == ["b.png#dog"]
    (issue,) = [i for i in ds.issues if i.action == "skipped_box"]
    assert issue.annotation == "10" and issue.reason.startswith("non-numeric bbox")
    # a file name too long for the file system raised OSError from is_file(): it is a file not found
    long_name = "x" * 300 + ".png"
    path = coco(tmp_path, images=[{"id": 1, "file_name": long_name}, {"id": 2, "file_name": "b.png"}])
    ds = load_dataset(path)
    assert [s.sample_id for s in ds.samples] == ["b.png#dog"]
    assert any(i.action == "skipped_sample" and "image file not found" in i.reason for i in ds.issues)
    # JSON nested past the recursion limit, an integer of 5000 digits: not valid JSON, not a RecursionError
    path.write_text("[" * 100000 + "]" * 100000)
    assert str(path) in load_error(path)
    path.write_text('{"images": [{"id": ' + "9" * 5000 + "}]}")
    assert "is not valid JSON" in load_error(path)
    # ids of mixed types sort (integers first) instead of raising TypeError
    path = coco(tmp_path, categories=[{"id": "b", "name": "dog"}, {"id": 1, "name": "cat"}],
                annotations=[{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]},
                             {"id": 11, "image_id": 2, "category_id": "b", "bbox": [1, 1, 5, 5]}])
    assert load_dataset(path).class_names == ["cat", "dog"]


def test_coco_lone_surrogates_are_refused_where_they_are_read(tmp_path):
    """JSON's \\ud800 spells text no file, report or MLflow store can hold: it ended the audit as an internal
    error in a sink (exit 3); now the reader names the entry (exit 2)."""
    path = coco(tmp_path, categories=[{"id": 1, "name": "\ud800cat"}, {"id": 2, "name": "dog"}])
    assert json.loads(path.read_text())["categories"][0]["name"] == "\ud800cat"  # json.dumps wrote the escape
    message = load_error(path)
    assert "categories[0] key 'name'" in message and "unpaired surrogate" in message
    (tmp_path / "two").mkdir()
    path = coco(tmp_path / "two", images=[{"id": 1, "file_name": "a\udc80.png"}, {"id": 2, "file_name": "b.png"}])
    assert "images[0] key 'file_name'" in load_error(path)


def test_coco_identity_clash_exits_2_through_the_cli(tmp_path, capsys, untrained_model):
    path = coco(tmp_path, images=[{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}])
    result = run_cli(capsys, "audit", untrained_model, "--data", path, "--out", tmp_path / "report", "--no-mlflow")
    assert result.exit_code == 2, result.err
    assert "images[0]" in result.err and "images[1]" in result.err and "'b.png'" in result.err


# ---------------------------------------------------------------- VOC


def voc_xml(filename: str | None, *objects: tuple[str, tuple[int, int, int, int]], size: str = "") -> str:
    parts = ["<annotation>"]
    if filename is not None:
        parts.append(f"<filename>{filename}</filename>")
    parts.append(size)
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
                     f"<ymax>{y1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


def voc(tmp_path: Path, xmls: dict[str, str], files=("a.jpg", "b.jpg")) -> Path:
    for name in files:
        write_png(tmp_path / "JPEGImages" / name)
    (tmp_path / "Annotations").mkdir(exist_ok=True)
    for stem, text in xmls.items():
        (tmp_path / "Annotations" / f"{stem}.xml").write_text(text)
    return tmp_path


def test_voc_two_annotations_of_one_image_name_both_files(tmp_path):
    """Today two samples of one image: a.jpg as 'cat' with one box and as 'dog' with another."""
    root = voc(tmp_path, {"a": voc_xml("a.jpg", ("cat", (2, 2, 10, 10))),
                          "a_relabelled": voc_xml("a.jpg", ("dog", (12, 2, 20, 10))),
                          "b": voc_xml("b.jpg", ("dog", (1, 1, 5, 5)))})
    message = load_error(root)
    assert str(root / "Annotations" / "a.xml") in message and str(root / "Annotations" / "a_relabelled.xml") in message
    assert str((root / "JPEGImages" / "a.jpg").resolve()) in message and "name the same image file" in message
    # spelt differently: ./a.jpg; and an XML without <filename> that finds a.jpg by its stem
    root = voc(tmp_path / "v2", {"a": voc_xml(None, ("cat", (2, 2, 10, 10))),
                                 "other": voc_xml("./a.jpg", ("dog", (1, 1, 5, 5)))})
    message = load_error(root)
    assert "a.xml" in message and "other.xml" in message


def test_voc_repeated_object_is_not_a_clash(tmp_path):
    root = voc(tmp_path, {"a": voc_xml("a.jpg", ("cat", (2, 2, 10, 10)), ("cat", (2, 2, 10, 10)))}, files=("a.jpg",))
    (sample,) = load_dataset(root).samples
    assert sample.annotation_ids == ("a#0", "a#1") and len(set(sample.boxes)) == 1


def test_voc_values_that_crashed_the_reader(tmp_path):
    size = "<size><width>1e400</width><height>inf</height></size>"  # int(float('inf')): OverflowError
    root = voc(tmp_path, {"a": voc_xml("a.jpg", ("cat", (2, 2, 10, 10)), size=size)}, files=("a.jpg",))
    (sample,) = load_dataset(root).samples
    assert sample.image_size is None
    (root / "Annotations" / "folder.xml").mkdir()  # IsADirectoryError from ET.parse
    message = load_error(root)
    assert "folder.xml" in message and message.startswith("cannot read")


# ---------------------------------------------------------------- CSV


def csv(tmp_path: Path, rows: list[str], files=("a.png", "b.png")) -> Path:
    for name in files:
        write_png(tmp_path / "img" / name)
    path = tmp_path / "set.csv"
    path.write_text("\n".join(["image,label,xmin,ymin,xmax,ymax", *rows]) + "\n")
    return path


def test_csv_two_spellings_of_one_image_name_both_rows(tmp_path):
    """Today two samples of one image, each with half of its cats as the object region."""
    path = csv(tmp_path, ["img/a.png,cat,1,1,5,5", "img/b.png,dog,1,1,5,5", "./img/a.png,cat,20,1,25,5"])
    message = load_error(path)
    assert str(path) in message and "row 2 ('img/a.png') and row 4 ('./img/a.png')" in message
    absolute = str((tmp_path / "img" / "a.png").resolve())
    message = load_error(csv(tmp_path, ["img/a.png,cat,1,1,5,5", f"{absolute},cat,20,1,25,5"]))
    assert "row 2" in message and "row 3" in message


def test_csv_rows_of_one_image_still_merge_and_two_labels_are_multi_label(tmp_path):
    """Not clashes: several boxes are several rows; two labels on an image are two samples (multi-label)."""
    path = csv(tmp_path, ["img/a.png,cat,1,1,5,5", "img/a.png,cat,20,1,25,5", "img/a.png,dog,1,10,5,15",
                          "img/a.png,cat,1,1,5,5", "img/b.png,cat,,,,", "img/b.png,dog,,,,"])
    by_id = {s.sample_id: s for s in load_dataset(path).samples}
    assert by_id["img/a.png#cat"].annotation_ids == ("row 2", "row 5", "row 3")  # sorted by box, then id
    assert set(by_id) == {"img/a.png#cat", "img/a.png#dog", "img/b.png#cat", "img/b.png#dog"}


def test_a_file_name_that_reads_as_another_images_sample_id(tmp_path):
    write_png(tmp_path / "img" / "a.png#cat")
    path = csv(tmp_path, ["img/a.png#cat,,,,,", "img/a.png,cat,1,1,5,5"])
    message = load_error(path)
    assert "row 2 ('img/a.png#cat') and row 3 ('img/a.png')" in message and "same sample id" in message


def test_csv_index_labels_that_crashed_or_hung(tmp_path):
    # '²'.isdigit() is True and int('²') raised ValueError; '1' * 5000 raised ValueError (int digit limit)
    ds = load_dataset(csv(tmp_path, ["img/a.png,²,1,1,5,5", "img/b.png," + "1" * 5000 + ",1,1,5,5"]))
    assert sorted(ds.class_names) == sorted(["²", "1" * 5000]) and not ds.labels_are_indices
    # a 12-digit index made a class list of 10**12 names (memory, time); a 7-digit number is a name
    ds = load_dataset(csv(tmp_path, ["img/a.png,0,1,1,5,5", "img/b.png,100000000000,1,1,5,5"]))
    assert ds.class_names == ["0", "100000000000"] and not ds.labels_are_indices
    ds = load_dataset(csv(tmp_path, ["img/a.png,0,1,1,5,5", "img/b.png,999999,1,1,5,5"]))
    assert len(ds.class_names) == 1_000_000 and ds.labels_are_indices


# ---------------------------------------------------------------- masks (COCO segmentation)

_MASK_CASES = r"""
import json, sys
from validator.data.masks import MaskError, decode_mask
from validator.data.records import MaskRef
for seg in json.loads(sys.argv[1]):
    try:
        mask = decode_mask(MaskRef("coco", json.dumps(seg)), 20, 10)
        print("OK", int(mask.sum()))
    except MaskError as exc:
        print("MaskError", exc)
    except Exception as exc:
        print("CRASH", type(exc).__name__, exc)
    sys.stdout.flush()
"""


def test_coco_segmentations_that_crashed_pycocotools_are_mask_errors():
    """Run in a child process: on today's main these segfault (NaN or huge polygon coordinates), raise
    OverflowError/TypeError (uncompressed counts), or decode memory pycocotools does not own (a compressed
    RLE whose counts overrun the image: a 'mask' of 1073 pixels on a 200-pixel image)."""
    cases = [
        [[0, 0, 1e12, 0, 0, 1e12]],  # segfault
        [[float("nan"), 0, 5, 0, 0, 5]],  # segfault
        [[-1e12, 0, 5, 0, 0, 5]],  # segfault
        [[0, 0, 1e6, 0, 0, 1e6]],  # an outline of 10**7 points, decoded for a 20x10 image
        {"size": [10, 20], "counts": [-5, 205]},  # OverflowError
        {"size": [10, 20], "counts": ["a"]},  # TypeError
        {"size": [10, 20], "counts": [200.5, -0.5]},  # floats summing to h*w
        {"size": 7, "counts": "a"},  # TypeError: int is not iterable
        {"size": [10, 20], "counts": "zzzzzzzz"},  # counts overrun the image: garbage pixels
        {"size": [10, 20], "counts": "0"},  # one count of 0: the rest of the mask uninitialised
        {"size": [10, 20], "counts": "é"},  # UnicodeEncodeError
    ]
    text = json.dumps(cases)
    run = subprocess.run([sys.executable, "-c", _MASK_CASES, text], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and len(lines) == len(cases), (run.returncode, run.stdout, run.stderr[-2000:])
    assert all(line.startswith("MaskError") for line in lines), lines


def test_compressed_rle_counts_are_decoded_as_pycocotools_does():
    from pycocotools import mask as coco_mask

    from validator.data.masks import _rle_string_counts, decode_mask
    from validator.data.records import MaskRef

    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        mask = np.asfortranarray(rng.random((h, w)) < rng.random())
        rle = coco_mask.encode(mask.astype(np.uint8))
        counts = _rle_string_counts(rle["counts"].decode())
        assert sum(counts) == h * w
        expected = coco_mask.decode(coco_mask.frPyObjects({"size": [int(h), int(w)], "counts": counts}, h, w))
        np.testing.assert_array_equal(expected.astype(bool), mask)
        if mask.any():
            seg = {"size": [int(h), int(w)], "counts": rle["counts"].decode()}
            np.testing.assert_array_equal(decode_mask(MaskRef("coco", json.dumps(seg)), int(w), int(h)), mask)


# ---------------------------------------------------------------- DICOM header values


@pytest.mark.parametrize("tags, reason", [
    ({(0x0028, 0x1053): ("DS", b"nan")}, "DICOM RescaleSlope is not a finite number"),  # NaN pixels, silently
    ({(0x0028, 0x1053): ("DS", b"abc")}, "DICOM RescaleSlope is not a number"),  # ValueError
    ({(0x0028, 0x0008): ("IS", b"abc")}, "DICOM NumberOfFrames is not a number"),  # ValueError
    ({(0x0028, 0x0008): ("IS", b"nan")}, "DICOM NumberOfFrames is not a"),  # ValueError
    ({(0x0028, 0x1050): ("DS", b"inf"), (0x0028, 0x1051): ("DS", b"40")}, "DICOM WindowCenter is not a finite"),
])
def test_dicom_header_values_that_are_not_numbers_refuse_the_file(tmp_path, tags, reason):
    import struct

    from test_fuzz_readers import dicom_element

    from validator.data.images import ImageReadError, read_image

    us = lambda v: struct.pack("<H", v)  # noqa: E731
    elements = {(0x0028, 0x0002): ("US", us(1)), (0x0028, 0x0004): ("CS", b"MONOCHROME2"),
                (0x0028, 0x0010): ("US", us(2)), (0x0028, 0x0011): ("US", us(3)), (0x0028, 0x0100): ("US", us(8)),
                (0x0028, 0x0101): ("US", us(8)), (0x0028, 0x0102): ("US", us(7)), (0x0028, 0x0103): ("US", us(0)),
                (0x7FE0, 0x0010): ("OB", bytes(range(6))), **tags}
    meta = dicom_element(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1")
    body = b"".join(dicom_element(g, e, vr, v) for (g, e), (vr, v) in sorted(elements.items()))
    path = tmp_path / "x.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + dicom_element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta)))
                     + meta + body)
    with pytest.raises(ImageReadError, match=reason):
        read_image(path, 1)
    del elements[next(iter(tags))]  # the same file without the odd tag reads
    body = b"".join(dicom_element(g, e, vr, v) for (g, e), (vr, v) in sorted(elements.items()))
    path.write_bytes(b"\x00" * 128 + b"DICM" + dicom_element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta)))
                     + meta + body)
    image, _ = read_image(path, 1)
    assert image.shape == (2, 3, 1) and np.isfinite(image).all()
