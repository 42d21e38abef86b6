"""Image decoding (conversions, damaged files) and preprocessing modes against hand-computed values."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from validator.data import ImageReadError, get_preprocess, read_image
from validator.errors import UsageError


def png_bytes(pixels: np.ndarray, color_type: int, palette: np.ndarray | None = None) -> bytes:
    """A minimal 8-bit PNG written by hand (cv2 cannot write palette or grey+alpha files)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = pixels.shape[:2]
    rows = b"".join(b"\x00" + pixels[r].tobytes() for r in range(height))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write(path: Path, array: np.ndarray, ext: str = ".png") -> Path:
    ok, encoded = cv2.imencode(ext, array)
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def test_rgb_png_is_returned_as_rgb_without_conversion(tmp_path):
    bgr = np.zeros((3, 4, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30  # B, G, R
    image, conversions = read_image(write(tmp_path / "x.png", bgr))
    assert image.dtype == np.uint8 and image.shape == (3, 4, 3)
    assert image[0, 0].tolist() == [30, 20, 10] and conversions == []


def test_grayscale_converted(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    image, conversions = read_image(write(tmp_path / "g.png", gray))
    assert conversions == ["grayscale -> RGB"]
    assert np.array_equal(image, np.stack([gray] * 3, axis=-1))


def test_rgba_alpha_dropped(tmp_path):
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[...] = (10, 20, 30, 0)  # fully transparent: the colour is kept, alpha ignored
    image, conversions = read_image(write(tmp_path / "a.png", bgra))
    assert conversions == ["RGBA -> RGB (alpha dropped)"]
    assert image.shape == (2, 2, 3) and image[1, 1].tolist() == [30, 20, 10]


def test_gray_alpha_converted(tmp_path):
    pixels = np.zeros((2, 3, 2), np.uint8)
    pixels[..., 0], pixels[..., 1] = 77, 5
    path = tmp_path / "ga.png"
    path.write_bytes(png_bytes(pixels, color_type=4))
    image, conversions = read_image(path)
    assert conversions == ["grayscale+alpha -> RGB (alpha dropped)"]
    assert np.all(image == 77) and image.shape == (2, 3, 3)


def test_palette_converted(tmp_path):
    palette = np.array([[255, 0, 0], [0, 128, 255]])  # RGB entries
    path = tmp_path / "p.png"
    path.write_bytes(png_bytes(np.array([[0, 1], [1, 1]], np.uint8), color_type=3, palette=palette))
    image, conversions = read_image(path)
    assert conversions == ["palette -> RGB"]
    assert image[0, 0].tolist() == [255, 0, 0] and image[0, 1].tolist() == [0, 128, 255]


def test_16_bit_scaled_to_0_255_float(tmp_path):
    values = np.array([[0, 300, 25700, 65535]], np.uint16)  # /257 -> 0, 1.167, 100, 255 (precision kept)
    image, conversions = read_image(write(tmp_path / "d.png", values))
    assert conversions == ["16-bit -> 0..255 float (x / 257)", "grayscale -> RGB"]
    assert image.dtype == np.float32
    np.testing.assert_allclose(image[0, :, 0], [0, 300 / 257, 100, 255], rtol=1e-6)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match="cannot decode"):
        read_image(path)


def test_truncated_png(tmp_path):
    data = write(tmp_path / "full.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated PNG") as err:
        read_image(tmp_path / "cut.png")
    assert err.value.reason == "truncated PNG (no IEND chunk)"


def test_truncated_jpeg_and_zero_padding(tmp_path):
    data = write(tmp_path / "full.jpg", np.full((32, 32, 3), 90, np.uint8), ".jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-100])
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "padded.jpg").write_bytes(data + b"\x00" * 16)  # zero padding after FFD9 is fine
    image, conversions = read_image(tmp_path / "padded.jpg")
    assert image.shape == (32, 32, 3) and abs(int(image[5, 5, 0]) - 90) <= 2 and conversions == []


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(ImageReadError, match="not found"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        read_image(tmp_path / "empty.png")


# ---------------------------------------------------------------- preprocessing

PIXEL = np.array([[[[10.0, 20.0, 30.0]]]], np.float32)  # one RGB pixel, [1, 1, 1, 3]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", [10.0, 20.0, 30.0]),
        (None, [10.0, 20.0, 30.0]),
        ("unit", [10 / 255, 20 / 255, 30 / 255]),
        ("symmetric", [10 / 127.5 - 1, 20 / 127.5 - 1, 30 / 127.5 - 1]),
        # RGB -> BGR, then minus the BGR ImageNet mean
        ("caffe", [30 - 103.939, 20 - 116.779, 10 - 123.68]),
        ("torch", [(10 / 255 - 0.485) / 0.229, (20 / 255 - 0.456) / 0.224, (30 / 255 - 0.406) / 0.225]),
    ],
)
def test_preprocess_modes(mode, expected):
    out = get_preprocess(mode)(PIXEL.copy())
    assert out.dtype == np.float32 and out.shape == PIXEL.shape
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-6, atol=1e-6)


def test_preprocess_module_function():
    assert get_preprocess("numpy:negative")(PIXEL)[0, 0, 0].tolist() == [-10.0, -20.0, -30.0]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bogus", "unknown preprocess"),
        ("no_such_module_xyz:f", "cannot import"),
        ("numpy:no_such_function", "has no attribute"),
        ("math:pi", "not callable"),
    ],
)
def test_preprocess_bad_spec_is_usage_error(spec, message):
    with pytest.raises(UsageError, match=message):
        get_preprocess(spec)
