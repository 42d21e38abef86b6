"""Plain records for the held-out set: samples, recorded data problems and the dataset that holds them.

Coordinates everywhere in camgate are continuous pixel coordinates in the ORIGINAL image: pixel (i, j)
covers [j, j+1) x [i, i+1), so a box (x0, y0, x1, y1) has x1/y1 exclusive and area (x1-x0)*(y1-y0).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

Box = tuple[float, float, float, float]

#: The actions a DataIssue may record. ``out_of_scope`` (a record whose every annotation is of a class
#: outside ``--classes``) and ``out_of_scope_box`` are not problems with the data: the audit covers a subset
#: of its classes (a model trained on some of COCO's), so they are never counted as skipped.
ISSUE_ACTIONS = ("skipped_sample", "skipped_box", "clipped_box", "converted_image", "out_of_scope",
                 "out_of_scope_box", "mask_to_box", "exif_orientation")
#: ``mask_to_box``: an annotation's object mask could not be used (unreadable, wrong size, empty); its box
#: stands for the object instead. ``exif_orientation``: the image's EXIF orientation is not 1, and whether it
#: was ignored (boxes in stored pixels, the default) or applied (boxes in the displayed frame); a note, not a skip.
OUT_OF_SCOPE = "out_of_scope"


@dataclass(frozen=True)
class MaskRef:
    """Where one annotation's object mask comes from; decoded per batch (validator.data.masks), never held.

    ``kind`` "coco": ``source`` is the COCO ``segmentation`` as JSON text (polygons or RLE). ``kind`` "png":
    ``source`` is a PNG path and the object is the pixels equal to ``value`` (a VOC SegmentationObject
    instance id), or every nonzero pixel when ``value`` is None (a CSV mask column)."""

    kind: str
    source: str
    value: int | None = None


@dataclass(frozen=True)
class Sample:
    """One (image, class) pair to explain; an image with boxes of two classes gives two samples."""

    sample_id: str
    image_path: str
    class_id: int | None
    class_name: str | None
    boxes: tuple[Box, ...]
    annotation_ids: tuple[str, ...]  # parallel to ``boxes``
    #: (width, height) stated by the annotation, or None; the pipeline checks it against the decoded image.
    image_size: tuple[int, int] | None = None
    #: parallel to ``boxes``: each annotation's object mask, None where it has only its box; () when none has.
    masks: tuple[MaskRef | None, ...] = ()
    #: "ignore": the stored pixels, boxes in stored-pixel coordinates (COCO's convention); "apply": the image
    #: turned by its EXIF orientation, boxes, masks and ``image_size`` in the displayed frame
    exif_orientation: str = "ignore"


@dataclass(frozen=True)
class DataIssue:
    """A problem found in the data and what camgate did about it (never silently dropped)."""

    file: str
    annotation: str | None
    reason: str
    action: str

    def __post_init__(self) -> None:
        if self.action not in ISSUE_ACTIONS:
            raise ValueError(f"unknown DataIssue action {self.action!r}; expected one of {ISSUE_ACTIONS}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Dataset:
    """Samples plus everything a report needs to say what was (not) used."""

    samples: list[Sample]
    class_names: list[str]  # in MODEL OUTPUT ORDER
    issues: list[DataIssue]
    format: str
    source: str
    n_images: int  # distinct images among the kept samples
    n_no_box: int  # kept images without any box (accuracy only; excluded from box metrics)
    #: True when labels were bare output indices and no class list was given: the class count is then
    #: open-ended and ``check_num_classes`` pads the names up to the model's output count.
    labels_are_indices: bool = False

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def issue_counts(self) -> dict[str, int]:
        """Number of issues per action, for summaries."""
        counts = {action: 0 for action in ISSUE_ACTIONS}
        for issue in self.issues:
            counts[issue.action] += 1
        return counts
