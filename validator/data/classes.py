"""Class lists: mapping annotation labels to model output indices, reading --classes, checking the count."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from validator.data.records import Dataset
from validator.errors import DataError
from validator.limits import load_yaml_bounded, read_text_bounded


class ClassMap:
    """Names in model output order; resolves a label (a name, or an integer index if allowed) to an index."""

    def __init__(self, names: Sequence[str], *, allow_indices: bool = False, scoped: bool = False) -> None:
        """``scoped``: the names are a class list given by the user (``--classes``), so a label outside it
        is a class the audit does not cover, not a broken annotation (see :meth:`out_of_scope`)."""
        names = [str(n) for n in names]
        duplicates = sorted(n for n, count in Counter(names).items() if count > 1)  # linear: 20k classes happen
        if duplicates:
            raise DataError(f"class list has duplicate names: {duplicates}")
        self.names = names
        self.allow_indices = allow_indices
        self.scoped = scoped
        self._index = {name: i for i, name in enumerate(names)}

    def out_of_scope(self, label: str) -> bool:
        """True when ``label`` names a class outside the user's class list (an index label out of range is
        a broken annotation instead: it claims to be one of the model's outputs)."""
        label = str(label).strip()
        if not self.scoped or label in self._index:
            return False
        return not (self.allow_indices and _is_index(label))

    def resolve(self, label: str) -> tuple[int, str] | str:
        """(class_id, class_name) for ``label``, or the reason it cannot be mapped."""
        label = str(label).strip()
        if label in self._index:
            return self._index[label], label
        if self.allow_indices and _is_index(label):
            idx = int(label)
            if idx < len(self.names):
                return idx, self.names[idx]
            return f"class index {idx} out of range for {len(self.names)} classes"
        return f"unknown category '{label}'"


#: An index label has at most this many digits (a model of a million outputs): a longer number is a name, not
#: an output index (the class list of a 12-digit index would not fit in memory; int() refuses 4300 digits).
MAX_INDEX_DIGITS = 6


def _is_index(label: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses
    return 0 < len(label) <= MAX_INDEX_DIGITS and label.isascii() and label.isdigit()


def all_indices(labels: Sequence[str]) -> bool:
    """True when every label is a bare non-negative integer (CSV manifests labelled by output index)."""
    return bool(labels) and all(_is_index(str(label).strip()) for label in labels)


def read_class_list(path: str | Path) -> list[str]:
    """Read a --classes file: one name per line (.txt), or a JSON/YAML list, or a {index: name} mapping."""
    path = Path(path)
    try:
        text = read_text_bounded(path, f"class list {path}", DataError)
    except OSError as exc:
        raise DataError(f"cannot read class list {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"cannot read class list {path}: not UTF-8 text ({exc.reason})") from exc
    suffix = path.suffix.lower()
    stripped = text.lstrip()
    if suffix in (".json", ".yaml", ".yml") or stripped.startswith(("[", "{")):
        try:
            loaded = json.loads(text) if suffix == ".json" else load_yaml_bounded(text, f"class list {path}",
                                                                                   DataError)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise DataError(f"class list {path} is not valid {suffix.lstrip('.') or 'YAML'}: {exc}") from exc
        names = _names_from_structure(loaded, path)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"class list {path} is empty")
    ClassMap(names)  # raises on duplicates
    return names


def _names_from_structure(loaded: object, path: Path) -> list[str]:
    if isinstance(loaded, list):
        return [str(n) for n in loaded]
    if isinstance(loaded, dict):
        # {0: cat, 1: dog} (e.g. YOLO/Keras exports): keys must be exactly 0..C-1.
        try:
            by_index = {int(k): str(v) for k, v in loaded.items()}
        except (TypeError, ValueError) as exc:
            raise DataError(f"class list {path}: mapping keys must be output indices") from exc
        if sorted(by_index) != list(range(len(by_index))):
            raise DataError(f"class list {path}: mapping keys must be 0..{len(by_index) - 1}")
        return [by_index[i] for i in range(len(by_index))]
    raise DataError(f"class list {path} must be a list of names, got {type(loaded).__name__}")


def check_num_classes(dataset: Dataset, n_outputs: int) -> None:
    """Fail early when the model's output count does not fit the data's classes.

    A one-unit sigmoid head fits two classes (negative = 0, positive = 1). Datasets labelled by bare
    output indices (no names) fit any model with at least as many outputs; their names are padded.
    """
    n_data = len(dataset.class_names)
    if n_outputs == n_data or (n_outputs == 1 and n_data == 2):
        return
    if dataset.labels_are_indices and n_outputs > n_data:
        dataset.class_names.extend(str(i) for i in range(n_data, n_outputs))
        return
    raise DataError(
        f"model has {n_outputs} outputs but the data has {n_data} classes: {dataset.class_names}; "
        "pass --classes with the model's class names in output order"
    )
