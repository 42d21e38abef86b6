"""DICOM images through pydicom (optional extra ``camgate[dicom]``), mapped to the 0..255 scale.

The steps, each recorded in the conversions list:

1. Modality LUT: ``x * RescaleSlope + RescaleIntercept`` (CT Hounsfield units, for example).
2. VOI window from ``WindowCenter`` / ``WindowWidth`` (the first value when the tag is multi-valued), mapped
   to 0..255 float32 with the function ``VOILUTFunction`` names, as DICOM PS3.3 C.11.2.1.2 defines it:
   LINEAR (the default; note the ``c - 0.5`` and ``w - 1`` of the standard), LINEAR_EXACT or SIGMOID.
   Without window tags, the min-max of the (rescaled) stored pixel values is stretched to 0..255.
3. MONOCHROME1 (0 = white) is inverted so that 255 is always the brightest.

RGB DICOM passes through (8-bit as uint8; deeper samples scaled to 0..255 by ``BitsStored``). YBR colour is
converted to RGB by pydicom 3. Multi-frame files, palette colour and other photometric interpretations are
refused with an ``ImageReadError``.

A header value camgate reads (the frame count, the rescale, the window, BitsStored) that is not a finite number
refuses the file with an ``ImageReadError`` naming the tag: pydicom hands such values back as they are
(``nan``, ``abc``, a multi-value frame count), and NaN pixels must never reach the model.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from validator.data.images import ImageReadError, check_pixels


def _pydicom(path: Path):
    try:
        import pydicom
    except ImportError as exc:
        raise ImageReadError(f"reading DICOM {path} needs pydicom: pip install 'camgate[dicom]'") from exc
    return pydicom


def read_dicom(path: str | Path, data: bytes | None = None) -> tuple[np.ndarray, list[str], str]:
    """(H, W, k) image, conversions, and what it holds ('grayscale' or 'RGB').

    Grayscale comes back as float32 0..255; 8-bit RGB as uint8, deeper RGB as float32 0..255.
    """
    path = Path(path)
    pydicom = _pydicom(path)
    source = io.BytesIO(data) if data is not None else path
    try:
        ds = pydicom.dcmread(source, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise ImageReadError(f"cannot read DICOM file: {type(exc).__name__}: {exc}") from exc
    if "PixelData" not in ds:
        raise ImageReadError("DICOM file has no pixel data")
    frames = int(_tag_number(ds, "NumberOfFrames", 1.0) or 1)
    if frames > 1:
        raise ImageReadError(f"multi-frame DICOM ({frames} frames) is not supported; export one frame")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric.startswith("YBR") and int(pydicom.__version__.split(".")[0]) < 3:
        raise ImageReadError(f"DICOM {photometric} colour needs pydicom>=3 (which converts it to RGB)")
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB") and not photometric.startswith("YBR"):
        raise ImageReadError(f"unsupported DICOM photometric interpretation {photometric}")
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (TypeError, ValueError):
        rows = columns = 0  # pydicom says what is wrong when it decodes
    check_pixels(columns, rows)  # before the pixel data is decoded (a compressed transfer syntax can inflate)
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # truncated pixel data, missing decoder for a compressed transfer syntax
        raise ImageReadError(f"cannot decode DICOM pixel data: {type(exc).__name__}: {exc}") from exc
    conversions: list[str] = []
    if photometric.startswith("MONOCHROME"):
        if pixels.ndim != 2:
            raise ImageReadError(f"unexpected DICOM {photometric} pixel array of shape {pixels.shape}")
        values = _rescale(ds, pixels, conversions)
        gray = _window(ds, values, conversions)
        if not np.isfinite(gray).all():  # a rescale beyond the float range
            raise ImageReadError("DICOM rescale and window give non-finite pixel values")
        if photometric == "MONOCHROME1":
            conversions.append("DICOM MONOCHROME1 inverted")
            gray = np.float32(255.0) - gray
        return gray[:, :, None], conversions, "grayscale"
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ImageReadError(f"unexpected DICOM {photometric} pixel array of shape {pixels.shape}")
    if photometric != "RGB":
        conversions.append(f"DICOM {photometric} -> RGB")
    if pixels.dtype == np.uint8:
        return pixels, conversions, "RGB"
    bits = int(_tag_number(ds, "BitsStored", 8.0 * pixels.dtype.itemsize))
    if not 1 <= bits <= 8 * pixels.dtype.itemsize:
        raise ImageReadError(f"DICOM BitsStored {bits} does not fit {8 * pixels.dtype.itemsize}-bit samples")
    top = float(2**bits - 1)
    conversions.append(f"DICOM {bits}-bit RGB -> 0..255 float (x * 255 / {top:g})")
    return (pixels.astype(np.float64) * (255.0 / top)).astype(np.float32), conversions, "RGB"


def _tag_number(ds, keyword: str, default: float) -> float:
    """The tag's (first) value as a finite float, ``default`` when absent or empty; else ImageReadError."""
    try:
        value = ds.get(keyword)
        if value is None or str(value).strip() == "":
            return default
        number = _first(value)
    except Exception as exc:  # pydicom converts lazily: ValueError, TypeError, its own types
        raise ImageReadError(f"DICOM {keyword} is not a number: {str(exc)[:80]}") from exc
    if not math.isfinite(number):
        raise ImageReadError(f"DICOM {keyword} is not a finite number: {number}")
    return number


def _first(value) -> float:
    """First value of a possibly multi-valued DS tag."""
    if isinstance(value, str | bytes):
        value = value.decode() if isinstance(value, bytes) else value
        return float(value.split("\\")[0])
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def _rescale(ds, pixels: np.ndarray, conversions: list[str]) -> np.ndarray:
    slope = _tag_number(ds, "RescaleSlope", 1.0)
    intercept = _tag_number(ds, "RescaleIntercept", 0.0)
    values = pixels.astype(np.float64)
    if (slope, intercept) != (1.0, 0.0):
        sign = "-" if intercept < 0 else "+"
        conversions.append(f"DICOM rescale x * {slope:g} {sign} {abs(intercept):g}")
        values = values * slope + intercept
    return values


def window_linear(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR to 0..255: the standard's ``c - 0.5`` / ``w - 1`` form (w >= 1)."""
    low, high = center - 0.5 - (width - 1.0) / 2.0, center - 0.5 + (width - 1.0) / 2.0
    if width <= 1.0:  # w = 1 is a threshold at c - 0.5
        return np.where(x > low, 255.0, 0.0)
    y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    return np.where(x <= low, 0.0, np.where(x > high, 255.0, y))


def window_linear_exact(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.2 LINEAR_EXACT to 0..255: ``(x - c) / w + 0.5``, clipped (w > 0)."""
    return np.clip(((x - center) / width + 0.5) * 255.0, 0.0, 255.0)


def window_sigmoid(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.3.1 SIGMOID to 0..255: ``255 / (1 + exp(-4 (x - c) / w))`` (w > 0)."""
    return 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))


_WINDOWS = {"LINEAR": window_linear, "LINEAR_EXACT": window_linear_exact, "SIGMOID": window_sigmoid}


def _window(ds, values: np.ndarray, conversions: list[str]) -> np.ndarray:
    center, width = _tag_number(ds, "WindowCenter", math.nan), _tag_number(ds, "WindowWidth", math.nan)
    if not (math.isnan(center) or math.isnan(width)):
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        usable = width >= 1.0 if function == "LINEAR" else width > 0.0
        if function in _WINDOWS and usable:
            name = "" if function == "LINEAR" else f" {function}"
            conversions.append(f"DICOM window{name} C={center:g} W={width:g} -> 0..255")
            return _WINDOWS[function](values, center, width).astype(np.float32)
        conversions.append(f"DICOM window C={center:g} W={width:g} ({function}) unusable; min-max instead")
    low, high = float(values.min()), float(values.max())
    conversions.append(f"DICOM min-max {low:g}..{high:g} -> 0..255")
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) * (255.0 / (high - low))).astype(np.float32)
