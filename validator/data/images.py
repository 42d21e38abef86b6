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

Hostile files are refused before they cost anything (``ImageReadError``, so the pipeline skips and records
the image): a file larger than ``validator.limits.image_byte_limit()`` by its size, before it is read; an
image whose header (read by Pillow, which parses only the header) declares more pixels than
``image_pixel_limit()``, before it is decoded. OpenCV's own assertions (its 2^30-pixel guard, for a format
Pillow cannot read) are an unreadable image too, never the end of the audit.

EXIF orientation (tag 0x0112) is read from the header. ``exif_orientation="ignore"`` (the default, COCO's
convention) decodes the stored pixels (IMREAD_UNCHANGED), boxes refer to the stored pixel grid, and an
orientation other than 1 is noted ("EXIF orientation 6 ignored: ..."). ``"apply"`` turns the image to its
displayed orientation, so boxes and masks are read in the displayed frame (as an annotation tool that showed
the turned image wrote them), and notes that too.
DICOM files (``.dcm``/``.dicom``, or the ``DICM`` magic at byte 128) are read through pydicom.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from validator.errors import CamgateError, UsageError
from validator.limits import BYTES_ENV, PIXELS_ENV, fmt_bytes, image_byte_limit, image_pixel_limit

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
_PNG_PALETTE = 3
_PNG_GRAY_ALPHA = 4  # cv2 expands it to 4 channels, so the file header is the only witness
_DICOM_SUFFIXES = (".dcm", ".dicom")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, R G B
CHANNELS = (1, 3, 4)
_TARGET = {1: "grayscale", 3: "RGB", 4: "RGBA"}
EXIF_MODES = ("ignore", "apply")
EXIF_NOTE = "EXIF orientation"  # every orientation note starts so (the pipeline records them apart)
_EXIF_ORIENTATION_TAG = 0x0112
# EXIF orientation -> (what turns the stored pixels into the displayed image, that turn on an (H, W, ...) array)
_ORIENTATIONS = {
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("rotated 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("transposed (mirrored about the top-left diagonal)", lambda a: a.swapaxes(0, 1)),
    6: ("rotated 90 degrees clockwise", lambda a: a.swapaxes(0, 1)[:, ::-1]),
    7: ("transversed (mirrored about the top-right diagonal)", lambda a: a.swapaxes(0, 1)[::-1, ::-1]),
    8: ("rotated 90 degrees counter-clockwise", lambda a: a.swapaxes(0, 1)[::-1]),
}


class ImageReadError(CamgateError):
    """An image file is missing, unreadable, corrupt or truncated. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLargeError(ImageReadError):
    """The file, or the pixel count its header declares, is over a limit (validator.limits): not read or not
    decoded. Skipped and recorded like any unreadable image."""


def read_image(path: str | Path, channels: int = 3, exif_orientation: str = "ignore") -> tuple[np.ndarray, list[str]]:
    """(H, W, channels) array and the conversions applied (empty for a plain 8-bit file already in that layout).

    ``channels`` is 1 (grayscale), 3 (RGB) or 4 (RGBA). The array is uint8 for 8-bit files and float32 on
    the 0..255 scale otherwise (16-bit, float and DICOM files); see the module docstring.
    ``exif_orientation``: "ignore" (stored pixels) or "apply" (the displayed orientation); either way an
    orientation other than 1 is noted in the conversions (a note starting with ``EXIF_NOTE``).
    """
    channels = check_channels(channels)
    mode = check_exif_orientation(exif_orientation)
    path = Path(path)
    data = _read_bytes(path)
    if is_dicom(path, data):
        from validator.data.dicom import read_dicom

        image, conversions, source = read_dicom(path, data)
        return to_channels(image, source, channels, conversions), conversions
    _check_complete(data)
    size, orientation = _header(data)
    decoded = _imdecode(data)
    if size is None:  # a format Pillow does not read: bounded by the file size and OpenCV's own guard
        check_pixels(decoded.shape[1], decoded.shape[0])
    conversions: list[str] = []
    color_type = _png_color_type(data)
    if color_type == _PNG_PALETTE:
        conversions.append("palette -> RGB")
    image = _to_0_255(decoded, conversions)
    image, source = _canonical(image, gray_alpha=color_type == _PNG_GRAY_ALPHA)
    image = to_channels(image, source, channels, conversions)
    return _oriented(image, orientation, mode, conversions), conversions


def check_exif_orientation(mode) -> str:
    if mode not in EXIF_MODES:
        raise UsageError(f"exif_orientation must be 'ignore' (stored pixels, COCO's convention) or 'apply' "
                         f"(the displayed orientation), not {mode!r}")
    return mode


def check_pixels(width: int, height: int) -> None:
    """Refuse an image declaring more than ``image_pixel_limit()`` pixels (``ImageTooLargeError``)."""
    limit = image_pixel_limit()
    if int(width) * int(height) > limit:
        raise ImageTooLargeError(
            f"image declares {width}x{height} = {int(width) * int(height):,} pixels, over the limit of {limit:,} "
            f"(${PIXELS_ENV}); not decoded")


def _header(data: bytes) -> tuple[tuple[int, int] | None, object]:
    """((width, height), EXIF orientation or None) from the header alone, the pixel limit checked; (None, None)
    where Pillow cannot read the header (OpenCV then decides). Pillow parses headers lazily: no pixel is
    decoded here (a PNG whose eXIf chunk follows its pixels excepted, and only after the size passed)."""
    from PIL import Image

    try:
        handle = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        # over Pillow's own threshold (2 x PIL.Image.MAX_IMAGE_PIXELS); refused unless ours was raised past it
        if Image.MAX_IMAGE_PIXELS is None or image_pixel_limit() <= 2 * Image.MAX_IMAGE_PIXELS:
            raise ImageTooLargeError(f"image declares more pixels than the limit of {image_pixel_limit():,} "
                                     f"(${PIXELS_ENV}); not decoded (Pillow: {exc})") from None
        return None, None
    except Exception:  # not a format Pillow reads, or a damaged header: OpenCV decides, as before
        return None, None
    with handle:
        width, height = handle.size
        check_pixels(width, height)
        return (width, height), _orientation(handle, data)


def _orientation(handle, data: bytes):
    if handle.format == "PNG" and "exif" not in handle.info and b"eXIf" not in data:
        return None  # no EXIF chunk anywhere (Pillow would decode the pixels to look for one after them)
    try:
        return handle.getexif().get(_EXIF_ORIENTATION_TAG)
    except Exception:  # a damaged EXIF block says nothing about the pixels
        return None


def _oriented(image: np.ndarray, orientation, mode: str, conversions: list[str]) -> np.ndarray:
    if orientation in (None, 0, 1):  # absent, "unknown" (some cameras write 0), or as stored
        return image
    if not isinstance(orientation, int) or orientation not in _ORIENTATIONS:
        conversions.append(f"{EXIF_NOTE} {orientation!r} is not a valid value (1-8): ignored")
        return image
    if mode == "ignore":
        conversions.append(f"{EXIF_NOTE} {orientation} ignored: boxes are read in stored-pixel coordinates")
        return image
    turned = np.ascontiguousarray(_ORIENTATIONS[orientation][1](image))
    conversions.append(f"{EXIF_NOTE} {orientation} applied: the stored {image.shape[1]}x{image.shape[0]} image "
                       f"{_ORIENTATIONS[orientation][0]} to its displayed {turned.shape[1]}x{turned.shape[0]}; "
                       "boxes are read in displayed coordinates")
    return turned


def _imdecode(data: bytes) -> np.ndarray:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV asserts on what it refuses (its own pixel guard): one bad image, not the audit
        problem = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ImageReadError(f"cannot decode image: OpenCV refused it ({problem})") from None
    if decoded is None or decoded.size == 0:
        raise ImageReadError("cannot decode image (corrupt or unsupported format)")
    return decoded


def check_channels(channels) -> int:
    if isinstance(channels, bool) or not isinstance(channels, int | np.integer) or int(channels) not in CHANNELS:
        raise UsageError(f"channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), not {channels!r}")
    return int(channels)


def is_dicom(path: Path, data: bytes) -> bool:
    """A ``.dcm``/``.dicom`` name, or the DICOM Part 10 magic ``DICM`` after the 128-byte preamble."""
    return path.suffix.lower() in _DICOM_SUFFIXES or data[128:132] == b"DICM"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, refused by its size before it is read (and the read bounded all the same)."""
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    limit = image_byte_limit()
    try:
        size = path.stat().st_size
        if size > limit:
            raise ImageTooLargeError(f"image file is {fmt_bytes(size)}, over the limit of {fmt_bytes(limit)} "
                                     f"(${BYTES_ENV}); not read")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ImageReadError(f"cannot read image file: {exc.strerror or exc}") from exc
    if len(data) > limit:  # grew since the stat
        raise ImageTooLargeError(f"image file is over the limit of {fmt_bytes(limit)} (${BYTES_ENV}); not read")
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
