"""Portraits load upright as BGR, bad files fail in one line, saves are atomic."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from avatar_app import images
from avatar_app.atomic import atomic_path
from avatar_app.errors import InputFileError, OutputPathError
from avatar_app.images import load_image, save_image_atomic


def assert_one_line(err: pytest.ExceptionInfo, name: str) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert name in message


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims a huge size, as a decompression bomb would."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    path.write_bytes(bytes(data))
    return path


def test_png_loads_as_bgr(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red
    Image.fromarray(rgb).save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png")
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 200]


def test_grey_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.full((8, 9), 77, np.uint8), "L").save(tmp_path / "grey.png")
    assert np.all(load_image(tmp_path / "grey.png") == 77)


def test_16bit_grey_keeps_its_brightness(tmp_path):
    Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert load_image(tmp_path / "deep.png")[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_areas_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (0, 0, 255, 255)  # one opaque blue pixel, the rest fully transparent black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    image = load_image(tmp_path / "cutout.png")
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[3, 3].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "phone.jpg").shape == (40, 20, 3)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d: d / "x.jpg", "no such file"),
        (lambda d: d, "is a folder"),
        (lambda d: write(d / "empty.png", b""), "empty"),
        (lambda d: write(d / "portrait.txt", b"hello"), r"not an image \(cannot identify image file\)"),
    ],
    ids=["missing", "folder", "empty", "not-an-image"],
)
def test_bad_inputs_fail_in_one_line(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(InputFileError, match=expected) as err:
        load_image(path)
    assert_one_line(err, path.name)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_image_is_refused(tmp_path, suffix):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputFileError, match="damaged or truncated") as err:
        load_image(path)
    assert_one_line(err, "cut" + suffix)


def test_huge_image_is_refused_from_its_header(tmp_path):
    path = png_claiming_size(tmp_path / "big.png", 8000, 8000)
    with pytest.raises(InputFileError) as err:
        load_image(path)
    assert str(err.value) == f"{path}: image is 8000x8000 pixels, over the 40 MP limit - resize it first"


def test_image_past_pils_own_limit_is_refused_too(tmp_path):
    path = png_claiming_size(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(InputFileError) as err:
        load_image(path)
    assert str(err.value) == f"{path}: image is 400 MP, over the 40 MP limit - resize it first"


def test_limit_is_a_module_setting(tmp_path, monkeypatch):
    Image.new("RGB", (10, 10)).save(tmp_path / "small.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 99)
    with pytest.raises(InputFileError, match="10x10"):
        load_image(tmp_path / "small.png")


@settings(max_examples=20, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_png_round_trip_is_exact(tmp_path_factory, h, w, seed):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    path = tmp_path_factory.mktemp("rt") / "out.png"
    save_image_atomic(path, image)
    np.testing.assert_array_equal(load_image(path), image)


def test_save_leaves_only_the_final_file(tmp_path):
    save_image_atomic(tmp_path / "snap.jpg", np.full((16, 16, 3), 128, np.uint8))
    assert [p.name for p in tmp_path.iterdir()] == ["snap.jpg"]
    assert np.abs(load_image(tmp_path / "snap.jpg").astype(int) - 128).max() <= 2


def test_failed_save_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "snap.png"
    path.write_bytes(b"old")

    def disk_full(self, data):
        Path.open(self, "wb").close()  # the temp file exists when the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OutputPathError, match="No space left on device") as err:
        save_image_atomic(path, np.zeros((4, 4, 3), np.uint8))
    assert_one_line(err, "snap.png")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["snap.png"]


@pytest.mark.parametrize(
    "name, expected",
    [("snap.xyz", "cannot save images of type '.xyz'"), ("no/such/dir/a.png", "does not exist")],
)
def test_save_refusals(tmp_path, name, expected):
    with pytest.raises(OutputPathError, match=expected) as err:
        save_image_atomic(tmp_path / name, np.zeros((4, 4, 3), np.uint8))
    assert_one_line(err, Path(name).name)


def test_atomic_path_removes_the_temp_on_error(tmp_path):
    target = tmp_path / "avatar.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".bin"
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
