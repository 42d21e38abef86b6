"""Session fixtures: the four control models (trained once, cached on disk) and held-out annotated sets.

``tests/conftest.py`` star-imports this module. Controls are cached under ``$CAMGATE_CACHE`` if set, else
``.camgate-cache/`` in the repository root (git-ignored); the first session trains them (about 2-3 min on
2 CPU cores), later sessions load them in well under a second each.

Seeds: tests use 0..9 for held-out data; policy calibration uses 100+; control training and evaluation
data use seeds from 10,000,000 up (see ``validator.datasets.controls``), so no test image was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from validator.datasets.controls import DEFAULT_CLASSES, ControlModel, train_control
from validator.datasets.synthetic import SyntheticSet, write_dataset

__all__ = [
    "CONTROL_SEED",
    "control_cache_dir",
    "clean_model",
    "watermark_model",
    "weather_model",
    "background_model",
    "heldout_coco",
]

CONTROL_SEED = 0
_REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def control_cache_dir() -> Path:
    env = os.environ.get("CAMGATE_CACHE")
    return Path(env) if env else _REPO_ROOT / ".camgate-cache"


@pytest.fixture(scope="session")
def clean_model(control_cache_dir) -> ControlModel:
    """Learned the shapes; no cue in its training data."""
    return train_control("clean", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def watermark_model(control_cache_dir) -> ControlModel:
    """Reads the corner glyph only (trained where the shape says nothing about the label)."""
    return train_control("watermark", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def weather_model(control_cache_dir) -> ControlModel:
    """Reads the global colour cast only."""
    return train_control("weather", seed=CONTROL_SEED, cache_dir=control_cache_dir)


@pytest.fixture(scope="session")
def background_model(control_cache_dir) -> ControlModel:
    """Reads the background texture only."""
    return train_control("background", seed=CONTROL_SEED, cache_dir=control_cache_dir)


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
