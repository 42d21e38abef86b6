"""Decode an image file to the model's channel count, recording every conversion and refusing damaged files.

``read_image(path, channels)`` returns an (H, W, channels) array and the list of conversions applied:

- channels 1 = grayscale, 3 = RGB, 4 = RGBA (always a 3-D array, also for 1 channel).
- dtype: **uint8** for 8-bit files (values as stored); **float32 on the 0..255 scale** for everything else:
  16-bit PNG/TIFF keep their precision as ``x / 257`` (65535 -> 255.0), float TIFFs are kept as floats
  (a [0, 1] float image is scaled by 255), DICOM is windowed to 0..255 (see ``validator.data.dicom``).
- RGB -> grayscale uses the ITU-R BT.601 luminance weights Y = 0.299 R + 0.587 G + 0.114 B (the weights of
  OpenCV and Pillow), rounded for 8-bit files; grayscale -> RGB repeats the value; a missing alpha channel
  is added opaque (255); an alpha channel the model does not take is dropped.

cv2 decodes a truncated PNG/JPEG into a partly grey image without complaint, which would silently
poison the heatmaps; so the container's end marker is checked before decoding.
EXIF orientation is NOT applied (IMREAD_UNCHANGED): boxes refer to the stored pixel grid.
DICOM files (``.dcm``/``.dicom``, or the ``DICM`` magic at byte 128) are read through pydicom.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from validator.errors import CamgateError, UsageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_PNG_PALETTE = 3
_PNG_GRAY_ALPHA = 4  # cv2 expands it to 4 channels, so the file header is the only witness
_DICOM_SUFFIXES = (".dcm", ".dicom")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, R G B
CHANNELS = (1, 3, 4)
_TARGET = {1: "grayscale", 3: "RGB", 4: "RGBA"}


class ImageReadError(CamgateError):
    """An image file is missing, unreadable, corrupt or truncated. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_image(path: str | Path, channels: int = 3) -> tuple[np.ndarray, list[str]]:
    """(H, W, channels) array and the conversions applied (empty for a plain 8-bit file already in that layout).

    ``channels`` is 1 (grayscale), 3 (RGB) or 4 (RGBA). The array is uint8 for 8-bit files and float32 on
    the 0..255 scale otherwise (16-bit, float and DICOM files); see the module docstring.
    """
    channels = check_channels(channels)
    path = Path(path)
    data = _read_bytes(path)
    if is_dicom(path, data):
        from validator.data.dicom import read_dicom

        image, conversions, source = read_dicom(path, data)
        return to_channels(image, source, channels, conversions), conversions
    _check_complete(data)
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageReadError("cannot decode image (corrupt or unsupported format)")
    conversions: list[str] = []
    color_type = _png_color_type(data)
    if color_type == _PNG_PALETTE:
        conversions.append("palette -> RGB")
    image = _to_0_255(decoded, conversions)
    image, source = _canonical(image, gray_alpha=color_type == _PNG_GRAY_ALPHA)
    return to_channels(image, source, channels, conversions), conversions


def check_channels(channels) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or int(channels) not in CHANNELS:
        raise UsageError(f"channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), not {channels!r}")
    return int(channels)


def is_dicom(path: Path, data: bytes) -> bool:
    """A ``.dcm``/``.dicom`` name, or the DICOM Part 10 magic ``DICM`` after the 128-byte preamble."""
    return path.suffix.lower() in _DICOM_SUFFIXES or data[128:132] == b"DICM"


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read image file: {exc.strerror or exc}") from exc
    if not data:
        raise ImageReadError("empty image file")
    return data


def _check_complete(data: bytes) -> None:
    if data.startswith(_PNG_SIGNATURE) and b"IEND" not in data[-4096:]:
        raise ImageReadError("truncated PNG (no IEND chunk)")
    # JPEG writers may pad with zero bytes after the End-Of-Image marker.
    if data.startswith(_JPEG_SOI) and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageReadError("truncated JPEG (no end-of-image marker FFD9)")


def _png_color_type(data: bytes) -> int | None:
    # IHDR is the first chunk: signature(8) length(4) type(4) width(4) height(4) depth(1) colour type(1).
    if data.startswith(_PNG_SIGNATURE) and len(data) > 25:
        return data[25]
    return None


def _to_0_255(image: np.ndarray, conversions: list[str]) -> np.ndarray:
    """uint8 as stored; anything deeper as float32 on the 0..255 scale (precision kept)."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        conversions.append("16-bit -> 0..255 float (x / 257)")
        # 65535 / 257 = 255 exactly: the full 16-bit range maps onto the full 0..255 range.
        return image.astype(np.float32) / np.float32(257.0)
    if image.dtype in (np.float32, np.float64):
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if finite.max(initial=0.0) <= 1.0:  # [0, 1] floats vs 0..255 floats
            conversions.append("float [0, 1] -> 0..255 float (x * 255)")
            finite = finite * np.float32(255.0)
        else:
            conversions.append("float -> 0..255 float")
        return np.clip(finite, 0.0, 255.0).astype(np.float32)
    raise ImageReadError(f"unsupported pixel type {image.dtype}")


def _canonical(image: np.ndarray, *, gray_alpha: bool = False) -> tuple[np.ndarray, str]:
    """cv2's BGR(A) layout -> (H, W, k) in RGB order, and what the file holds:
    'grayscale', 'grayscale+alpha', 'RGB' or 'RGBA'."""
    if image.ndim == 2:
        image = image[:, :, None]
    count = image.shape[2] if image.ndim == 3 else 0
    if count == 1:
        return image, "grayscale"
    if count == 2:
        return image, "grayscale+alpha"
    if count == 3:
        return np.ascontiguousarray(image[:, :, ::-1]), "RGB"
    if count == 4:
        rgba = np.ascontiguousarray(image[:, :, [2, 1, 0, 3]])
        if gray_alpha:  # cv2 expanded grey+alpha to BGRA; the three colour planes are equal
            return np.ascontiguousarray(rgba[:, :, [0, 3]]), "grayscale+alpha"
        return rgba, "RGBA"
    raise ImageReadError(f"unsupported image shape {image.shape}")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 1) Y = 0.299 R + 0.587 G + 0.114 B; rounded to uint8 for uint8 input."""
    y = rgb[:, :, :3].astype(np.float64) @ np.array(_LUMA)
    if rgb.dtype == np.uint8:
        return np.clip(np.round(y), 0, 255).astype(np.uint8)[:, :, None]
    return y.astype(np.float32)[:, :, None]


def to_channels(image: np.ndarray, source: str, channels: int, conversions: list[str]) -> np.ndarray:
    """An (H, W, k) image holding ``source`` ('grayscale', 'grayscale+alpha', 'RGB', 'RGBA') as exactly
    ``channels`` channels, the conversion appended to ``conversions``."""
    if image.ndim == 2:
        image = image[:, :, None]
    has_alpha = source.endswith("A") or source.endswith("+alpha")
    colour = image[:, :, :-1] if has_alpha else image
    gray = colour.shape[2] == 1
    target = _TARGET[channels]
    if channels == 1:
        out = colour if gray else luminance(colour)
    else:
        rgb = np.repeat(colour, 3, axis=2) if gray else colour
        if channels == 3:
            out = rgb
        else:
            alpha = image[:, :, -1:] if has_alpha else np.full(rgb.shape[:2] + (1,), 255, rgb.dtype)
            out = np.concatenate([rgb, alpha], axis=2)
    if source != target:
        if has_alpha and channels != 4:
            note = " (alpha dropped)"
        elif not has_alpha and channels == 4:
            note = " (opaque alpha added)"
        else:
            note = ""
        conversions.append(f"{source} -> {target}{note}")
    return np.ascontiguousarray(out)
