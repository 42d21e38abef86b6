"""Decode an image file to 8-bit RGB, recording every conversion and refusing damaged files.

cv2 decodes a truncated PNG/JPEG into a partly grey image without complaint, which would silently
poison the heatmaps; so the container's end marker is checked before decoding.
EXIF orientation is NOT applied (IMREAD_UNCHANGED): boxes refer to the stored pixel grid.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from validator.errors import CamgateError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_PNG_PALETTE = 3
_PNG_GRAY_ALPHA = 4  # cv2 expands it to 4 channels, so the file header is the only witness


class ImageReadError(CamgateError):
    """An image file is missing, unreadable, corrupt or truncated. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_image(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(H, W, 3) uint8 RGB array and the conversions applied (empty for a plain 8-bit RGB file)."""
    data = _read_bytes(Path(path))
    _check_complete(data)
    decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise ImageReadError("cannot decode image (corrupt or unsupported format)")
    conversions: list[str] = []
    color_type = _png_color_type(data)
    if color_type == _PNG_PALETTE:
        conversions.append("palette -> RGB")
    image = _to_uint8(decoded, conversions)
    return _to_rgb(image, conversions, gray_alpha=color_type == _PNG_GRAY_ALPHA), conversions


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


def _to_uint8(image: np.ndarray, conversions: list[str]) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        conversions.append("16-bit -> 8-bit")
        # 65535 / 257 = 255 exactly: the full 16-bit range maps onto the full 8-bit range.
        return np.round(image.astype(np.float32) / 257.0).astype(np.uint8)
    if image.dtype in (np.float32, np.float64):
        conversions.append("float -> 8-bit")
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0  # [0,1] floats vs 0..255 floats
        return np.clip(np.round(finite * scale), 0, 255).astype(np.uint8)
    raise ImageReadError(f"unsupported pixel type {image.dtype}")


def _to_rgb(image: np.ndarray, conversions: list[str], *, gray_alpha: bool = False) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        conversions.append("grayscale -> RGB")
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    channels = image.shape[2] if image.ndim == 3 else 0
    if channels == 2:
        conversions.append("grayscale+alpha -> RGB (alpha dropped)")
        return np.ascontiguousarray(np.repeat(image[:, :, :1], 3, axis=2))
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        source = "grayscale+alpha" if gray_alpha else "RGBA"
        conversions.append(f"{source} -> RGB (alpha dropped)")
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(f"unsupported image shape {image.shape}")
