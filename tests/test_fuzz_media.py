"""Fuzzed inputs (portraits, driver videos, avatar files): random bytes and mutated valid files fed to every loader a user can reach.

Each case must end in a valid load or in the project's own error (an AvatarAppError) whose message is one line
naming the file - never another exception, a hang, a decoded decompression bomb or an unpickled object.
Hypothesis runs derandomized, so CI sees the same cases every time.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from avatar_app.pipeline.avatar import create_avatar, load_avatar, load_portrait_or_avatar, save_avatar
from avatar_app.errors import AvatarAppError
from avatar_app.images import MAX_IMAGE_PIXELS, load_image
from avatar_app.pipeline.sources import VideoFileSource, open_source, probe_video
from tests.conftest import PORTRAITS

from avatar_app.commands.cli import main
from tests.fuzzing import one_error_line
from tests.fuzzing import fuzz, attempt, Samples, case_dir, mutated, junk_with_magic, json_values, Tripwire, _tripped

# PIL warns about the corrupt EXIF blocks these tests make; the loaders' results are what is checked.
pytestmark = pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning", "ignore:Tag data larger:UserWarning",
                                        "ignore:Metadata Warning:UserWarning")


# --- 1. portraits -----------------------------------------------------------------------------------------

IMAGE_MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"GIF89a", b"BM", b"II*\x00",
                b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"P6\n", b"\x00\x00\x01\x00"]


@pytest.fixture(scope="module")
def portrait_files() -> dict[str, bytes]:
    """Small valid images of several kinds, in memory: the starting points of the mutations."""
    mona = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    small = cv2.resize(mona, (40, 56), interpolation=cv2.INTER_AREA)
    rgb = Image.fromarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    out = Samples()

    def save(name, im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate
    save("rgb.png", rgb, "PNG")
    save("palette_transparent.png", rgb.convert("P").copy(), "PNG", transparency=0)
    save("grey16.png", rgb.convert("L").point(lambda v: v).convert("I;16"), "PNG")
    save("rgba.png", rgb.convert("RGBA"), "PNG")
    save("exif.jpg", rgb, "JPEG", quality=80, exif=exif)
    save("progressive.jpg", rgb, "JPEG", quality=60, progressive=True)
    save("grey.jpg", rgb.convert("L"), "JPEG")
    save("cmyk.jpg", rgb.convert("CMYK"), "JPEG")
    save("gif.gif", rgb.convert("P"), "GIF")
    save("bmp.bmp", rgb, "BMP")
    save("tiff.tiff", rgb, "TIFF", compression="tiff_lzw")
    save("webp.webp", rgb, "WEBP")
    return out


def check_image(result, path: Path) -> None:
    if isinstance(result, AvatarAppError):
        return
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8, path
    assert result.ndim == 3 and result.shape[2] == 3 and result.shape[0] * result.shape[1] <= MAX_IMAGE_PIXELS


@fuzz(150)
@given(data=junk_with_magic(IMAGE_MAGICS))
def test_load_image_random_bytes(tmp_path, data):
    path = case_dir(tmp_path) / "portrait.jpg"
    path.write_bytes(data)
    check_image(attempt(load_image, path), path)


@fuzz(300)
@given(data=st.data())
def test_load_image_mutated_files(tmp_path, portrait_files, data):
    name = data.draw(st.sampled_from(sorted(portrait_files)))
    path = case_dir(tmp_path) / name
    path.write_bytes(data.draw(mutated(portrait_files[name])))
    check_image(attempt(load_image, path), path)


def _png_with_size(png: bytes, w: int, h: int, fix_crc: bool) -> bytes:
    ihdr = bytearray(png[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", w, h)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF) if fix_crc else png[29:33]
    return png[:12] + bytes(ihdr) + crc + png[33:]


def _jpeg_with_size(jpeg: bytes, w: int, h: int) -> bytes:
    at = next(i for i in range(2, len(jpeg) - 9) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    return jpeg[:at + 5] + struct.pack(">HH", h, w) + jpeg[at + 9:]


huge_sizes = st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)).filter(
    lambda s: s[0] * s[1] > MAX_IMAGE_PIXELS)


@fuzz(80)
@given(kind=st.sampled_from(["png", "png-bad-crc", "jpeg", "progressive-jpeg", "gif", "bmp"]), size=huge_sizes)
def test_images_claiming_a_huge_size_are_refused_before_decoding(tmp_path, portrait_files, kind, size):
    w, h = size
    if kind.startswith("png"):
        data = _png_with_size(portrait_files["rgb.png"], w, h, fix_crc=kind == "png")
    elif kind.endswith("jpeg"):
        w, h = min(w, 65535), min(h, 65535)
        if w * h <= MAX_IMAGE_PIXELS:
            w = h = 65535
        data = _jpeg_with_size(portrait_files["exif.jpg" if kind == "jpeg" else "progressive.jpg"], w, h)
    elif kind == "gif":
        w, h = max(min(w, 65535), 6200), max(min(h, 65535), 6500)
        data = portrait_files["gif.gif"][:6] + struct.pack("<HH", w, h) + portrait_files["gif.gif"][10:]
    else:
        data = portrait_files["bmp.bmp"][:18] + struct.pack("<ii", w, h) + portrait_files["bmp.bmp"][26:]
    path = case_dir(tmp_path) / f"bomb.{kind}"
    path.write_bytes(data)
    # A decoded bomb would take seconds and gigabytes; refusal reads the header only, and says so in one line
    # (no PIL warning beside it, which the command line would print as a second line).
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        err = attempt(load_image, path, seconds=3)
    assert isinstance(err, AvatarAppError), f"{kind} claiming {w}x{h} was loaded"
    if kind in ("png", "jpeg", "progressive-jpeg"):  # a sound header: refused for its size, not as junk
        assert "MP limit" in str(err), str(err)


@pytest.fixture(scope="module")
def small_mona_jpeg() -> Samples:
    mona = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    scale = 320 / max(mona.shape[:2])
    small = cv2.resize(mona, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return Samples({"mona.jpg": cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()})


@fuzz(25)
@given(data=st.data())
def test_portrait_or_avatar_from_a_mutated_photo(tmp_path, small_mona_jpeg, data):
    path = case_dir(tmp_path) / "mona.jpg"
    path.write_bytes(data.draw(mutated(small_mona_jpeg["mona.jpg"], max_ops=3)))
    result = attempt(load_portrait_or_avatar, path, names=path.stem)
    if not isinstance(result, AvatarAppError):
        assert result.landmarks.shape == (478, 3) and result.image.dtype == np.uint8 and result.image.ndim == 3


# --- 2. driver videos -------------------------------------------------------------------------------------

VIDEO_MAGICS = [b"\x00\x00\x00\x18ftypisom", b"\x00\x00\x00\x20ftypmp42", b"\x1aE\xdf\xa3", b"RIFF\x00\x00\x00\x00AVI ",
                b"\x00\x00\x01\xba", b"OggS", b"FLV\x01", b"\x47"]


def _write_video(path: Path, container: str, codec: str, pix_fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, pix_fmt
        for i in range(10):
            image = np.full((32, 32, 3), 20 * i, np.uint8) + rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="module")
def video_files(tmp_path_factory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("videos")
    return Samples({
        "h264.mp4": _write_video(root / "a.mp4", "mp4", "libx264", "yuv420p"),
        "mpeg4.mkv": _write_video(root / "b.mkv", "matroska", "mpeg4", "yuv420p"),
        "mjpeg.avi": _write_video(root / "c.avi", "avi", "mjpeg", "yuvj420p"),
        "raw.avi": _write_video(root / "d.avi", "avi", "rawvideo", "bgr24"),
    })


def read_video(path: Path):
    """What the app does with a driver: probe it, then read every frame."""
    info = probe_video(path)
    with open_source(str(path)) as source:
        assert isinstance(source, VideoFileSource)
        shapes = [frame.image.shape for frame in source]
    return info, shapes


def check_video(result, path: Path) -> None:
    if isinstance(result, AvatarAppError):
        return
    info, shapes = result
    assert shapes, f"{path} opened with no frames"
    assert all(len(s) == 3 and s[2] == 3 and s[0] * s[1] <= MAX_IMAGE_PIXELS for s in shapes)
    assert info.width * info.height <= MAX_IMAGE_PIXELS and info.frame_count >= 0


@fuzz(60)
@given(data=junk_with_magic(VIDEO_MAGICS))
def test_video_random_bytes(tmp_path, data):
    path = case_dir(tmp_path) / "driver.mp4"
    path.write_bytes(data)
    check_video(attempt(read_video, path), path)


@fuzz(150)
@given(data=st.data())
def test_video_mutated_files(tmp_path, video_files, data):
    name = data.draw(st.sampled_from(sorted(video_files)))
    path = case_dir(tmp_path) / name
    path.write_bytes(data.draw(mutated(video_files[name])))
    check_video(attempt(read_video, path), path)


@fuzz(20)
@given(size=st.tuples(st.integers(6400, 20000), st.integers(6400, 20000)))  # all over 40 MP
def test_video_claiming_huge_frames_is_refused(tmp_path, video_files, size):
    # Raw video takes its frame size from the container's header alone (H.264 and MPEG-4 from the stream).
    data = bytearray(video_files["raw.avi"])
    for tag, skip, fmt in ((b"strf", 12, "<ii"), (b"avih", 40, "<II")):
        at = data.index(tag) + skip
        data[at:at + 8] = struct.pack(fmt, *size)
    path = case_dir(tmp_path) / "huge.avi"
    path.write_bytes(bytes(data))
    info = attempt(probe_video, path, seconds=5)
    err = attempt(read_video, path, seconds=5)
    assert isinstance(err, AvatarAppError), f"a video claiming {size[0]}x{size[1]} frames was opened"
    if isinstance(info, AvatarAppError):
        assert str(info) == str(err)
    else:  # FFmpeg itself drops a size it could never allocate (it then reports 0x0, and decoding fails)
        assert (info.width, info.height) == (0, 0), info
    if size[0] * size[1] < 2**27:  # a size FFmpeg accepts must meet our limit
        assert "MP limit" in str(err), str(err)


# --- 3. avatar files --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def avatar_parts(small_mona_jpeg, tmp_path_factory) -> dict:
    """A valid avatar file (made once) and its members, to mutate."""
    image = cv2.imdecode(np.frombuffer(small_mona_jpeg["mona.jpg"], np.uint8), cv2.IMREAD_COLOR)
    path = save_avatar(create_avatar(image, "mona"), tmp_path_factory.mktemp("avatar") / "mona.avatar")
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    with np.load(io.BytesIO(members["arrays.npz"])) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Samples(file=path.read_bytes(), members=members, manifest=json.loads(members["avatar.json"]), arrays=arrays)


def write_zip(path: Path, members: list[tuple[str, bytes]], compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(name, data)
    return path


def npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def check_avatar(result, path: Path) -> None:
    assert not _tripped, f"{path}: a pickle was loaded"
    if isinstance(result, AvatarAppError):
        return
    assert result.landmarks.shape == (478, 3) and result.image.dtype == np.uint8
    tris = result.mesh.triangles
    assert tris.min() >= 0 and tris.max() < len(result.mesh.points)


@fuzz(60)
@given(data=junk_with_magic([b"PK\x03\x04", b"PK\x05\x06", b"PK\x03\x04\x14\x00\x00\x00\x00\x00"]))
def test_avatar_random_bytes(tmp_path, data):
    path = case_dir(tmp_path) / "me.avatar"
    path.write_bytes(data)
    check_avatar(attempt(load_avatar, path), path)


@fuzz(120)
@given(data=st.data())
def test_avatar_mutated_file(tmp_path, avatar_parts, data):
    path = case_dir(tmp_path) / "me.avatar"
    path.write_bytes(data.draw(mutated(avatar_parts["file"])))
    check_avatar(attempt(load_avatar, path), path)


@fuzz(80)
@given(data=st.data())
def test_avatar_with_a_mutated_manifest(tmp_path, avatar_parts, data):
    manifest = dict(avatar_parts["manifest"])
    how = data.draw(st.sampled_from(["set", "set", "delete", "replace", "text"]))
    if how == "set":
        key = data.draw(st.sampled_from(sorted(manifest) + ["model", "extra"]))
        manifest[key] = data.draw(json_values)
        text = json.dumps(manifest).encode()
    elif how == "delete":
        del manifest[data.draw(st.sampled_from(sorted(manifest)))]
        text = json.dumps(manifest).encode()
    elif how == "replace":
        text = json.dumps(data.draw(json_values)).encode()
    else:
        text = data.draw(st.binary(max_size=64) | st.just(b"[" * 100_000))
    members = dict(avatar_parts["members"], **{"avatar.json": text})
    path = write_zip(case_dir(tmp_path) / "me.avatar", list(members.items()))
    check_avatar(attempt(load_avatar, path), path)


DTYPES = ["float32", "float64", "float16", "int8", "int32", "int64", "uint8", "uint64", "bool", "complex64", "<U3",
          "S2", "V4", "datetime64[s]", "object", [("a", "<f4"), ("b", "<i2")]]


@fuzz(100)
@given(data=st.data())
def test_avatar_with_malformed_arrays(tmp_path, avatar_parts, data):
    arrays = dict(avatar_parts["arrays"])
    key = data.draw(st.sampled_from(sorted(arrays) + ["neural_embedding", "neural_psi"]))
    how = data.draw(st.sampled_from(["shape", "dtype", "values", "delete", "pickle", "huge-header"]))
    if how in ("delete", "huge-header"):
        arrays.pop(key, None)
    elif how == "shape":
        shape = data.draw(st.lists(st.integers(0, 500), max_size=3))
        arrays[key] = np.zeros(shape, data.draw(st.sampled_from(["float32", "int32", "uint8"])))
    elif how == "dtype":
        dtype = np.dtype(data.draw(st.sampled_from(DTYPES)))
        shape = arrays[key].shape if key in arrays else (8,)
        arrays[key] = np.zeros(shape, dtype) if dtype.kind != "O" else np.full(shape, Tripwire(), dtype=object)
    elif how == "values":
        base = arrays.get(key, np.zeros(8, np.float32)).copy()
        value = data.draw(st.sampled_from([np.nan, np.inf, -1, -(2**31), 2**31 - 1, 255, 1e30]))
        flat = base.reshape(-1)
        if flat.size:
            with np.errstate(all="ignore"):
                flat[data.draw(st.integers(0, flat.size - 1))] = np.asarray(value).astype(base.dtype)
        arrays[key] = base
    elif how == "pickle":
        arrays[key] = np.array([Tripwire(), 1], dtype=object)
    npz = npz_bytes(arrays)
    if how == "huge-header":
        # An .npy member whose header claims terabytes: must be refused, not allocated.
        header = io.BytesIO()
        shape = (data.draw(st.integers(2**28, 2**40)), data.draw(st.integers(1, 3)))
        np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
        inner = io.BytesIO(npz)
        with zipfile.ZipFile(inner, "a") as zf:
            zf.writestr(f"{key}.npy", header.getvalue() + b"\0" * 64)
        npz = inner.getvalue()
    members = dict(avatar_parts["members"], **{"arrays.npz": npz})
    path = write_zip(case_dir(tmp_path) / "me.avatar", list(members.items()))
    result = attempt(load_avatar, path, seconds=10)
    check_avatar(result, path)
    if how in ("pickle", "huge-header") or (how == "delete" and key in avatar_parts["arrays"]):
        assert isinstance(result, AvatarAppError), f"{how} {key} was accepted"


outside_names = st.one_of(
    st.sampled_from(["../evil.sh", "/etc/passwd", "a/../../x", "..\\x", "C:\\windows\\x", "ok/../../y",
                     "../avatar.json", "/avatar.json", "..", "x/../\n/y"]),
    st.lists(st.sampled_from(["a", "..", ".", "b\nc", ""]), min_size=1, max_size=4)
    .filter(lambda parts: ".." in parts).map("/".join),
)


@fuzz(40)
@given(name=outside_names, replace=st.booleans())
def test_avatar_members_outside_the_archive_are_refused(tmp_path, avatar_parts, name, replace):
    members = list(avatar_parts["members"].items())
    if replace:  # the real member under a path that climbs out
        members = [(name, data) if n == "avatar.json" else (n, data) for n, data in members]
    else:
        members.append((name, b"#!/bin/sh\necho owned\n"))
    path = write_zip(case_dir(tmp_path) / "me.avatar", members)
    err = attempt(load_avatar, path)
    assert isinstance(err, AvatarAppError), f"member {name!r} was accepted"
    assert "outside the archive" in str(err) or "missing" in str(err)


def _patch_declared_sizes(zipped: bytes, member: str, size: int) -> bytes:
    """Set a member's uncompressed size in its local header and the central directory (data unchanged)."""
    out = bytearray(zipped)
    encoded = member.encode()
    for sig, name_at, size_at in ((b"PK\x03\x04", 30, 22), (b"PK\x01\x02", 46, 24)):
        start = 0
        while (start := out.find(sig, start)) >= 0:
            if out[start + name_at:start + name_at + len(encoded)] == encoded:
                out[start + size_at:start + size_at + 4] = struct.pack("<I", size)
            start += 4
    return bytes(out)


@fuzz(40)
@given(member=st.sampled_from(["avatar.json", "portrait.png", "arrays.npz"]),
       size=st.integers(256 * 1024 * 1024 + 1, 2**32 - 2), compressed=st.booleans())
def test_avatar_members_declaring_huge_sizes_are_refused(tmp_path, avatar_parts, member, size, compressed):
    members = list(avatar_parts["members"].items())
    zipped = write_zip(case_dir(tmp_path) / "plain.avatar", members,
                       zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED).read_bytes()
    path = case_dir(tmp_path) / "me.avatar"
    path.write_bytes(_patch_declared_sizes(zipped, member, size))
    err = attempt(load_avatar, path, seconds=5)
    assert isinstance(err, AvatarAppError) and "too large" in str(err), str(err)


@fuzz(30)
@given(size=huge_sizes, fix_crc=st.booleans())
def test_avatar_portrait_claiming_a_huge_size_is_refused(tmp_path, avatar_parts, size, fix_crc):
    png = _png_with_size(avatar_parts["members"]["portrait.png"], *size, fix_crc=fix_crc)
    members = dict(avatar_parts["members"], **{"portrait.png": png})
    path = write_zip(case_dir(tmp_path) / "me.avatar", list(members.items()))
    err = attempt(load_avatar, path, seconds=3)
    assert isinstance(err, AvatarAppError) and "portrait.png claims" in str(err), str(err)


# --- 6. the command line ----------------------------------------------------------------------------------

@fuzz(10)
@given(data=st.data())
def test_cli_avatar_info_on_a_damaged_avatar(tmp_path, capsys, avatar_parts, data):
    raw = avatar_parts["file"]
    content = data.draw(st.binary(max_size=256) | st.integers(1, len(raw) - 1).map(lambda n: raw[:n]))
    path = case_dir(tmp_path) / "me.avatar"
    path.write_bytes(content)
    one_error_line(capsys, main(["avatar", "info", str(path)]), path)


@fuzz(6)
@given(data=st.data())
def test_cli_render_with_a_damaged_portrait(tmp_path, capsys, portrait_files, video_files, data):
    folder = case_dir(tmp_path)
    driver = folder / "driver.mp4"
    driver.write_bytes(video_files["h264.mp4"])
    name = data.draw(st.sampled_from(["rgb.png", "exif.jpg", "progressive.jpg"]))
    good = portrait_files[name]
    portrait = folder / name
    portrait.write_bytes(data.draw(st.binary(max_size=64) | st.integers(8, len(good) // 2).map(lambda n: good[:n])))
    code = main(["render", "--driver", str(driver), "--portrait", str(portrait), "--out", str(folder / "o.mp4")])
    one_error_line(capsys, code, portrait)
    assert not (folder / "o.mp4").exists()


@fuzz(6)
@given(data=st.data())
def test_cli_render_with_a_damaged_driver(tmp_path, capsys, avatar_parts, video_files, data):
    folder = case_dir(tmp_path)
    avatar = folder / "me.avatar"
    avatar.write_bytes(avatar_parts["file"])
    good = video_files["h264.mp4"]
    driver = folder / "driver.mp4"
    driver.write_bytes(data.draw(st.binary(min_size=1, max_size=256) | st.integers(1, 64).map(lambda n: good[:n])))
    code = main(["render", "--driver", str(driver), "--avatar", str(avatar), "--out", str(folder / "o.mp4")])
    one_error_line(capsys, code, driver)
    assert not (folder / "o.mp4").exists()
