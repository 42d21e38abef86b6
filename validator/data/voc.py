"""Pascal VOC reader: a folder with ``Annotations/*.xml`` and ``JPEGImages/``.

VOC ``bndbox`` values are 1-based, inclusive pixel indices: pixel index i (1-based) covers the continuous
interval [i-1, i). So the continuous box is x0 = xmin - 1, y0 = ymin - 1, x1 = xmax, y1 = ymax, and
xmin == xmax is a valid one-pixel-wide box. Every object is kept, ``difficult`` ones included.
Annotation ids are ``<xml stem>#<object index, 0-based>``. Default class order: sorted names.
Where ``SegmentationObject/<xml stem>.png`` exists (VOC's instance masks, an indexed PNG), object i of the
XML is the pixels of value i + 1 (255 is VOC's "void" outline and belongs to no object).

Identity: one XML per image. Two XMLs naming the same image file (``<filename>``, however spelt) are a
DataError naming both (validator.data.build): their objects would be two samples of one image, each scored
with only its own boxes as the object. Annotation ids are unique by construction. The same object twice in
one XML (same name and box) is kept: it adds nothing to the region.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from validator.data.build import RawBox, RawImage, is_file
from validator.data.classes import ClassMap
from validator.data.records import DataIssue, MaskRef
from validator.errors import DataError
from validator.limits import MAX_TEXT_BYTES, refuse_larger_than

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def voc_root(path: Path) -> Path:
    """The VOC root for ``path`` (the root itself, or its ``Annotations`` folder)."""
    return path.parent if path.name == "Annotations" else path


def read_voc(
    path: Path, *, images_dir: Path | None, classes: Sequence[str] | None
) -> tuple[list[RawImage], ClassMap, list[DataIssue]]:
    root = voc_root(path)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise DataError(f"{root}: a VOC dataset needs an Annotations/ folder")
    xml_files = sorted(ann_dir.glob("*.xml"))
    if not xml_files:
        raise DataError(f"{ann_dir}: no .xml annotation files")
    image_root = images_dir if images_dir is not None else root / "JPEGImages"

    images = [_read_xml(xml_file, image_root, root / "SegmentationObject") for xml_file in xml_files]
    names = sorted({box.label for image in images for box in image.boxes})
    class_map = ClassMap(classes if classes is not None else names, scoped=classes is not None)
    return images, class_map, []


def _read_xml(xml_file: Path, image_root: Path, segmentation_dir: Path) -> RawImage:
    try:
        refuse_larger_than(xml_file, MAX_TEXT_BYTES, f"annotation file {xml_file}", error=DataError)
        doc = ET.parse(xml_file).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{xml_file}: not valid XML: {exc}") from exc
    except OSError as exc:  # a folder called x.xml, a file without read permission
        raise DataError(f"cannot read {xml_file}: {exc.strerror or exc}") from exc
    image = RawImage(
        key=xml_file.stem,
        path=_image_path(doc.findtext("filename"), xml_file.stem, image_root),
        annotation_file=str(xml_file),
        size=_size(doc),
    )
    instances = segmentation_dir / f"{xml_file.stem}.png"
    instances = instances if is_file(instances) else None
    for i, obj in enumerate(doc.findall("object")):
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise DataError(f"{xml_file}: object {i} is missing key 'name'")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DataError(f"{xml_file}: object {i} is missing key 'bndbox'")
        coords, problem = _bndbox_coords(bndbox, xml_file, i)
        mask = MaskRef("png", str(instances), i + 1) if instances is not None else None
        image.boxes.append(RawBox(f"{xml_file.stem}#{i}", name.strip(), coords, problem, mask))
    return image


def _bndbox_coords(bndbox: ET.Element, xml_file: Path, index: int):
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = bndbox.findtext(key)
        if text is None:
            raise DataError(f"{xml_file}: object {index} bndbox is missing key '{key}'")
        try:
            values.append(float(text))
        except ValueError:
            return None, f"non-numeric bndbox {key} {text.strip()!r}"
    xmin, ymin, xmax, ymax = values
    # 1-based inclusive indices -> continuous coordinates with exclusive upper edge.
    return (xmin - 1.0, ymin - 1.0, xmax, ymax), None


def _size(doc: ET.Element) -> tuple[int, int] | None:
    try:
        width = int(float(doc.findtext("size/width") or 0))
        height = int(float(doc.findtext("size/height") or 0))
    except (ValueError, OverflowError):  # OverflowError: inf, 1e400
        return None
    return (width, height) if width > 0 and height > 0 else None  # some exports write 0


def _image_path(filename: str | None, stem: str, image_root: Path) -> Path:
    if filename and filename.strip():
        return image_root / filename.strip()
    candidates = [image_root / f"{stem}{suffix}" for suffix in _IMAGE_SUFFIXES]
    return next((c for c in candidates if is_file(c)), candidates[0])
