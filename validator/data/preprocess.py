"""Input preprocessing by name. Every function maps float32 [N, H, W, C] in 0..255 to the model's input.

``none``, ``unit`` and ``symmetric`` work for any channel count C (grayscale, RGB, RGBA); ``caffe`` and
``torch`` subtract per-channel ImageNet statistics and so need C = 3 (RGB): they refuse anything else.

``none`` is the default because Keras models usually embed their own ``Rescaling`` layer; the names
mirror ``keras.applications`` modes (``caffe``: VGG/ResNet50, ``torch``: DenseNet, ``symmetric``: the
``tf`` mode of MobileNet/Inception).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np

from validator.errors import UsageError

Preprocess = Callable[[np.ndarray], np.ndarray]

_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
_RGB_ONLY = ("caffe", "torch")


def _none(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) / np.float32(255.0)


def _symmetric(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def _channels_text(count: int) -> str:
    return f"{count} channel" + ("" if count == 1 else "s")


def check_channels(name: str | None, channels: int) -> None:
    """Refuse a named mode that cannot take ``channels`` input channels (caffe/torch need 3)."""
    if name in _RGB_ONLY and channels != 3:
        raise UsageError(
            f"preprocess '{name}' needs 3-channel RGB input; the model takes {_channels_text(channels)}"
        )


def _rgb(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    check_channels(name, int(x.shape[-1]) if x.ndim else 0)
    return x


def _caffe(x: np.ndarray) -> np.ndarray:
    bgr = _rgb(x, "caffe")[..., ::-1]
    return bgr - _CAFFE_MEAN_BGR


def _torch(x: np.ndarray) -> np.ndarray:
    return (_rgb(x, "torch") / np.float32(255.0) - _TORCH_MEAN) / _TORCH_STD


PREPROCESSORS: dict[str, Preprocess] = {
    "none": _none,
    "unit": _unit,
    "symmetric": _symmetric,
    "caffe": _caffe,
    "torch": _torch,
}


def get_preprocess(name: str | None) -> Preprocess:
    """A named mode, or ``package.module:function`` imported from the user's code."""
    if name is None:
        return _none
    if name in PREPROCESSORS:
        return PREPROCESSORS[name]
    if ":" not in name:
        raise UsageError(
            f"unknown preprocess {name!r}; expected one of {', '.join(PREPROCESSORS)} or module:function"
        )
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of user code is a usage problem
        raise UsageError(f"cannot import preprocess module {module_name!r}: {exc}") from exc
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise UsageError(f"preprocess {name!r}: module {module_name!r} has no attribute {attr!r}")
    if not callable(func):
        raise UsageError(f"preprocess {name!r} is not callable")
    return func
