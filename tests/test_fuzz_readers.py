"""A fuzz pass over the readers (issue 22): hypothesis generates COCO documents, VOC XML folders, CSV
manifests, COCO segmentations, mask PNGs and image files, valid and subtly broken (wrong types, missing
keys, NaN / negative / huge coordinates, unicode, repeated ids and names, truncated or damaged headers).

The property, for every input: the reader returns records consistent with the input (every sample's
annotations belong to its image and its class, its boxes lie inside the annotated ones, sample ids are
unique, and no annotation disappears without a recorded issue) or raises the project's own error (a
CamgateError naming the file). Any other exception, a crash or a hang fails the test.

Deterministic and bounded for CI: derandomize=True (the same examples on every run), no example database,
a fixed max_examples per test; the whole file runs in about 17 s (9.7 s of CPU) on a loaded 2-core machine.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from validator.data import load_dataset
from validator.data.images import ImageReadError, read_image
from validator.data.masks import MaskError, decode_mask
from validator.data.records import MaskRef
from validator.errors import CamgateError

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=5000,  # ms per example: generous for a loaded CI machine; a hang is caught by the timeout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
pytestmark = [
    pytest.mark.timeout(300),
    # pydicom and Pillow warn about the very values under test (invalid VRs, corrupt EXIF)
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def fuzz(examples: int) -> settings:
    """The shared settings with this test's fixed budget of examples."""
    return settings(FUZZ, max_examples=examples)

IMAGE_NAMES = ("a.png", "b.png", "c.jpg")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Images shared by every example: images/ (COCO), img/ (CSV), JPEGImages/ (VOC)."""
    root = tmp_path_factory.mktemp("fuzz")
    for folder in ("images", "img", "voc/JPEGImages"):
        for name in IMAGE_NAMES:
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), np.full((30, 40, 3), 90, np.uint8))
    return root


def check_error(exc: BaseException, named: Path) -> None:
    """A refusal is the project's own error, and it names the file."""
    assert isinstance(exc, CamgateError), f"{type(exc).__name__}: {exc}"
    assert str(named) in str(exc), str(exc)


def load_or_error(path: Path, named: Path, **kwargs):
    try:
        ds = load_dataset(path, **kwargs)
    except Exception as exc:  # checked: only CamgateError naming the file passes
        check_error(exc, named)
        event(f"refused: {str(exc).replace(str(named), '<file>')[:40]}")  # --hypothesis-show-statistics
        return None
    event(f"read: {min(len(ds.samples), 3)}+ samples, boxes: {any(s.boxes for s in ds.samples)}")
    return ds


def inside(box, outer) -> bool:
    """``box`` (kept, maybe clipped) lies within ``outer`` (as annotated) and is a proper finite box."""
    if not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        return False
    tol = 1e-6 * max(1.0, *(abs(v) for v in outer if math.isfinite(v)))
    return (box[0] >= outer[0] - tol and box[1] >= outer[1] - tol
            and box[2] <= outer[2] + tol and box[3] <= outer[3] + tol)


def check_common(ds) -> None:
    ids = [s.sample_id for s in ds.samples]
    assert len(ids) == len(set(ids)), "sample ids repeat"
    # one image, one identity: an image file is one key, and one sample per class of it
    keys: dict[str, set[str]] = {}
    for sample in ds.samples:
        keys.setdefault(sample.image_path, set()).add(image_key(sample))
    assert all(len(k) == 1 for k in keys.values()), f"one image file under several names: {keys}"
    pairs = [(s.image_path, s.class_id) for s in ds.samples]
    assert len(pairs) == len(set(pairs)), "two samples of one image and one class"
    for sample in ds.samples:
        assert len(sample.boxes) == len(sample.annotation_ids)
        assert Path(sample.image_path).is_file()
        if sample.class_name is not None:
            assert ds.class_names[sample.class_id] == sample.class_name


def accounted(ds) -> set[str]:
    """Every annotation id that ended in a sample or in a recorded issue."""
    seen = {a for s in ds.samples for a in s.annotation_ids}
    for issue in ds.issues:
        if issue.annotation:
            seen.update(issue.annotation.split(","))
    return seen


def image_key(sample) -> str:
    suffix = f"#{sample.class_name}" if sample.class_name is not None else ""
    assert sample.sample_id.endswith(suffix)
    return sample.sample_id[: len(sample.sample_id) - len(suffix)]


# ---------------------------------------------------------------- value pools

HUGE_INT = 10**400  # valid JSON, too large for a float
odd_numbers = st.one_of(
    st.integers(-5, 60),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0, -0.0, 1e-300, 1e300, HUGE_INT, -HUGE_INT]),
)
odd_values = st.one_of(odd_numbers, st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2),
                       st.just({"x": 1}))


def sometimes(good, bad, one_in: int = 25):
    """``good``, or ``bad`` about once in ``one_in`` draws: a document has a few dozen fields, and most
    documents must get past the first check for the deeper rules to be reached at all."""
    return st.sampled_from(range(one_in)).flatmap(lambda i: bad if i == one_in - 1 else good)


def rare(one_in: int = 25):
    return st.sampled_from(range(one_in)).map(lambda i: i == one_in - 1)


def odd_id():
    """An id a reader must refuse or tell apart: the wrong type, or a string that prints like another id."""
    return st.one_of(st.sampled_from(["1", "a", "", "é", "#0"]), odd_values)


small_boxes = st.tuples(st.integers(-5, 45), st.integers(-5, 35), st.integers(0, 25), st.integers(0, 25)).map(list)
float_boxes = st.lists(st.floats(-50, 80, allow_nan=False), min_size=4, max_size=4)
odd_boxes = st.one_of(st.lists(odd_numbers, min_size=4, max_size=4), st.lists(odd_numbers, max_size=6), odd_values)
file_pool = ["a.png", "b.png", "c.jpg", "missing.png", "ü/ß.png", "images/b.png"]
odd_file_names = st.one_of(
    st.sampled_from(["./a.png", "a.png#cat", "x" * 300 + ".png", "a\x00.png", "/nonexistent/a.png", "../a.png", " "]),
    st.text(max_size=12), odd_values)


def maybe_drop(draw, entry: dict, keys: tuple[str, ...]) -> object:
    """Now and then a required key goes missing or the entry is not an object at all."""
    if draw(rare(40)):
        entry.pop(draw(st.sampled_from(keys)), None)
    elif draw(rare(60)):
        return draw(st.sampled_from([None, [], "entry", 3]))
    return entry


@st.composite
def segmentations(draw, width: int = 40, height: int = 30):
    """COCO segmentations for a width x height image: polygons (coordinates mostly near the image, now and
    then NaN, infinite or far away), uncompressed RLE (counts mostly summing to h * w) and compressed RLE
    strings (mostly pycocotools' own encoding of a random mask), each now and then broken."""
    from pycocotools import mask as coco_mask

    coordinate = sometimes(st.floats(-width, 2 * width, allow_nan=False), odd_numbers, 8)
    polygon = st.integers(3, 6).flatmap(lambda n: st.lists(coordinate, min_size=2 * n, max_size=2 * n))
    size = sometimes(st.just([height, width]), st.one_of(st.lists(st.integers(0, 50), max_size=3), odd_values), 10)
    kind = draw(st.sampled_from(["polygons", "counts", "string", "odd"]))
    if kind == "polygons":
        polygons = draw(st.lists(polygon, min_size=1, max_size=2))
        if draw(rare(8)):
            polygons.append(draw(st.lists(odd_numbers, max_size=7)))
        return polygons
    if kind == "counts":
        cuts = sorted(draw(st.lists(st.integers(0, width * height), max_size=6)))
        counts = [b - a for a, b in zip([0, *cuts], [*cuts, width * height], strict=True)]
        if draw(rare(6)):
            counts[draw(st.integers(0, len(counts) - 1))] = draw(st.one_of(st.integers(-3, 2000), odd_values))
        return {"size": draw(size), "counts": counts}
    if kind == "string":
        pixels = draw(st.lists(st.booleans(), min_size=width * height, max_size=width * height))
        mask = np.asfortranarray(np.array(pixels, np.uint8).reshape(height, width))
        text = coco_mask.encode(mask)["counts"].decode()
        if draw(rare(4)):
            text = draw(st.text(alphabet=[chr(c) for c in range(40, 125)], max_size=12))
        return {"size": draw(size), "counts": text}
    return draw(st.one_of(st.just([]), st.just({"size": [height, width]}), odd_values))


@st.composite
def coco_docs(draw):
    """Mostly well-formed documents (unique ids, joins to listed ids, boxes near the image), each field now
    and then replaced by a clash (a repeated id, name or file) or by a value of the wrong kind."""
    n_cats = draw(sometimes(st.integers(1, 3), st.just(0), 20))
    cat_ids = draw(st.lists(st.integers(1, 9), min_size=n_cats, max_size=n_cats, unique=True))
    names = draw(st.lists(st.sampled_from(["cat", "dog", "bird", " fox ", "ß"]), min_size=n_cats, max_size=n_cats,
                          unique=True))
    categories = []
    for cid, name in zip(cat_ids, names, strict=True):
        cat = {"id": draw(sometimes(st.just(cid), st.one_of(st.sampled_from(cat_ids), odd_id()))),
               "name": draw(sometimes(st.just(name), st.one_of(st.sampled_from(names + ["cat "]), odd_values)))}
        categories.append(maybe_drop(draw, cat, ("id", "name")))
    n_images = draw(sometimes(st.integers(1, 4), st.just(0), 20))
    image_ids = draw(st.lists(st.integers(1, 99), min_size=n_images, max_size=n_images, unique=True))
    files = draw(st.lists(st.sampled_from(file_pool), min_size=n_images, max_size=n_images, unique=True))
    images = []
    for image_id, file_name in zip(image_ids, files, strict=True):
        entry = {"id": draw(sometimes(st.just(image_id), st.one_of(st.sampled_from(image_ids), odd_id()))),
                 "file_name": draw(sometimes(st.just(file_name), st.one_of(st.sampled_from(file_pool), odd_file_names)))}
        if draw(st.booleans()):
            entry["width"] = draw(sometimes(st.sampled_from([40, 40.0, 20, 0]), odd_values, 10))
            entry["height"] = draw(sometimes(st.sampled_from([30, 30.0, 15, -1]), odd_values, 10))
        images.append(maybe_drop(draw, entry, ("id", "file_name")))
    annotations = []
    n_anns = draw(sometimes(st.integers(1, 6), st.just(0), 20))
    ann_ids = draw(st.lists(st.integers(0, 1000), min_size=n_anns, max_size=n_anns, unique=True))
    for ann_id in ann_ids:
        ann = {"image_id": draw(sometimes(st.sampled_from(image_ids or [1]), st.one_of(st.integers(0, 99), odd_id()))),
               "category_id": draw(sometimes(st.sampled_from(cat_ids or [1]), st.one_of(st.integers(0, 9), odd_id()))),
               "bbox": draw(sometimes(st.one_of(small_boxes, float_boxes), odd_boxes, 10))}
        if not draw(rare(10)):  # the id is optional: '#<index>' stands in
            ann["id"] = draw(sometimes(st.just(ann_id), st.one_of(st.sampled_from(ann_ids), odd_id())))
        if draw(rare(4)):
            ann["segmentation"] = draw(segmentations())
        annotations.append(maybe_drop(draw, ann, ("image_id", "category_id", "bbox")))
    doc = {"images": images, "annotations": annotations, "categories": categories}
    if draw(rare(30)):
        del doc[draw(st.sampled_from(sorted(doc)))]
    elif draw(rare(30)):
        doc[draw(st.sampled_from(sorted(doc)))] = draw(odd_values)
    elif draw(rare(30)):
        return draw(st.sampled_from([[], "coco", None, 1]))
    return doc


def coco_candidates(file_name: str, json_dir: Path, images_dir: Path | None) -> list[Path]:
    relative = Path(file_name)
    if images_dir is not None:
        return [images_dir / relative, images_dir / relative.name]
    if relative.is_absolute():
        return [relative]
    return [json_dir / relative, json_dir / "images" / relative]


def resolved(path: Path) -> str | None:
    try:
        return str(path.resolve()) if path.is_file() else None
    except (OSError, ValueError):
        return None


@fuzz(400)
@given(doc=coco_docs(), raw=sometimes(st.none(), st.binary(max_size=40), 30),
       use_dir=st.booleans(), classes=st.sampled_from([None, None, ["cat", "dog"], ["dog", "ß", "bird"]]))
def test_fuzz_coco(workspace, doc, raw, use_dir, classes):
    path = workspace / "ann.json"
    if raw is not None:  # now and then not JSON at all
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(doc, allow_nan=True), encoding="utf-8")
    images_dir = workspace / "images" if use_dir else None
    ds = load_or_error(path, path, images_dir=images_dir, classes=classes)
    if ds is None:
        return
    check_common(ds)
    anns = {(str(a["id"]) if "id" in a else f"#{i}"): a for i, a in enumerate(doc["annotations"])}
    assert len(anns) == len(doc["annotations"]), "annotation ids repeat, yet the reader accepted them"
    for sample in ds.samples:
        key = image_key(sample)
        (entry,) = [e for e in doc["images"] if e["file_name"] == key]  # one entry per file name
        assert sample.image_path in {resolved(c) for c in coco_candidates(key, path.parent, images_dir)}
        for ann_id, box in zip(sample.annotation_ids, sample.boxes, strict=True):
            ann = anns[ann_id]
            # joined by exact id: never an annotation of another image or of another class
            assert type(ann["image_id"]) is type(entry["id"]) and ann["image_id"] == entry["id"]
            (category,) = [c for c in doc["categories"]
                           if type(c["id"]) is type(ann["category_id"]) and c["id"] == ann["category_id"]]
            assert str(category["name"]).strip() == sample.class_name
            x, y, w, h = (float(v) for v in ann["bbox"])
            assert inside(box, (x, y, x + w, y + h)), (box, ann["bbox"])
    assert set(anns) <= accounted(ds), "an annotation vanished without a recorded issue"
    kept = {image_key(s) for s in ds.samples}
    recorded = {i.file for i in ds.issues}
    for entry in doc["images"]:  # every listed image is a sample or a recorded issue: none replaced another
        paths = [resolved(c) for c in coco_candidates(entry["file_name"], path.parent, images_dir)]
        assert entry["file_name"] in kept or any(p is None or p in recorded for p in paths) or \
            any(str(c) in recorded for c in coco_candidates(entry["file_name"], path.parent, images_dir)), entry


# ---------------------------------------------------------------- VOC

xml_text = st.one_of(
    st.sampled_from(["1", "10", "10.5", "0", "-5", "nan", "inf", "-inf", "1e400", "1_0", " 7 ", "", "abc", "٣"]),
    st.integers(-10, 60).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=6),
)
voc_image_names = ["a.png", "b.png", "c.jpg", "missing.jpg"]


@st.composite
def voc_files(draw):
    """{stem: (xml bytes, [(name, {key: text})] as written, or None for raw bytes)}: mostly well-formed XMLs,
    one per image; now and then two XMLs of one image, a missing key, odd text, truncated or raw bytes."""
    files = {}
    stems = draw(st.lists(st.sampled_from(["a", "b", "a#1", "ü", "c"]), min_size=1, max_size=3, unique=True))
    images = draw(st.lists(st.sampled_from(voc_image_names), min_size=len(stems), max_size=len(stems), unique=True))
    for stem, image in zip(stems, images, strict=True):
        if draw(rare(30)):
            files[stem] = (draw(st.binary(max_size=60)), None)
            continue
        root = ET.Element("annotation")
        if not draw(rare(8)):  # without <filename>, the image is found by the XML's stem
            ET.SubElement(root, "filename").text = draw(sometimes(st.just(image), st.one_of(
                st.sampled_from(voc_image_names + ["./a.png", " b.png ", "x" * 300]), xml_text), 15))
        if draw(st.booleans()):
            size = ET.SubElement(root, "size")
            ET.SubElement(size, "width").text = draw(sometimes(st.just("40"), xml_text, 10))
            ET.SubElement(size, "height").text = draw(sometimes(st.just("30"), xml_text, 10))
        objects = []
        for _ in range(draw(st.integers(0, 3))):
            obj = ET.SubElement(root, "object")
            name = draw(sometimes(st.sampled_from(["cat", "dog", " cat ", "ü"]), xml_text, 15))
            if not draw(rare(40)):
                ET.SubElement(obj, "name").text = name
            coords = {}
            if not draw(rare(40)):
                bndbox = ET.SubElement(obj, "bndbox")
                x0, y0 = draw(st.integers(-3, 40)), draw(st.integers(-3, 30))
                good = {"xmin": x0, "ymin": y0, "xmax": x0 + draw(st.integers(-1, 20)),
                        "ymax": y0 + draw(st.integers(-1, 20))}
                for key in ("xmin", "ymin", "xmax", "ymax"):
                    if not draw(rare(60)):
                        coords[key] = draw(sometimes(st.just(str(good[key])), xml_text, 20))
                        ET.SubElement(bndbox, key).text = coords[key]
            objects.append((name, coords))
        data = ET.tostring(root, encoding="utf-8")
        if draw(rare(30)):
            data = data[: draw(st.integers(0, len(data)))]
        files[stem] = (data, objects)
    return files


@fuzz(300)
@given(files=voc_files(), classes=st.sampled_from([None, None, ["cat", "dog"]]))
def test_fuzz_voc(workspace, files, classes):
    root = workspace / "voc"
    shutil.rmtree(root / "Annotations", ignore_errors=True)
    (root / "Annotations").mkdir()
    for stem, (data, _) in files.items():
        (root / "Annotations" / f"{stem}.xml").write_bytes(data)
    ds = load_or_error(root, root, classes=classes)
    if ds is None:
        return
    check_common(ds)
    for sample in ds.samples:
        assert os.path.dirname(sample.image_path) == str((root / "JPEGImages").resolve())
        stem = image_key(sample)
        data, objects = files[stem]
        for ann_id, box in zip(sample.annotation_ids, sample.boxes, strict=True):
            owner, index = ann_id.rsplit("#", 1)
            assert owner == stem
            name, coords = objects[int(index)]
            assert name.strip() == sample.class_name
            xmin, ymin, xmax, ymax = (float(coords[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert inside(box, (xmin - 1, ymin - 1, xmax, ymax)), (box, coords)
    for stem, (_, objects) in files.items():  # every object is in a sample or a recorded issue
        for i in range(len(objects or ())):
            assert f"{stem}#{i}" in accounted(ds)


# ---------------------------------------------------------------- CSV

csv_field = st.one_of(
    st.sampled_from(["", "1", "5", "12.5", "-3", "nan", "inf", "1e400", "0x10", " 7 ", "abc", "1" * 30, "²"]),
    st.integers(-5, 50).map(str),
    st.text(max_size=6),
)
csv_images = st.sampled_from(["a.png", "img/a.png", "img/b.png", "img/c.jpg", "img/missing.png", " img/b.png"])
odd_csv_images = st.one_of(st.sampled_from(["./img/a.png", "img/a.png#cat", "x" * 300, ""]), st.text(max_size=8))
csv_labels = st.sampled_from(["cat", "dog", " cat", "0", "1", "2", ""])
odd_csv_labels = st.one_of(st.sampled_from(["007", "1" * 12, "²", "999999"]), st.text(max_size=5))


@st.composite
def csv_files(draw):
    """Mostly well-formed manifests (several rows per image, several labels, box-less rows); now and then a
    missing column, a second spelling of an image, odd labels and coordinates, a short row, a BOM, a
    truncated file."""
    header = ["image", "label", "xmin", "ymin", "xmax", "ymax"]
    if draw(rare(30)):
        header.remove(draw(st.sampled_from(header)))
    if draw(rare(5)):
        header.append("mask")
    if draw(rare(10)):
        header = [f" {h}" for h in header]
    rows = []
    for _ in range(draw(st.integers(0, 7))):
        row = [draw(sometimes(csv_images, odd_csv_images, 20)), draw(sometimes(csv_labels, odd_csv_labels, 15))]
        if draw(rare(6)):
            row += [""] * 4  # an image-level label (or an unlabelled image)
        else:
            x0, y0 = draw(st.integers(-3, 45)), draw(st.integers(-3, 35))
            good = [x0, y0, x0 + draw(st.integers(-1, 20)), y0 + draw(st.integers(-1, 20))]
            row += [draw(sometimes(st.just(str(v)), csv_field, 20)) for v in good]
        if draw(rare(40)):
            row = row[: draw(st.integers(0, len(row)))]
        if header[-1].strip() == "mask" and draw(st.booleans()):
            row.append(draw(st.sampled_from(["", "img/a.png", "missing.png"])))
        rows.append(row)
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    text = buffer.getvalue()
    if draw(rare(10)):
        text = "\ufeff" + text
    if draw(rare(30)):
        text = text[: draw(st.integers(0, len(text)))] + draw(st.sampled_from(['"', "\x00", "\r", "\n\n"]))
    return text


@fuzz(400)
@given(text=csv_files(), classes=st.sampled_from([None, None, ["cat", "dog"]]), use_dir=st.booleans())
def test_fuzz_csv(workspace, text, classes, use_dir):
    path = workspace / "set.csv"
    path.write_text(text, encoding="utf-8")
    images_dir = workspace / "img" if use_dir else None
    ds = load_or_error(path, path, classes=classes, images_dir=images_dir)
    if ds is None:
        return
    check_common(ds)
    with open(path, newline="", encoding="utf-8-sig") as fh:  # the rows by line number, as csv numbers them
        reader = csv.DictReader(fh)
        reader.fieldnames = [n.strip() for n in reader.fieldnames or []]
        by_line = {}
        for row in reader:
            by_line[reader.line_num] = row
    for sample in ds.samples:
        key = image_key(sample)
        for ann_id, box in zip(sample.annotation_ids, sample.boxes, strict=True):
            row = by_line[int(ann_id.removeprefix("row "))]
            assert (row["image"] or "").strip() == key
            label = (row["label"] or "").strip()
            as_index = label.isascii() and label.isdigit() and int(label) < len(ds.class_names)
            assert label == sample.class_name or (as_index and ds.class_names[int(label)] == sample.class_name)
            coords = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert inside(box, coords), (box, coords)


# ---------------------------------------------------------------- image files and masks


@pytest.fixture(scope="module")
def encoded_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = (rng.random((9, 11, 3)) * 255).astype(np.uint8)
    out = [cv2.imencode(".png", pixels)[1].tobytes(), cv2.imencode(".jpg", pixels)[1].tobytes(),
           cv2.imencode(".png", pixels[:, :, 0])[1].tobytes(),
           cv2.imencode(".png", (pixels.astype(np.uint16) * 257))[1].tobytes(),
           cv2.imencode(".png", np.dstack([pixels, pixels[:, :, :1]]))[1].tobytes(),
           cv2.imencode(".bmp", pixels)[1].tobytes(), cv2.imencode(".tiff", pixels)[1].tobytes()]
    return out


@st.composite
def image_bytes(draw, encoded: list[bytes]):
    kind = draw(st.sampled_from([2, 3, 4, 5, 2, 3, 4, 5, 0, 1]))  # mostly a damaged real file
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:  # a magic number and garbage: PNG, JPEG, BMP, TIFF, GIF, DICOM preamble
        magic = draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"GIF89a",
                                      b"\x00" * 128 + b"DICM"]))
        return magic + draw(st.binary(max_size=120)) + draw(st.sampled_from([b"", b"IEND\xaeB`\x82", b"\xff\xd9"]))
    data = bytearray(draw(st.sampled_from(encoded)))
    if kind == 2:  # truncated anywhere
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == 3:  # damaged header bytes (signature, IHDR / APP0 / BMP header), sizes left alone
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(15, len(data) - 1)))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == 4:  # garbage in the middle, end marker kept
        at = draw(st.integers(0, len(data) - 1))
        return bytes(data[:at] + draw(st.binary(min_size=1, max_size=30)) + data[at + 20:])
    return bytes(data) + draw(st.binary(max_size=30))  # trailing bytes


@fuzz(400)
@given(data=st.data(), channels=st.sampled_from([1, 3, 4]), suffix=st.sampled_from([".png", ".jpg", ".dcm", ""]))
def test_fuzz_image_headers(workspace, encoded_images, data, channels, suffix):
    raw = data.draw(image_bytes(encoded_images))
    path = workspace / f"fuzz{suffix}"
    path.write_bytes(raw)
    try:
        image, conversions = read_image(path, channels)
    except ImageReadError as exc:
        event(f"refused: {str(exc)[:30]}")
        return
    event("read")
    assert image.ndim == 3 and image.shape[2] == channels and image.size > 0
    assert image.dtype in (np.uint8, np.float32) and np.isfinite(image).all()
    assert isinstance(conversions, list)


def dicom_element(group: int, element: int, vr: str, value: bytes) -> bytes:
    """One explicit-VR little-endian data element (DICOM PS3.5 7.1.2), the value padded to an even length."""
    value += (b"\x00" if vr in ("UI", "OB", "OW") else b" ") * (len(value) % 2)
    head = struct.pack("<HH", group, element) + vr.encode()
    if vr in ("OB", "OW"):
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


@st.composite
def dicom_bytes(draw):
    """A small DICOM file written byte by byte (pydicom's writer refuses the very values under test), its
    header tags fuzzed: frame count, rescale, window, bit depths, photometric interpretation, pixel data."""
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    photometric = draw(sometimes(st.sampled_from(["MONOCHROME2", "MONOCHROME1", "RGB"]),
                                 st.sampled_from(["PALETTE COLOR", "YBR_FULL", "", "x"]), 8))
    samples = 3 if photometric in ("RGB", "YBR_FULL") else 1
    bits = draw(st.sampled_from([8, 16]))
    number = sometimes(st.sampled_from(["1", "0", "-1", "0.5", "40", "-1024", "2.5\\7", " 3 "]),
                       st.sampled_from(["1e300", "-1e308", "nan", "inf", "abc", "", "1\\2"]), 6)
    us = lambda v: struct.pack("<H", v)  # noqa: E731
    elements = [((0x0028, 0x0002), "US", us(samples)), ((0x0028, 0x0004), "CS", photometric.encode()),
                ((0x0028, 0x0010), "US", us(rows)), ((0x0028, 0x0011), "US", us(cols)),
                ((0x0028, 0x0100), "US", us(bits)),
                ((0x0028, 0x0101), "US", us(draw(sometimes(st.sampled_from([bits, bits, 12, 1]),
                                                           st.sampled_from([0, 40]), 10)))),
                ((0x0028, 0x0102), "US", us(bits - 1)),
                ((0x0028, 0x0103), "US", us(draw(st.sampled_from([0, 1]))))]
    if samples == 3:
        elements.append(((0x0028, 0x0006), "US", us(0)))
    if draw(rare(6)):
        elements.append(((0x0028, 0x0008), "IS", draw(number).encode()))
    for tag, vr in (((0x0028, 0x1050), "DS"), ((0x0028, 0x1051), "DS"),
                    ((0x0028, 0x1052), "DS"), ((0x0028, 0x1053), "DS")):
        if draw(st.booleans()):
            elements.append((tag, vr, draw(number).encode()))
    if draw(st.booleans()):
        function = draw(st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID", "OTHER", ""]))
        elements.append(((0x0028, 0x1056), "CS", function.encode()))
    n = rows * cols * samples * (bits // 8)
    full = not draw(rare(6))
    pixels = draw(st.binary(min_size=n, max_size=n)) if full else draw(st.binary(max_size=n))
    elements.append(((0x7FE0, 0x0010), "OB" if bits == 8 else "OW", pixels))
    meta = dicom_element(0x0002, 0x0010, "UI", b"1.2.840.10008.1.2.1")  # explicit VR little endian
    body = b"".join(dicom_element(g, e, vr, v) for (g, e), vr, v in sorted(elements))
    group_length = dicom_element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta)))
    return b"\x00" * 128 + b"DICM" + group_length + meta + body


@fuzz(250)
@given(raw=dicom_bytes(), channels=st.sampled_from([1, 3]))
def test_fuzz_dicom_headers(workspace, raw, channels):
    path = workspace / "fuzz.dcm"
    path.write_bytes(raw)
    try:
        image, _ = read_image(path, channels)
    except ImageReadError as exc:
        event(f"refused: {str(exc)[:40]}")
        return
    event("read")
    assert image.ndim == 3 and image.shape[2] == channels and np.isfinite(image).all()


@fuzz(400)
@given(data=st.data(), width=st.integers(1, 30), height=st.integers(1, 20))
def test_fuzz_coco_segmentation(data, width, height):
    segmentation = data.draw(segmentations(width, height))
    try:
        source = json.dumps(segmentation, allow_nan=True)
    except ValueError:  # a float too large for the integer digit limit cannot be written
        return
    try:
        mask = decode_mask(MaskRef("coco", source), width, height)
    except MaskError as exc:
        event(f"refused: {str(exc)[:30]}")
        return
    event("decoded")
    assert mask.dtype == bool and mask.shape == (height, width) and mask.any()
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        expected = np.zeros(width * height, bool)  # uncompressed RLE: runs of 0s and 1s, column-major
        at = 0
        for k, run in enumerate(segmentation["counts"]):
            expected[at: at + run] = k % 2 == 1
            at += run
        np.testing.assert_array_equal(mask, expected.reshape(width, height).T)


@fuzz(200)
@given(data=st.data(), value=st.sampled_from([None, 1, 2, 255]), width=st.integers(1, 12),
       height=st.integers(1, 12))
def test_fuzz_png_masks(workspace, encoded_images, data, value, width, height):
    raw = data.draw(image_bytes(encoded_images))
    path = workspace / "mask.png"
    path.write_bytes(raw)
    try:
        mask = decode_mask(MaskRef("png", str(path), value), width, height)
    except MaskError:
        return
    assert mask.dtype == bool and mask.shape == (height, width) and mask.any()
