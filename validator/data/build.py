"""Turn the readers' raw images into samples: map classes, validate and clip boxes, group per class.

Every reader (COCO, VOC, CSV) only parses its format into ``RawImage``s; the rules that decide what is
kept and what is recorded as a DataIssue live here, once.

Identity rules shared by the readers (each reader adds its own, e.g. unique COCO ids): an image file is
listed once (two entries naming one file, however spelt, are a DataError naming both: their annotations
would be split over two samples of one image), and sample ids are unique (a file name ending in
``#<class>`` could otherwise read as another image's sample).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from validator.data.boxes import box_problem, clip_box, format_box
from validator.data.classes import ClassMap
from validator.data.records import OUT_OF_SCOPE, Box, DataIssue, Dataset, MaskRef, Sample
from validator.errors import DataError


@dataclass
class RawBox:
    """One box annotation as read: coordinates already converted to continuous (x0, y0, x1, y1)."""

    ann_id: str
    label: str
    coords: tuple[float, ...] | None
    problem: str | None = None  # why the coordinates could not be parsed, if so
    mask: MaskRef | None = None  # the object's mask, where the annotation has one


@dataclass
class RawImage:
    """One image as read from the annotation file."""

    key: str  # stable name of the image in the annotation (file name, CSV path...)
    path: Path
    annotation_file: str
    size: tuple[int, int] | None = None  # (width, height) when the annotation states it
    boxes: list[RawBox] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # image-level labels without a box (CSV)
    #: where the image is listed in ``annotation_file`` ("images[3] (id 7, file_name 'a.png')", "row 4"),
    #: for messages that must name both entries of an identity clash; "" when the file is the entry (VOC)
    origin: str = ""
    #: the resolved path (file_identity), set once by build_dataset and used as the samples' image_path
    resolved: str = field(default="", repr=False)


@dataclass
class _ClassGroup:
    class_id: int
    class_name: str
    boxes: list[Box] = field(default_factory=list)
    ann_ids: list[str] = field(default_factory=list)
    masks: list[MaskRef | None] = field(default_factory=list)
    rejected: int = 0


def build_dataset(
    images: list[RawImage],
    class_map: ClassMap,
    issues: list[DataIssue],
    *,
    fmt: str,
    source: str,
    labels_are_indices: bool = False,
) -> Dataset:
    """Samples from raw images; rejected boxes/samples are appended to ``issues``. Empty -> DataError.

    Two entries naming one image file, or two samples with one id, are a DataError naming both."""
    _check_one_entry_per_file(images)
    samples: list[Sample] = []
    owners: dict[str, RawImage] = {}  # sample id -> the image that gave it
    n_images = n_no_box = 0
    for image in images:
        image_samples = _image_samples(image, class_map, issues)
        if not image_samples:
            continue
        missing = file_problem(image.path)
        if missing:
            for sample in image_samples:
                issues.append(
                    DataIssue(
                        file=str(image.path),
                        annotation=",".join(sample.annotation_ids) or None,
                        reason=missing,
                        action="skipped_sample",
                    )
                )
            continue
        for sample in image_samples:
            other = owners.setdefault(sample.sample_id, image)
            if other is not image:
                raise DataError(
                    f"{_both(other, image)} give the same sample id '{sample.sample_id}' (a name ending in "
                    "'#<class>' reads as another image's sample): rename one of the images"
                )
        samples.extend(image_samples)
        n_images += 1
        n_no_box += int(not image_samples[0].boxes)
    if not samples:
        raise DataError(_empty_message(source, len(images), issues))
    return Dataset(
        samples=samples,
        class_names=list(class_map.names),
        issues=issues,
        format=fmt,
        source=source,
        n_images=n_images,
        n_no_box=n_no_box,
        labels_are_indices=labels_are_indices,
    )


def file_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable image file, or None. Never raises: a name too long for the file system
    or holding a NUL byte is a file that cannot be found, like any other."""
    try:
        if path.is_file():
            return None
    except (OSError, ValueError) as exc:
        return f"image file not found: {path} ({getattr(exc, 'strerror', None) or exc})"
    return f"image file not found: {path}"


def is_file(path: Path) -> bool:
    return file_problem(path) is None


def file_identity(path: Path) -> str:
    """The absolute, normalised path that two spellings of one file share (symlinks followed where they can be)."""
    try:
        return str(path.resolve())
    except (OSError, ValueError, RuntimeError):  # NUL byte, symlink loop: the spelling, normalised
        return os.path.normpath(os.path.abspath(path))


def _where(image: RawImage) -> str:
    return f"{image.annotation_file} {image.origin}".strip()


def _both(first: RawImage, second: RawImage) -> str:
    """Both entries of a clash, the shared annotation file named once."""
    if first.annotation_file == second.annotation_file and first.origin and second.origin:
        return f"{first.annotation_file}: {first.origin} and {second.origin}"
    return f"{_where(first)} and {_where(second)}"


def _check_one_entry_per_file(images: list[RawImage]) -> None:
    """An image file is listed once: two entries for one file would split its annotations over two samples
    (each scored with only some of the objects as its region), or count the image twice."""
    seen: dict[str, RawImage] = {}
    for image in images:
        image.resolved = file_identity(image.path)
        first = seen.setdefault(image.resolved, image)
        if first is not image:
            raise DataError(
                f"{_both(first, image)} name the same image file {image.resolved}: an image must be listed once "
                "(merge the two entries' annotations into one)"
            )


def _image_samples(image: RawImage, class_map: ClassMap, issues: list[DataIssue]) -> list[Sample]:
    if not image.boxes:
        return _no_box_samples(image, class_map, issues)
    groups: dict[int, _ClassGroup] = {}
    n_out_of_scope = 0
    for raw in image.boxes:
        resolved = class_map.resolve(raw.label)
        if isinstance(resolved, str) and class_map.out_of_scope(raw.label):
            n_out_of_scope += 1
            issues.append(_box_issue(image, raw, _outside(raw.label), "out_of_scope_box"))
            continue
        if isinstance(resolved, str):
            issues.append(_box_issue(image, raw, raw.problem or resolved, "skipped_box"))
            continue
        class_id, class_name = resolved
        group = groups.setdefault(class_id, _ClassGroup(class_id, class_name))
        box = _checked_box(image, raw, issues)
        if box is None:
            group.rejected += 1
            continue
        group.boxes.append(box)
        group.ann_ids.append(raw.ann_id)
        group.masks.append(raw.mask)

    samples = []
    for group in sorted(groups.values(), key=lambda g: g.class_id):
        if not group.boxes:
            issues.append(
                DataIssue(
                    file=str(image.path),
                    annotation=None,
                    reason=f"all {group.rejected} box(es) of class '{group.class_name}' were rejected",
                    action="skipped_sample",
                )
            )
            continue
        samples.append(_sample(image, group.class_id, group.class_name, group.boxes, group.ann_ids, group.masks))
    if not groups and n_out_of_scope == len(image.boxes):
        # a subset audit: the image shows only classes the model does not cover; nothing is broken
        issues.append(DataIssue(str(image.path), None, "every box is of a class outside --classes", OUT_OF_SCOPE))
    elif not groups:
        issues.append(
            DataIssue(str(image.path), None, "no box of a known class on this image", "skipped_sample")
        )
    box_classes = {g.class_name for g in groups.values()}
    for label in dict.fromkeys(image.labels):
        resolved = class_map.resolve(label)
        if class_map.out_of_scope(label):
            issues.append(DataIssue(str(image.path), None, _outside(label), OUT_OF_SCOPE))
        elif isinstance(resolved, str) or resolved[1] not in box_classes:
            # A box-less label on an image with boxes has no region to score: it is not a no-box image.
            issues.append(
                DataIssue(
                    str(image.path),
                    None,
                    f"label '{label}' without a box on an image that has boxes of other classes",
                    "skipped_sample",
                )
            )
    return samples


def _no_box_samples(image: RawImage, class_map: ClassMap, issues: list[DataIssue]) -> list[Sample]:
    labels = list(dict.fromkeys(image.labels))
    if not labels:
        return [_sample(image, None, None, [], [])]
    samples = []
    for label in labels:
        resolved = class_map.resolve(label)
        if class_map.out_of_scope(label):
            issues.append(DataIssue(str(image.path), None, _outside(label), OUT_OF_SCOPE))
        elif isinstance(resolved, str):
            issues.append(DataIssue(str(image.path), None, resolved, "skipped_sample"))
        else:
            samples.append(_sample(image, resolved[0], resolved[1], [], []))
    return samples


def _checked_box(image: RawImage, raw: RawBox, issues: list[DataIssue]) -> Box | None:
    """The valid (and, where the image size is known, clipped) box, or None with a recorded issue."""
    problem = raw.problem or box_problem(raw.coords or ())
    if problem:
        issues.append(_box_issue(image, raw, problem, "skipped_box"))
        return None
    box: Box = tuple(float(v) for v in raw.coords)  # type: ignore[assignment]
    if image.size is None:
        return box  # clipped once the image is decoded (pipeline)
    width, height = image.size
    clipped = clip_box(box, width, height)
    if clipped is None:
        reason = f"box {format_box(box)} lies outside the {width}x{height} image"
        issues.append(_box_issue(image, raw, reason, "skipped_box"))
        return None
    if clipped != box:
        reason = f"box {format_box(box)} clipped to {format_box(clipped)} ({width}x{height} image)"
        issues.append(_box_issue(image, raw, reason, "clipped_box"))
    return clipped


def _outside(label: str) -> str:
    return f"class '{str(label).strip()}' is outside --classes (not audited)"


def _box_issue(image: RawImage, raw: RawBox, reason: str, action: str) -> DataIssue:
    return DataIssue(file=image.annotation_file, annotation=raw.ann_id, reason=reason, action=action)


def _sample(image: RawImage, class_id, class_name, boxes, ann_ids, masks=None) -> Sample:
    sample_id = image.key if class_name is None else f"{image.key}#{class_name}"
    masks = list(masks) if masks else [None] * len(boxes)
    # boxes in a fixed order (by position, then annotation id), not the file's: a sample is its content
    triples = sorted(zip(boxes, ann_ids, masks, strict=True), key=lambda p: (tuple(p[0]), str(p[1])))
    boxes, ann_ids, masks = [p[0] for p in triples], [p[1] for p in triples], [p[2] for p in triples]
    return Sample(
        sample_id=sample_id,
        image_path=image.resolved or str(image.path.resolve()),
        class_id=class_id,
        class_name=class_name,
        boxes=tuple(boxes),
        annotation_ids=tuple(ann_ids),
        image_size=image.size,
        masks=tuple(masks) if any(m is not None for m in masks) else (),
    )


def _empty_message(source: str, n_images: int, issues: list[DataIssue]) -> str:
    message = f"no usable sample in {source} ({n_images} image(s) read, {len(issues)} issue(s))"
    if issues:
        first = issues[0]
        message += f"; first issue: {first.reason} [{first.file}]"
    return message
