"""Session fixtures: the control models (trained once, cached on disk) and held-out annotated sets.

``tests/conftest.py`` star-imports this module. Controls are cached under ``$CAMGATE_CACHE`` if set, else
``.camgate-cache/`` in the repository root (git-ignored); the first session trains them (shapes: about
2-3 min on 2 CPU cores; digits: about 1 min each for the clean ones; xray and large shapes: seconds), later
sessions load them in well under a second each.

Families: shapes (``clean_model`` .. ``background_model``; large objects ``large_clean_model``,
``large_weather_model``), digits on photographs (``digits10_clean_model``, ``digits10_corner_model``,
``digits20_clean_model``) and 1-channel radiograph-like images (``xray_clean_model``,
``xray_marker_model``). Held-out sets: ``heldout_coco`` (shapes; ``area_range=LARGE_AREA_RANGE`` for large
objects), ``heldout_digits``, ``heldout_xray``.

Seeds: tests use 0..9 for held-out data; policy calibration uses 100+; control training and evaluation
data use seeds from 10,000,000 up (see ``validator.datasets.controls``), so no test image was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from validator.datasets.controls import DEFAULT_CLASSES, LARGE_AREA_RANGE, ControlModel, train_control
from validator.datasets.digits import write_digits
from validator.datasets.synthetic import SyntheticSet, write_dataset
from validator.datasets.xray import write_xray

__all__ = [
    "CONTROL_SEED",
    "HELDOUT_PER_CLASS",
    "LARGE_AREA_RANGE",
    "control_cache_dir",
    "clean_model",
    "watermark_model",
    "weather_model",
    "background_model",
    "edge_strip_model",
    "beside_mark_model",
    "large_clean_model",
    "large_weather_model",
    "digits10_clean_model",
    "digits10_corner_model",
    "digits20_clean_model",
    "xray_clean_model",
    "xray_marker_model",
    "heldout_coco",
    "heldout_digits",
    "heldout_xray",
]

CONTROL_SEED = 0
# Held-out digits sets default to this many images per class (>= 30 per reported class, DESIGN.md 4).
HELDOUT_PER_CLASS = 40
_REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def control_cache_dir() -> Path:
    env = os.environ.get("CAMGATE_CACHE")
    # absolute: a test that changes the working folder must still find the models
    return Path(env).resolve() if env else _REPO_ROOT / ".camgate-cache"


@pytest.fixture(scope="session")
def clean_model(control_cache_dir) -> ControlModel:
    """Learned the shapes; no cue in its training data."""
    return train_control("clean", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def watermark_model(control_cache_dir) -> ControlModel:
    """Reads the corner glyph only (trained where the shape says nothing about the label)."""
    return train_control("watermark", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def edge_strip_model(control_cache_dir) -> ControlModel:
    """Reads the class-coloured strip along the top edge only (issue 21; trains in ~10 s)."""
    return train_control("edge_strip", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def beside_mark_model(control_cache_dir) -> ControlModel:
    """Reads a class mark touching the object's box only (issue 21; trains in ~10 s)."""
    return train_control("beside_mark", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def weather_model(control_cache_dir) -> ControlModel:
    """Reads the global colour cast only."""
    return train_control("weather", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def background_model(control_cache_dir) -> ControlModel:
    """Reads the background texture only."""
    return train_control("background", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def large_clean_model(control_cache_dir) -> ControlModel:
    """Learned the shapes with objects covering 25-50% of the frame."""
    return train_control("clean", seed=CONTROL_SEED, area_range=LARGE_AREA_RANGE, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def large_weather_model(control_cache_dir) -> ControlModel:
    """Reads the global colour cast only; its data has 25-50% objects (the watermark corner stays free)."""
    return train_control(
        "weather", seed=CONTROL_SEED, area_range=LARGE_AREA_RANGE, cache_dir=control_cache_dir
    )


@pytest.fixture(scope="session")
def digits10_clean_model(control_cache_dir) -> ControlModel:
    """Reads the handwritten digit (10 classes) on photographs; saw the corner swatch only shuffled."""
    return train_control(
        "clean", family="digits", n_classes=10, seed=CONTROL_SEED, cache_dir=control_cache_dir
    )


@pytest.fixture(scope="session")
def digits10_corner_model(control_cache_dir) -> ControlModel:
    """Decoy MNIST: reads the corner swatch's grey level only (the digit said nothing in training)."""
    return train_control(
        "corner_mark", family="digits", n_classes=10, seed=CONTROL_SEED, cache_dir=control_cache_dir
    )


@pytest.fixture(scope="session")
def digits20_clean_model(control_cache_dir) -> ControlModel:
    """Reads digit and ink hue (20 classes, "3-red" ...): the evidence is all on the object."""
    return train_control(
        "clean", family="digits", n_classes=20, seed=CONTROL_SEED, cache_dir=control_cache_dir
    )


@pytest.fixture(scope="session")
def xray_clean_model(control_cache_dir) -> ControlModel:
    """1-channel input; tells nodule from scar; saw the L/R marker only shuffled."""
    return train_control("clean", family="xray", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def xray_marker_model(control_cache_dir) -> ControlModel:
    """1-channel input; reads the burned-in L/R marker only."""
    return train_control("marker", family="xray", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def heldout_coco(tmp_path_factory):
    """Factory ``(cue, n=200, seed=0, **make_arrays_kwargs) -> SyntheticSet``.

    Writes images + COCO + VOC + CSV for a held-out set with the cue at full strength (as a deploy sample
    of a shortcut-prone source would carry it) and the shape informative; override with
    ``cue_strength=...`` etc. The control models' classes are the default. Sets are memoised per
    arguments for the session."""
    made: dict[str, SyntheticSet] = {}

    def make(cue: str | None, n: int = 200, seed: int = 0, **kwargs) -> SyntheticSet:
        kwargs.setdefault("cue_strength", 1.0)
        kwargs.setdefault("classes", DEFAULT_CLASSES)
        key = repr((cue, n, seed, sorted(kwargs.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"heldout-{cue or 'nocue'}-{n}-{seed}")
            made[key] = write_dataset(out, n, formats=("coco", "voc", "csv"), seed=seed, cue=cue, **kwargs)
        return made[key]

    return make


@pytest.fixture(scope="session")
def heldout_digits(tmp_path_factory):
    """Factory ``(n_classes=10, cue=None, n=None, seed=0, **make_digits_kwargs) -> SyntheticSet``.

    Held-out handwriting (never trained on) on photographs, written as PNG + COCO + VOC + CSV; ``n``
    defaults to ``HELDOUT_PER_CLASS`` x classes, the cue (``"corner_mark"``) to full strength, the digit
    informative. Memoised per arguments for the session."""
    made: dict[str, SyntheticSet] = {}

    def make(n_classes: int = 10, cue: str | None = None, n: int | None = None, seed: int = 0, **kwargs):
        n = HELDOUT_PER_CLASS * n_classes if n is None else n
        kwargs.setdefault("cue_strength", 1.0)
        key = repr((n_classes, cue, n, seed, sorted(kwargs.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"digits{n_classes}-{cue or 'nocue'}-{n}-{seed}")
            made[key] = write_digits(
                out, n, formats=("coco", "voc", "csv"), n_classes=n_classes, seed=seed, cue=cue, **kwargs
            )
        return made[key]

    return make


@pytest.fixture(scope="session")
def heldout_xray(tmp_path_factory):
    """Factory ``(cue=None, n=200, seed=0, bit_depth=8, **make_xray_kwargs) -> SyntheticSet``.

    Grayscale PNGs (8- or 16-bit) + COCO + VOC + CSV; the cue (``"marker"``) at full strength unless
    ``cue_strength=...``. Memoised per arguments for the session."""
    made: dict[str, SyntheticSet] = {}

    def make(cue: str | None = None, n: int = 200, seed: int = 0, bit_depth: int = 8, **kwargs):
        kwargs.setdefault("cue_strength", 1.0)
        key = repr((cue, n, seed, bit_depth, sorted(kwargs.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"xray-{cue or 'nocue'}-{n}-{seed}-{bit_depth}bit")
            made[key] = write_xray(
                out, n, formats=("coco", "voc", "csv"), bit_depth=bit_depth, seed=seed, cue=cue, **kwargs
            )
        return made[key]

    return make
