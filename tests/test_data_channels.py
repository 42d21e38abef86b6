"""Any channel count (1 grayscale, 3 RGB, 4 RGBA) and bit depth (8/16-bit, float, DICOM), end to end.

Oracles are hand computations: x / 257 for 16-bit files, the BT.601 luminance formula, the DICOM PS3.3
C.11.2.1.2 window formula; the third-party model is the real fer mini-Xception (tests/data/third_party).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import run_cli

from validator._tf import keras
from validator.data import ImageReadError, Sample, iter_batches, read_image
from validator.errors import ModelUsageError, UsageError
from validator.explain import Explainer
from validator.metrics import score_maps
from validator.model import describe, load_model
from validator.report.overlay import display_rgb, render_overlay

THIRD_PARTY = Path(__file__).parent / "data" / "third_party"
FER_MODEL = THIRD_PARTY / "fer_emotion_model.hdf5"
FER_CLASSES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
# Face (forehead to chin, ear to ear) in skimage.data.astronaut(), 512x512, checked by eye: x0 y0 x1 y1.
ASTRONAUT_FACE = (175, 65, 285, 175)


def write(path: Path, array: np.ndarray) -> Path:
    """cv2 writes BGR(A) channel order; the extension picks the format (PNG, TIFF)."""
    assert cv2.imwrite(str(path), array), path
    return path


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 by hand, in float64: Y = 0.299 R + 0.587 G + 0.114 B."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


# ---------------------------------------------------------------- bit depth

K = np.array([0, 1, 2, 100, 127, 254, 255])  # 257 * 255 = 65535


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_gray_decodes_to_exact_0_255_floats(tmp_path, ext):
    stored = (257 * K).astype(np.uint16).reshape(1, -1)
    assert stored.max() == 65535
    image, conversions = read_image(write(tmp_path / f"g16{ext}", stored), channels=1)
    assert image.dtype == np.float32 and image.shape == (1, len(K), 1)
    assert image[0, :, 0].tolist() == K.astype(float).tolist()  # exactly k, no rounding
    assert conversions == ["16-bit -> 0..255 float (x / 257)"]


@pytest.mark.parametrize("ext", [".png", ".tiff"])
def test_16_bit_keeps_precision_between_8_bit_levels(tmp_path, ext):
    stored = np.array([[300, 40000, 65534]], np.uint16)
    image, conversions = read_image(write(tmp_path / f"f{ext}", stored), channels=1)
    np.testing.assert_allclose(image[0, :, 0], stored[0] / 257.0, rtol=1e-6)
    assert image[0, 0, 0] != round(300 / 257)  # 1.167, not the 8-bit level 1


def test_16_bit_colour_tiff_keeps_rgb_order(tmp_path):
    bgr = np.zeros((2, 3, 3), np.uint16)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 257 * 10, 257 * 20, 65535  # B, G, R
    image, conversions = read_image(write(tmp_path / "c16.tiff", bgr))
    assert image.dtype == np.float32 and image.shape == (2, 3, 3)
    assert image[1, 2].tolist() == [255.0, 20.0, 10.0]
    assert conversions == ["16-bit -> 0..255 float (x / 257)"]


def test_8_bit_stays_uint8_unchanged(tmp_path):
    bgr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for channels in (3, None):
        args = () if channels is None else (channels,)
        image, conversions = read_image(write(tmp_path / "x.png", bgr), *args)
        assert image.dtype == np.uint8 and conversions == []
        assert np.array_equal(image, bgr[..., ::-1])


def test_float_tiff_stays_float(tmp_path):
    values = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)  # a [0, 1] float image -> x * 255
    image, conversions = read_image(write(tmp_path / "f.tiff", values), channels=1)
    assert image.dtype == np.float32
    assert image[0, :, 0].tolist() == [0.0, 63.75, 127.5, 255.0]
    assert conversions == ["float [0, 1] -> 0..255 float (x * 255)"]


# ---------------------------------------------------------------- channel counts


def test_rgb_file_as_grayscale_is_the_luminance_formula(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    image, conversions = read_image(write(tmp_path / "rgb.png", rgb[..., ::-1]), channels=1)
    assert image.shape == (6, 9, 1) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], np.round(luma(rgb)).astype(np.uint8))
    assert conversions == ["RGB -> grayscale"]
    red, _ = read_image(write(tmp_path / "red.png", np.full((2, 2, 3), (0, 0, 255), np.uint8)), channels=1)
    assert np.all(red == 76)  # round(0.299 * 255) = round(76.245)


def test_16_bit_rgb_as_grayscale_is_float_luminance(tmp_path):
    rgb16 = np.random.default_rng(2).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    image, conversions = read_image(write(tmp_path / "rgb16.png", rgb16[..., ::-1]), channels=1)
    assert image.dtype == np.float32 and image.shape == (4, 5, 1)
    np.testing.assert_allclose(image[..., 0], luma(rgb16 / 257.0), rtol=1e-5)
    assert conversions == ["16-bit -> 0..255 float (x / 257)", "RGB -> grayscale"]


def test_rgb_as_rgba_adds_opaque_alpha(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    image, conversions = read_image(write(tmp_path / "rgb.png", rgb[..., ::-1]), channels=4)
    assert image.shape == (3, 4, 4) and image.dtype == np.uint8
    assert np.array_equal(image[..., :3], rgb) and np.all(image[..., 3] == 255)
    assert conversions == ["RGB -> RGBA (opaque alpha added)"]


def test_rgba_file_keeps_its_alpha_and_gray_as_rgba(tmp_path):
    bgra = np.zeros((2, 2, 4), np.uint8)
    bgra[...] = (10, 20, 30, 77)
    image, conversions = read_image(write(tmp_path / "a.png", bgra), channels=4)
    assert image[0, 0].tolist() == [30, 20, 10, 77] and conversions == []
    gray = np.array([[0, 90], [180, 255]], np.uint8)
    image, conversions = read_image(write(tmp_path / "g.png", gray), channels=4)
    assert image[1, 0].tolist() == [180, 180, 180, 255]
    assert conversions == ["grayscale -> RGBA (opaque alpha added)"]


def test_gray_file_as_rgb_repeats_and_as_gray_is_unchanged(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = write(tmp_path / "g.png", gray)
    rgb, conversions = read_image(path, channels=3)
    assert np.array_equal(rgb, np.stack([gray] * 3, axis=-1)) and conversions == ["grayscale -> RGB"]
    one, conversions = read_image(path, channels=1)
    assert np.array_equal(one[..., 0], gray) and one.shape == (3, 4, 1) and conversions == []


def test_rgba_as_grayscale_drops_alpha(tmp_path):
    bgra = np.zeros((1, 1, 4), np.uint8)
    bgra[...] = (0, 255, 0, 10)  # pure green
    image, conversions = read_image(write(tmp_path / "a.png", bgra), channels=1)
    assert image.tolist() == [[[150]]]  # round(0.587 * 255) = round(149.685)
    assert conversions == ["RGBA -> grayscale (alpha dropped)"]


def test_gray_alpha_png_to_each_channel_count(tmp_path):
    from test_data_images import png_bytes  # cv2 cannot write grey+alpha PNGs

    pixels = np.zeros((2, 3, 2), np.uint8)
    pixels[..., 0], pixels[..., 1] = 77, 5
    path = tmp_path / "ga.png"
    path.write_bytes(png_bytes(pixels, color_type=4))
    expected = {1: ([77], "grayscale+alpha -> grayscale (alpha dropped)"),
                3: ([77, 77, 77], "grayscale+alpha -> RGB (alpha dropped)"),
                4: ([77, 77, 77, 5], "grayscale+alpha -> RGBA")}
    for channels, (pixel, conversion) in expected.items():
        image, conversions = read_image(path, channels)
        assert image.shape == (2, 3, channels) and image[1, 2].tolist() == pixel and conversions == [conversion]


@pytest.mark.parametrize("channels", [0, 2, 5, "3", True])
def test_bad_channel_count_is_a_usage_error(tmp_path, channels):
    path = write(tmp_path / "g.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(UsageError, match="channels must be 1 .* 3 .* or 4"):
        read_image(path, channels)


def test_truncation_still_refused_for_16_bit(tmp_path):
    data = write(tmp_path / "full.png", np.random.default_rng(4).integers(0, 65536, (64, 64), np.uint16)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated PNG"):
        read_image(tmp_path / "cut.png", channels=1)


# ---------------------------------------------------------------- DICOM


def write_dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags) -> Path:
    """A real DICOM Part 10 file (preamble + DICM + explicit VR little endian), written by pydicom."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 1 if pixels.ndim == 2 else pixels.shape[2]
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


def dicom_linear(x: float, c: float, w: float) -> float:
    """DICOM PS3.3 C.11.2.1.2.1, written out: ymin = 0, ymax = 255."""
    if x <= c - 0.5 - (w - 1) / 2:
        return 0.0
    if x > c - 0.5 + (w - 1) / 2:
        return 255.0
    return ((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0


def test_dicom_rescale_then_window(tmp_path):
    stored = np.array([[0, 400, 500, 520, 600, 700, 2000]], np.uint16)  # HU = 2 * s - 1000
    path = write_dicom(tmp_path / "ct.dcm", stored, RescaleSlope="2", RescaleIntercept="-1000",
                       WindowCenter="40", WindowWidth="400")
    image, conversions = read_image(path, channels=1)
    hu = 2.0 * stored[0] - 1000.0
    expected = [dicom_linear(x, 40, 400) for x in hu]
    assert expected[:3] == [0.0, 0.0, pytest.approx(102.2556, abs=1e-4)]  # HU 0: (-39.5 / 399 + 0.5) * 255
    assert image.dtype == np.float32 and image.shape == (1, 7, 1)
    np.testing.assert_allclose(image[0, :, 0], expected, rtol=1e-6, atol=1e-4)
    assert conversions == ["DICOM rescale x * 2 - 1000", "DICOM window C=40 W=400 -> 0..255"]


def test_dicom_multivalued_window_uses_the_first_and_rgb_repeats(tmp_path):
    stored = np.array([[0, 100, 200, 300]], np.uint16)
    path = write_dicom(tmp_path / "mv.dcm", stored, WindowCenter=[150, 1000], WindowWidth=[101, 4000])
    image, conversions = read_image(path)  # default: 3 channels
    expected = [dicom_linear(x, 150, 101) for x in stored[0]]
    assert expected == [0.0, pytest.approx(1.275), 255.0, 255.0]  # 100: ((100 - 149.5) / 100 + 0.5) * 255
    np.testing.assert_allclose(image[0, :, 0], expected, atol=1e-4)
    assert np.array_equal(image[..., 0], image[..., 2])
    assert conversions == ["DICOM window C=150 W=101 -> 0..255", "grayscale -> RGB"]


def test_dicom_monochrome1_without_window_is_min_max_inverted(tmp_path):
    stored = np.array([[100, 200, 300, 500]], np.uint16)
    path = write_dicom(tmp_path / "cr.dcm", stored, photometric="MONOCHROME1")
    image, conversions = read_image(path, channels=1)
    # min-max 100..500 -> 0, 63.75, 127.5, 255; MONOCHROME1 (0 = white) inverted
    assert image[0, :, 0].tolist() == [255.0, 191.25, 127.5, 0.0]
    assert conversions == ["DICOM min-max 100..500 -> 0..255", "DICOM MONOCHROME1 inverted"]


def test_dicom_found_by_magic_and_rgb_passes_through(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    path = write_dicom(tmp_path / "scan", rgb, photometric="RGB")  # no suffix: DICM at byte 128
    assert path.read_bytes()[128:132] == b"DICM"
    image, conversions = read_image(path)
    assert image.dtype == np.uint8 and np.array_equal(image, rgb) and conversions == []
    gray, conversions = read_image(path, channels=1)
    assert np.array_equal(gray[..., 0], np.round(luma(rgb)).astype(np.uint8))
    assert conversions == ["RGB -> grayscale"]


def test_truncated_dicom_is_refused(tmp_path):
    path = write_dicom(tmp_path / "ct.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 2000])
    with pytest.raises(ImageReadError, match="DICOM"):
        read_image(tmp_path / "cut.dcm", channels=1)


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "ct.dcm", np.zeros((2, 2), np.uint16))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # "import pydicom" now raises ImportError
    with pytest.raises(ImageReadError) as err:
        read_image(path, channels=1)
    assert err.value.reason == f"reading DICOM {path} needs pydicom: pip install 'camgate[dicom]'"


# ---------------------------------------------------------------- pipeline, preprocess, overlays


def sample(sid, path, boxes=(), class_id=0) -> Sample:
    ids = tuple(f"{sid}:{i}" for i in range(len(boxes)))
    return Sample(sid, str(path), class_id, f"c{class_id}", tuple(boxes), ids, None)


def square_image(path: Path, size=32, box=(8, 8, 24, 24), bgr=(0, 0, 255)) -> Path:
    """A colour square (default red) on black; cv2 writes BGR."""
    image = np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = bgr
    return write(path, image)


def test_iter_batches_one_channel(tmp_path):
    red = square_image(tmp_path / "red.png")
    deep = write(tmp_path / "deep.png", np.full((32, 32), 300, np.uint16))  # 300 / 257 = 1.167
    issues = []
    batches = list(iter_batches([sample("r", red, [(8, 8, 24, 24)]), sample("d", deep)], input_size=(16, 16),
                                batch_size=2, channels=1, issues=issues))
    assert len(batches) == 1
    images, raw = batches[0].images, batches[0].raw
    assert images.shape == (2, 16, 16, 1) and images.dtype == np.float32
    assert raw.shape == (2, 16, 16, 1) and raw.dtype == np.uint8
    assert images[0, 4:12, 4:12, 0].min() == 76.0 and images[0, :4, :, 0].max() == 0.0  # luminance of red
    np.testing.assert_allclose(images[1], 300 / 257, rtol=1e-6)  # the 16-bit fraction reaches the model
    assert np.all(raw[1] == 1)  # display copy rounded
    assert batches[0].boxes[0].tolist() == [[4.0, 4.0, 12.0, 12.0]]
    notes = {Path(i.file).name: i.reason for i in issues if i.action == "converted_image"}
    assert notes == {"red.png": "RGB -> grayscale", "deep.png": "16-bit -> 0..255 float (x / 257)"}


def test_iter_batches_four_channels(tmp_path):
    red = square_image(tmp_path / "red.png")
    (batch,) = iter_batches([sample("r", red)], input_size=(32, 32), batch_size=1, channels=4, preprocess="unit")
    assert batch.images.shape == (1, 32, 32, 4)
    assert batch.images[0, 10, 10].tolist() == [1.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize(("mode", "channels", "text"), [("caffe", 1, "1 channel"), ("torch", 4, "4 channels")])
def test_rgb_only_preprocess_refuses_other_channel_counts(tmp_path, mode, channels, text):
    red = square_image(tmp_path / "red.png")
    message = f"preprocess '{mode}' needs 3-channel RGB input; the model takes {text}"
    with pytest.raises(UsageError) as err:
        list(iter_batches([sample("r", red)], input_size=(8, 8), batch_size=1, preprocess=mode, channels=channels))
    assert str(err.value) == message
    from validator.data import get_preprocess

    with pytest.raises(UsageError, match=re.escape(message)):
        get_preprocess(mode)(np.zeros((1, 2, 2, channels), np.float32))


@pytest.mark.parametrize("mode", ["none", "unit", "symmetric"])
def test_channel_agnostic_preprocess_modes(mode):
    from validator.data import get_preprocess

    x = np.array([[[[0.0], [127.5], [255.0]]]], np.float32)  # [1, 1, 3, 1]
    out = get_preprocess(mode)(x)
    expected = {"none": [0, 127.5, 255], "unit": [0, 0.5, 1], "symmetric": [-1, 0, 1]}[mode]
    assert out.shape == x.shape
    np.testing.assert_allclose(out[0, 0, :, 0], expected, atol=1e-6)


def test_overlay_accepts_gray_and_rgba():
    rng = np.random.default_rng(6)
    gray = rng.integers(0, 256, (8, 8, 1), dtype=np.uint8)
    heat = rng.random((8, 8)).astype(np.float32)
    as_rgb = np.repeat(gray, 3, axis=2)
    assert np.array_equal(display_rgb(gray), as_rgb) and np.array_equal(display_rgb(gray[..., 0]), as_rgb)
    rgba = np.concatenate([as_rgb, np.zeros((8, 8, 1), np.uint8)], axis=2)
    expected = render_overlay(as_rgb, heat, [(1, 1, 4, 4)])
    assert expected.shape == (256, 256, 3)
    assert np.array_equal(render_overlay(gray, heat, [(1, 1, 4, 4)]), expected)
    assert np.array_equal(render_overlay(rgba, heat, [(1, 1, 4, 4)]), expected)
    with pytest.raises(ValueError, match="1, 3 or 4 channels"):
        display_rgb(np.zeros((8, 8, 2), np.uint8))


# ---------------------------------------------------------------- models


def intensity_model(channels=1, size=32):
    """Conv(1x1, weight 1, no bias, ReLU) -> GAP -> Dense(2) with class 0 = +mean, class 1 = -mean.
    The feature map is the input itself, so Grad-CAM of class 0 is a positive multiple of the image."""
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(1, 1, use_bias=False, activation="relu", name="feat")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name=f"intensity{channels}")
    model.get_layer("feat").set_weights([np.ones((1, 1, channels, 1), np.float32)])
    model.get_layer("head").set_weights([np.array([[0.05, -0.05]], np.float32), np.zeros(2, np.float32)])
    return model


def test_loaded_model_input_channels():
    assert load_model(intensity_model(1)).input_channels == 1
    assert load_model(intensity_model(4)).input_channels == 4
    assert load_model(intensity_model(3)).input_channels == 3
    with pytest.raises(ModelUsageError, match=re.escape("(None, 32, 32, 2)")):
        describe(intensity_model(2), "<two>")


def test_one_channel_model_explained_end_to_end(tmp_path):
    # Red square on black: the grayscale pipeline sees 76 inside the box, 0 outside.
    boxes = [(8, 8, 24, 24), (0, 16, 12, 32)]
    samples = [sample(str(i), square_image(tmp_path / f"{i}.png", box=b), [b]) for i, b in enumerate(boxes)]
    explainer = Explainer(intensity_model(1), method="gradcam")
    assert explainer.loaded.input_channels == 1
    (batch,) = iter_batches(samples, input_size=(32, 32), batch_size=2, channels=1)
    result = explainer.explain(batch.images, np.zeros(2, int))
    assert result.maps.shape == (2, 32, 32) and not result.dead.any()
    assert result.predicted.tolist() == [0, 0]  # positive mean intensity -> class 0
    for i in range(2):  # Grad-CAM = alpha * ReLU(A) with A = the grayscale image: proportional to it
        np.testing.assert_allclose(result.maps[i] / result.maps[i].max(), batch.images[i, ..., 0] / 76.0, atol=1e-5)
    scores = score_maps(result.maps, batch.boxes)
    np.testing.assert_allclose(scores["energy"], [1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(scores["lift"], [1024 / 256, 1024 / 192], rtol=1e-5)


# ---------------------------------------------------------------- the third-party fer model


@pytest.fixture(scope="module")
def fer_files(tmp_path_factory):
    """Two crops of skimage's astronaut photograph (a smiling face) and the fer class list."""
    from skimage.data import astronaut

    folder = tmp_path_factory.mktemp("fer")
    photo = astronaut()
    crops = {"tight": (150, 40, 310, 200), "context": (120, 10, 340, 230)}  # x0 y0 x1 y1
    files = {"classes": folder / "classes.txt"}
    files["classes"].write_text("\n".join(FER_CLASSES) + "\n")
    for name, (x0, y0, x1, y1) in crops.items():
        files[name] = write(folder / f"{name}.png", np.ascontiguousarray(photo[y0:y1, x0:x1, ::-1]))
        fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
        files[f"{name}_box"] = (fx0 - x0, fy0 - y0, fx1 - x0, fy1 - y0)
    return files


def test_fer_model_loads_in_safe_mode():
    loaded = load_model(FER_MODEL)
    assert loaded.input_channels == 1 and loaded.input_size == (64, 64)
    assert loaded.num_classes == 7 and loaded.head_activation == "softmax"


def test_fer_model_reads_a_smile_from_an_rgb_photo(fer_files, tmp_path):
    """The face crop as the fer library feeds it (grayscale, symmetric scaling): 'happy', confidently."""
    from validator.explain_one import explain_image

    result = explain_image(str(FER_MODEL), str(fer_files["tight"]), classes=str(fer_files["classes"]),
                           box=fer_files["tight_box"], preprocess="symmetric", out=tmp_path / "tight.png")
    assert result["predicted_name"] == "happy" and result["confidence"] > 0.95  # measured 0.995
    assert not result["dead"]
    overlay = cv2.imread(str(tmp_path / "tight.png"))
    assert overlay.shape == (256, 256, 3)


def test_fer_gradcam_heat_sits_on_the_face(fer_files, tmp_path, capsys):
    """`camgate explain` on the 1-channel model: with context around the face (box = 25% of the image),
    the Grad-CAM heat for 'happy' is concentrated in the face box (measured lift 2.09; 1.8-2.3 when the
    crop moves by 10 px) and peaks inside it."""
    out = tmp_path / "context.png"
    box = [str(v) for v in fer_files["context_box"]]
    result = run_cli(capsys, "explain", FER_MODEL, fer_files["context"], "--classes", fer_files["classes"],
                     "--class", "happy", "--box", *box, "--preprocess", "symmetric", "--out", out)
    assert result.exit_code == 0, result.err
    scores = dict(re.findall(r"^\s+(\w+): (\S+)$", result.out, flags=re.M))
    assert result.out.startswith("class happy")
    assert float(scores["area"]) == pytest.approx(0.25, abs=0.01)
    assert float(scores["lift"]) > 1.5
    assert float(scores["pointing_hit"]) == 1.0
    assert out.is_file()


def test_fer_model_audited_through_the_gate(fer_files, tmp_path):
    """`camgate audit` of the third-party 1-channel .h5 on 25 crops of the astronaut photograph (the crop moves
    by up to 12 px; face box ~25% of each crop, labelled 'happy'), under the default policy's checks with its
    sample floors lowered to 20 for so small a set: it runs end to end, the heat sits on the face in every
    crop and the verdict is decided by the checks themselves."""
    import yaml
    from skimage.data import astronaut

    from validator import audit
    from validator.policy import default_policy_path

    photo = astronaut()
    folder = tmp_path / "crops"
    folder.mkdir()
    rows = ["image,label,xmin,ymin,xmax,ymax"]
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE
    for i, (dx, dy) in enumerate((dx, dy) for dx in (-12, -6, 0, 6, 12) for dy in (-12, -6, 0, 6, 12)):
        x0, y0 = 120 + dx, 14 + dy
        write(folder / f"{i:02d}.png", np.ascontiguousarray(photo[y0:y0 + 220, x0:x0 + 220, ::-1]))
        rows.append(f"{i:02d}.png,happy,{fx0 - x0},{fy0 - y0},{fx1 - x0},{fy1 - y0}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    policy = yaml.safe_load(default_policy_path().read_text())
    policy["sample"].update(min_samples=20, min_per_class=20)
    verdict = audit(str(FER_MODEL), str(folder / "manifest.csv"), policy=policy, out=tmp_path / "report",
                    classes=list(FER_CLASSES), preprocess="symmetric")
    assert verdict.error is None and verdict.sample["n_explained"] == 25
    lift = verdict.table["lift"]
    assert np.all(lift > 1.0)  # every crop: more heat on the face than a uniform map
    overall = {c["check_id"]: c for c in verdict.checks if c["slice"] == "overall"}
    assert overall["object-heat-share"]["outcome"] == "PASS" and overall["corner-heat"]["outcome"] == "PASS"
    assert overall["object-heat"]["outcome"] == "PASS", overall["object-heat"]["message"]
