"""The gate's own adversarial corpus: resource bombs of each kind (issue 22).

Classes of input, each refused by what it declares before it costs memory or time (validator.limits):
images whose header declares too many pixels (PNG, JPEG, BMP, DICOM; a header-only file and a real deflate
bomb), image files too large to read (a sparse file: nothing is written to disk), masks that declare more
than their image, YAML policies and class lists that expand past the node limit (alias "billion laughs",
merge-key, deep nesting) or are too large to read, and .keras zips whose entries inflate past the size or
ratio limit. Images are skipped and recorded (the audit goes on); a policy, class list or model is refused
with exit 2, naming the file and the limit. Every file here is real; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from validator.data.images import ImageTooLargeError, read_image
from validator.errors import DataError, ModelUsageError, PolicyError, UsageError
from validator.limits import MAX_CONFIG_BYTES, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, MAX_YAML_NODES

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ bomb makers


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(path: Path, width: int, height: int, *, rows: int = 1) -> Path:
    """A grey 8-bit PNG whose IHDR declares width x height; IDAT holds ``rows`` deflated zero rows (all of them
    for a real decompression bomb: 225 M pixels deflate to ~220 KB), then IEND, so the file is complete."""
    deflate = zlib.compressobj(9)
    row = b"\x00" * (width + 1)  # filter byte + pixels
    idat = b"".join(deflate.compress(row) for _ in range(rows)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A real 8x8 baseline JPEG whose SOF0 frame header is rewritten to declare width x height."""
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, "JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def bmp_declaring(path: Path, width: int, height: int) -> Path:
    """A real 8x8 BMP whose info header is rewritten to declare width x height."""
    Image.new("RGB", (8, 8), (10, 200, 10)).save(path, "BMP")
    data = bytearray(path.read_bytes())
    data[18:26] = struct.pack("<ii", width, height)
    path.write_bytes(bytes(data))
    return path


def sparse_file(path: Path, size: int, head: bytes = b"\x89PNG\r\n\x1a\n") -> Path:
    """``size`` bytes declared by the file system, only ``head`` written (no disk is used for the rest)."""
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return path


def small_png(path: Path, size: int = 64) -> Path:
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(path)
    return path


def billion_laughs(levels: int = 9, fan: int = 10) -> list[str]:
    """The classic alias bomb: level k holds ``fan`` aliases of level k - 1, so the last expands to fan^levels."""
    names = [f"l{k}" for k in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [" + ", ".join(['"lol"'] * fan) + "]"]
    lines += [f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * fan) + "]" for prev, cur in zip(names[:-1], names[1:], strict=True)]
    return lines


def merge_key_bomb(levels: int = 9, fan: int = 10) -> list[str]:
    """YAML merge keys: each level merges ``fan`` copies of the previous mapping; ``yaml.safe_load`` itself
    copies the pairs (fan^levels of them) before it dedupes the keys."""
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(fan)) + "}"]
    lines += [f"m{k}: &m{k} {{<<: [" + ", ".join([f"*m{k - 1}"] * fan) + "]}" for k in range(1, levels)]
    return lines


# ------------------------------------------------------------------------------------------ images


@pytest.mark.parametrize("make, declared", [
    (lambda p: png_declaring(p, 40000, 40000), "40000x40000"),  # the issue's case: OpenCV asserted (exit 3)
    (lambda p: jpeg_declaring(p, 60000, 60000), "60000x60000"),
    (lambda p: bmp_declaring(p, 40000, 40000), "40000x40000"),
    (lambda p: png_declaring(p, 15000, 15000, rows=15000), "15000x15000"),  # a real deflate bomb, under cv2's guard
], ids=["png-header", "jpeg-sof", "bmp-header", "png-deflate-bomb"])
def test_an_image_declaring_too_many_pixels_is_refused_before_decoding(tmp_path, make, declared):
    path = make(tmp_path / "bomb.img")
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as err:
        read_image(path)
    assert time.perf_counter() - started < 2.0  # the header alone was read
    assert f"limit of {MAX_IMAGE_PIXELS:,}" in err.value.reason and "CAMGATE_MAX_IMAGE_PIXELS" in err.value.reason
    if declared == "15000x15000":  # 225 M pixels, under OpenCV's 2^30 guard: decoded whole before
        assert "225000000 pixels" in err.value.reason


def test_the_pixel_limit_is_exact_and_can_be_lowered(tmp_path, monkeypatch):
    path = small_png(tmp_path / "ok.png", 64)
    monkeypatch.setenv("CAMGATE_MAX_IMAGE_PIXELS", "4096")
    assert read_image(path)[0].shape == (64, 64, 3)  # at the limit: read
    monkeypatch.setenv("CAMGATE_MAX_IMAGE_PIXELS", "4095")
    with pytest.raises(ImageTooLargeError) as err:
        read_image(path)
    assert err.value.reason == ("image declares 64x64 = 4,096 pixels, over the limit of 4,095 "
                                "($CAMGATE_MAX_IMAGE_PIXELS); not decoded")
    monkeypatch.setenv("CAMGATE_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UsageError, match="CAMGATE_MAX_IMAGE_PIXELS must be a positive whole number"):
        read_image(path)


def test_a_dicom_declaring_too_many_pixels_is_refused_before_its_pixel_data_is_decoded(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 40000  # declared; 64 bytes of pixel data follow
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(64)
    path = tmp_path / "huge.dcm"
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    with pytest.raises(ImageTooLargeError, match=r"declares 40000x40000 = 1,600,000,000 pixels, over the limit"):
        read_image(path)


def test_an_image_file_over_the_byte_limit_is_refused_by_its_size_unread(tmp_path):
    just_over = sparse_file(tmp_path / "over.png", MAX_IMAGE_BYTES + 1)
    with pytest.raises(ImageTooLargeError) as err:
        read_image(just_over)
    assert err.value.reason == ("image file is 536,870,913 bytes (512.0 MiB), over the limit of 536,870,912 bytes "
                                "(512 MiB) ($CAMGATE_MAX_IMAGE_BYTES); not read")
    # multi-GB: refused by the size the file system reports, in no time and with no memory
    huge = sparse_file(tmp_path / "huge.png", 64 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match=r"68,719,476,736 bytes \(64 GiB\)"):
        read_image(huge)
    assert time.perf_counter() - started < 1.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 << 10  # KiB: under 64 MiB more


def test_the_byte_limit_can_be_lowered(tmp_path, monkeypatch):
    path = small_png(tmp_path / "ok.png", 64)
    size = path.stat().st_size
    monkeypatch.setenv("CAMGATE_MAX_IMAGE_BYTES", str(size))
    assert read_image(path)[0].shape == (64, 64, 3)
    monkeypatch.setenv("CAMGATE_MAX_IMAGE_BYTES", str(size - 1))
    with pytest.raises(ImageTooLargeError, match=f"over the limit of {size - 1:,} bytes"):
        read_image(path)


def test_a_mask_is_refused_by_its_header_before_it_is_decoded(tmp_path):
    from validator.data.masks import MaskError, decode_mask
    from validator.data.records import MaskRef

    bomb = png_declaring(tmp_path / "bomb_mask.png", 40000, 40000)  # over Pillow's own threshold
    with pytest.raises(MaskError, match="cannot read mask"):
        decode_mask(MaskRef("png", str(bomb)), 64, 64)
    big = png_declaring(tmp_path / "big_mask.png", 10000, 10000)  # 100 M pixels: never decoded for a 64x64 image
    with pytest.raises(MaskError, match=r"is 10000x10000 but the image is 64x64"):
        decode_mask(MaskRef("png", str(big)), 64, 64)


def test_one_bomb_per_kind_is_a_skipped_recorded_image_and_the_audit_goes_on(tmp_path, capsys, untrained_model):
    from validator.datasets.synthetic import write_dataset

    data = write_dataset(tmp_path / "data", 10, seed=3)
    images = tmp_path / "data" / "images"
    bombs = {
        "000000.png": lambda p: png_declaring(p, 40000, 40000),
        "000001.png": lambda p: jpeg_declaring(p, 60000, 60000),  # a JPEG under a .png name: read by content
        "000002.png": lambda p: sparse_file(p, 3 << 30),
        "000003.png": lambda p: bmp_declaring(p, 40000, 40000),
    }
    for name, make in bombs.items():
        (images / name).unlink()
        make(images / name)
    out = tmp_path / "out"
    result = run_cli(capsys, "audit", untrained_model, "--data", data.coco_path, "--no-mlflow", "--out", out,
                     "--max-samples", "10")
    verdict = json.loads((out / "verdict.json").read_text())
    assert verdict["error"] is None and result.exit_code in (0, 1, 4), result.err  # never 3: the audit went on
    skipped = {Path(i["file"]).name: i["reason"] for i in verdict["data_issues"] if i["action"] == "skipped_sample"}
    assert sorted(skipped) == sorted(bombs)
    assert "limit of 178,956,970" in skipped["000000.png"] and "limit of 178,956,970" in skipped["000001.png"]
    assert "3,221,225,472 bytes (3 GiB), over the limit of 536,870,912 bytes" in skipped["000002.png"]
    assert "limit of 178,956,970" in skipped["000003.png"]
    assert verdict["sample"]["n_explained"] == 6


# ------------------------------------------------------------------------------------------ YAML


def _bounded_python(code: str, timeout: float = 60, args=()) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter held to 3 GiB of address space: a bomb that is not refused dies there
    (MemoryError) instead of taking the machine's memory."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limit)


def _policy_with(lines: list[str]) -> str:
    """The shipped default policy with ``lines`` appended (they hold the bomb)."""
    return (ROOT / "validator" / "policies" / "default.yaml").read_text() + "\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize("bomb", [
    billion_laughs(),
    billion_laughs()[:-1] + ["classes: [" + ", ".join(["*l7"] * 10) + "]"],  # the bomb under a valid key
    merge_key_bomb(),  # safe_load itself would copy 10^9 pairs
], ids=["billion-laughs", "under-classes", "merge-keys"])
def test_a_yaml_alias_bomb_policy_is_refused_at_once(tmp_path, bomb):
    path = tmp_path / "bomb.yaml"
    path.write_text(_policy_with(bomb))
    # in a bounded interpreter: where the bomb is not refused it dies there, not in this process
    result = _bounded_python(
        "import time\nfrom validator.errors import PolicyError\nfrom validator.policy import load_policy\n"
        f"started = time.perf_counter()\ntry:\n    load_policy({str(path)!r})\nexcept PolicyError as exc:\n"
        "    print(f'{time.perf_counter() - started:.3f}', exc)\n", timeout=120)
    assert result.returncode == 0 and result.stdout, result.stderr[-2000:]
    seconds, message = result.stdout.strip().split(" ", 1)
    assert float(seconds) < 2.0
    assert message == (f"policy {path}: more than {MAX_YAML_NODES:,} YAML nodes with aliases expanded "
                       "(the limit); refused unread (an alias bomb?)")


def test_check_policy_refuses_an_alias_bomb_with_exit_2(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(billion_laughs()) + "\n")
    result = _bounded_python("from validator.cli import run\nrun()", args=["check-policy", str(path)], timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"policy {path}: more than 100,000 YAML nodes with aliases expanded (the limit)" in result.stderr


def test_a_policy_using_aliases_within_the_limit_still_loads(tmp_path):
    from validator.policy import load_policy

    path = tmp_path / "anchors.yaml"
    text = (ROOT / "validator" / "policies" / "default.yaml").read_text()
    path.write_text(text + "\nclasses: &names [disc, square]\nx-note: *names\n")
    with pytest.raises(PolicyError, match="x-note"):  # the unknown key is named, after the bounded index
        load_policy(path)
    path.write_text(text + "\nclasses: &names [disc, square]\n")
    assert list(load_policy(path).classes) == ["disc", "square"]


def test_a_deeply_nested_policy_is_a_policy_error_not_a_crash(tmp_path):
    from validator.policy import load_policy

    path = tmp_path / "deep.yaml"
    path.write_text("checks: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(PolicyError, match="nested too deeply"):
        load_policy(path)


def test_a_policy_file_over_the_size_limit_is_refused_unread(tmp_path):
    from validator.policy import load_policy

    path = sparse_file(tmp_path / "huge.yaml", (16 << 20) + 1, head=b"name: x\n")
    with pytest.raises(PolicyError, match=r"the file is 16,777,217 bytes \(16.0 MiB\), over the 16,777,216 bytes "
                                          r"\(16 MiB\) limit for it; refused unread"):
        load_policy(path)


def test_a_class_list_alias_bomb_is_refused(tmp_path):
    # a top-level list whose items are the nested levels: str() of the last is 10^9 names
    bomb = tmp_path / "classes.yaml"
    bomb.write_text("".join(f"- {line.split(':', 1)[1].strip()}\n" for line in billion_laughs()))
    code = ("from validator.data.classes import read_class_list\n"
            "from validator.errors import DataError\n"
            f"try:\n    read_class_list({str(bomb)!r})\nexcept DataError as exc:\n    print('REFUSED', exc)\n")
    result = _bounded_python(code)
    assert result.returncode == 0 and result.stdout.startswith("REFUSED"), result.stderr[-2000:]
    assert f"class list {bomb}: more than 100,000 YAML nodes with aliases expanded (the limit)" in result.stdout


def test_a_class_list_as_long_as_imagenet_21k_is_within_the_node_limit(tmp_path):
    from validator.data.classes import read_class_list
    from validator.limits import load_yaml_bounded

    text = "\n".join(f"- n{i:08d}" for i in range(21841)) + "\n"
    assert len(load_yaml_bounded(text, "class list")) == 21841  # (read_class_list's duplicate check is O(n^2))
    (tmp_path / "classes.yaml").write_text(text[:12 * 1000])
    assert len(read_class_list(tmp_path / "classes.yaml")) == 1000
    with pytest.raises(DataError, match="not valid"):
        (tmp_path / "bad.yaml").write_text("[unclosed\n")
        read_class_list(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------------------ .keras zips


def rezip(source: Path, target: Path, replace: dict | None = None, deflate: bool = False) -> Path:
    """``source``'s entries into ``target``; ``replace`` maps an entry name to a (size, byte) run written
    streaming and deflated (a bomb of ``size`` bytes costs ~size / 1000 on disk and no memory)."""
    replace = replace or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for info in src.infolist():
            if info.filename in replace:
                size, byte = replace[info.filename]
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = zipfile.ZIP_DEFLATED
                block = byte * (1 << 20)
                with out.open(entry, "w", force_zip64=True) as handle:
                    for _ in range(size >> 20):
                        handle.write(block)
                    handle.write(byte * (size & ((1 << 20) - 1)))
            else:
                out.writestr(info.filename, src.read(info),
                             compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
    return target


@pytest.mark.parametrize("trust", [False, True], ids=["safe", "trusted"])
def test_a_keras_zip_whose_config_inflates_past_the_limit_is_refused_unread(tmp_path, untrained_model, trust):
    from validator.model import load_model

    bomb = rezip(untrained_model, tmp_path / "bomb.keras", {"config.json": (MAX_CONFIG_BYTES + (1 << 20), b"0")})
    assert bomb.stat().st_size < 1 << 20  # 65 MiB of config in well under 1 MiB
    with pytest.raises(ModelUsageError) as err:
        load_model(str(bomb), trust=trust)
    assert err.value.exit_code == 2
    assert str(err.value) == (f"model file {bomb}: its config.json declares 68,157,440 bytes (65 MiB) "
                              "uncompressed, over the 67,108,864 bytes (64 MiB) limit for a model config; "
                              "refused unread")


@pytest.mark.parametrize("trust", [False, True], ids=["safe", "trusted"])
def test_a_keras_zip_entry_over_the_ratio_limit_is_refused_unread(tmp_path, untrained_model, trust):
    from validator.model import load_model

    bomb = rezip(untrained_model, tmp_path / "weights_bomb.keras", {"model.weights.h5": (32 << 20, b"\x00")})
    with pytest.raises(ModelUsageError, match=r"its entry model.weights.h5 declares 33,554,432 bytes \(32 MiB\) "
                                              r"from [\d,]+ stored bytes, a compression ratio of [\d,]+, over the "
                                              r"limit of 200 \(a zip bomb\?\); refused unread"):
        load_model(str(bomb), trust=trust)


def test_the_audit_refuses_a_zip_bomb_model_with_exit_2_naming_the_file(tmp_path, capsys, untrained_model,
                                                                        small_set):
    bomb = rezip(untrained_model, tmp_path / "bomb.keras", {"config.json": (200 << 20, b"0")})
    out = tmp_path / "out"
    result = run_cli(capsys, "audit", bomb, "--data", small_set.coco_path, "--no-mlflow", "--out", out, "-q")
    assert result.exit_code == 2
    assert f"model file {bomb}: its config.json declares 209,715,200 bytes (200 MiB)" in result.err


def test_a_deflated_keras_zip_within_the_limits_still_loads(tmp_path, untrained_model):
    from validator.model import load_model

    deflated = rezip(untrained_model, tmp_path / "deflated.keras", deflate=True)
    with zipfile.ZipFile(deflated) as archive:
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in archive.infolist())
    assert load_model(str(deflated)).num_classes == 2


def test_the_limits_are_the_documented_ones():
    readme = (ROOT / "README.md").read_text()
    for shown in ("178,956,970", "512 MiB", "100,000", "64 MiB", "200", "16 MiB"):
        assert shown in readme.split("### Limits on inputs")[1].split("\n### ")[0], shown


def test_an_h5_model_whose_config_attribute_is_over_the_limit_is_refused_unread(tmp_path):
    """A model_config attribute of 65 MiB is refused by its stored size before it is read and parsed. (HDF5
    attributes take no compression filter, so an attribute is never larger than its file: no bomb, but a
    config no Keras model has.)"""
    import h5py

    from validator.model import load_model

    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w", libver="latest") as handle:  # dense attribute storage: no 64 KiB cap
        handle.attrs["model_config"] = np.bytes_(b"{" * (MAX_CONFIG_BYTES + (1 << 20)))  # fixed-length string
    with pytest.raises(ModelUsageError, match=r"its model_config attribute holds 68,157,440 bytes \(65 MiB\), over "
                                              r"the 67,108,864 bytes \(64 MiB\) limit"):
        load_model(str(path))


def test_annotation_files_over_their_limits_are_refused_by_size_unread(tmp_path, monkeypatch):
    from validator.data import load_dataset
    from validator.limits import ANNOTATION_BYTES_ENV, MAX_TEXT_BYTES

    coco = tmp_path / "big.json"
    with open(coco, "wb") as fh:  # sparse: 3 GiB declared, nothing written
        fh.truncate(3 << 30)
    with pytest.raises(DataError, match=r"over the 2,147,483,648 bytes \(2 GiB\) limit for it \(\$CAMGATE_MAX_"):
        load_dataset(coco)
    monkeypatch.setenv(ANNOTATION_BYTES_ENV, "100")
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a" * 200}]}))
    with pytest.raises(DataError, match="limit for it"):
        load_dataset(small)
    voc = tmp_path / "voc" / "Annotations"
    voc.mkdir(parents=True)
    with open(voc / "a.xml", "wb") as fh:
        fh.truncate(MAX_TEXT_BYTES + 1)
    with pytest.raises(DataError, match=r"a.xml: the file is 16,777,217 bytes"):
        load_dataset(voc.parent)
