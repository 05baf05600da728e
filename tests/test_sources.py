"""Sources: files stand in for a camera (looping, paced), and every bad input fails in one line."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from avatar_app.pipeline import frame as frames, sources
from avatar_app.errors import DeviceError, InputFileError
from avatar_app.pipeline.sinks import VideoFileSink
from avatar_app.pipeline.sources import (
    ImageSequenceSource,
    SourceSettings,
    VideoFileSource,
    open_source,
    probe_video,
)

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
W, H, N, FPS = 64, 48, 10, 25


def square_frame(i: int) -> np.ndarray:
    """A red square that moves 4 px right per frame, so order can be read back from the pixels."""
    image = np.full((H, W, 3), 40, np.uint8)
    image[16:32, 4 * i : 4 * i + 16] = (0, 0, 230)
    return image


def square_x(image: np.ndarray) -> float:
    return float(np.nonzero(image[:, :, 2] > 150)[1].mean())


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "moving.mp4"
    with VideoFileSink(path, FPS, (W, H)) as sink:
        for i in range(N):
            sink.write(square_frame(i))
    return path


@pytest.fixture
def fake_clock(monkeypatch):
    """Replace the clock and sleep, so pacing is checked without timing anything."""
    clock = {"t": 100.0}
    monkeypatch.setattr(frames.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(sources.time, "sleep", lambda s: clock.__setitem__("t", clock["t"] + s))
    return clock


def one_line_error(err: pytest.ExceptionInfo, name: str) -> str:
    message = str(err.value)
    assert "\n" not in message and name in message
    return message


def test_video_file_reads_every_frame_in_order(video):
    with open_source(str(video)) as src:
        assert isinstance(src, VideoFileSource)
        assert (src.fps, src.size, src.frame_count, src.is_live) == (FPS, (W, H), N, False)
        got = list(src)
    assert [f.index for f in got] == list(range(N))
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in got)
    assert [f.t_media for f in got] == pytest.approx([i / FPS for i in range(N)])
    assert all(a.t_capture < b.t_capture for a, b in zip(got, got[1:]))
    xs = [square_x(f.image) for f in got]
    assert xs == sorted(xs) and xs[-1] - xs[0] == pytest.approx(4 * (N - 1), abs=1)


def test_loop_keeps_going_with_increasing_index(video):
    with open_source(SourceSettings(str(video), loop=True)) as src:
        got = [src.read() for _ in range(2 * N + 3)]
    assert [f.index for f in got] == list(range(2 * N + 3))
    assert got[N].t_media == pytest.approx(0.0)  # media time is the position in the file
    for a, b in zip(got[:N], got[N : 2 * N]):
        np.testing.assert_array_equal(a.image, b.image)


def test_without_loop_the_source_ends(video):
    with open_source(str(video)) as src:
        for _ in range(N):
            assert src.read() is not None
        assert src.read() is None
        assert src.read() is None


def test_paced_source_releases_frames_at_file_rate_across_loops(video, fake_clock):
    with open_source(SourceSettings(str(video), loop=True, paced=True)) as src:
        got = [src.read() for _ in range(2 * N)]
    start = got[0].t_capture
    assert [f.t_capture - start for f in got] == pytest.approx([i / FPS for i in range(2 * N)])


def test_paced_source_catches_up_after_a_slow_reader(video, fake_clock):
    with open_source(SourceSettings(str(video), paced=True)) as src:
        start = src.read().t_capture
        fake_clock["t"] += 3 / FPS  # the reader stalls for three frame times
        late = [src.read().t_capture - start for _ in range(4)]
    # Frames 1-3 are overdue and come at once; frame 4 is due on schedule.
    assert late == pytest.approx([3 / FPS, 3 / FPS, 3 / FPS, 4 / FPS])


def test_unpaced_source_never_sleeps(video, monkeypatch):
    monkeypatch.setattr(sources.time, "sleep", lambda s: pytest.fail("slept"))
    with open_source(str(video)) as src:
        assert len(list(src)) == N


def test_phone_rotation_is_applied(video, tmp_path):
    # Phones film sideways and store "rotate 90 clockwise" in the track header's matrix; patch that in.
    data = bytearray(video.read_bytes())
    identity = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    at = data.index(identity, data.index(b"tkhd"))
    data[at : at + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    (tmp_path / "phone.mp4").write_bytes(bytes(data))
    with open_source(tmp_path / "phone.mp4") as src:
        assert src.size == (H, W)
        upright = src.read().image
    with open_source(video) as src:
        np.testing.assert_array_equal(upright, np.rot90(src.read().image, -1))  # a quarter turn clockwise


def test_probe_video(video):
    assert probe_video(video) == sources.VideoInfo(FPS, N, W, H, N / FPS, False)


def make_sequence(folder: Path, names: list[str], size=(W, H)) -> list[int]:
    folder.mkdir(exist_ok=True)
    values = []
    for k, name in enumerate(names):
        values.append(10 + 20 * k)
        Image.new("L", size, values[-1]).save(folder / name)
    return values


def test_image_sequence_natural_order_and_timing(tmp_path):
    values = make_sequence(tmp_path / "frames", ["f1.png", "f2.png", "f10.png"])
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    with open_source(str(tmp_path / "frames")) as src:
        assert isinstance(src, ImageSequenceSource)
        assert (src.fps, src.size, src.frame_count) == (25.0, (W, H), 3)
        got = list(src)
    assert [int(f.image[0, 0, 0]) for f in got] == values
    assert [f.t_media for f in got] == pytest.approx([0, 0.04, 0.08])


def test_image_sequence_from_a_glob_with_fps_and_loop(tmp_path):
    values = make_sequence(tmp_path, ["a_001.png", "a_002.png", "b_001.png"])
    with open_source(SourceSettings(str(tmp_path / "a_*.png"), fps=10, loop=True)) as src:
        got = [src.read() for _ in range(5)]
    assert [int(f.image[0, 0, 0]) for f in got] == [values[0], values[1]] * 2 + [values[0]]
    assert [f.index for f in got] == list(range(5))
    assert got[1].t_media == pytest.approx(0.1)


def test_image_sequence_refuses_a_frame_of_another_size(tmp_path):
    make_sequence(tmp_path, ["0.png", "1.png"])
    Image.new("L", (W + 2, H)).save(tmp_path / "2.png")
    with open_source(str(tmp_path)) as src:
        src.read(), src.read()
        with pytest.raises(InputFileError, match="give frames of one size") as err:
            src.read()
    one_line_error(err, "2.png")


@pytest.mark.parametrize("spec", ["empty_dir", "empty_dir/*.png"])
def test_no_images_is_an_error(tmp_path, spec):
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputFileError) as err:
        open_source(str(tmp_path / spec))
    one_line_error(err, "empty_dir")


def test_missing_camera_is_a_device_error(capfd):
    with pytest.raises(DeviceError) as err:
        open_source("97")
    assert str(err.value) == (
        "camera 97 could not be opened - check it is connected and not used by another program,"
        " or pass a video file instead"
    )
    # The one line above says it all: OpenCV's own "[ WARN] can't open camera by index" stays out of the terminal.
    printed = capfd.readouterr()
    assert "WARN" not in printed.err and "ERROR" not in printed.err and printed.out == ""


def test_spec_picks_the_source_kind(tmp_path, video):
    odd = tmp_path / "take [1].mp4"  # glob characters in a real file name: still a video
    odd.write_bytes(video.read_bytes())
    with open_source(odd) as src:
        assert isinstance(src, VideoFileSource)
    assert SourceSettings(0).spec == "0"  # an int index is accepted and read as a camera spec
    with pytest.raises(InputFileError, match="no such file"):
        open_source(tmp_path / "gone.mov")


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def write_stream_without_frames(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        out.start_encoding()
    return path


def write_undecodable(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        out.start_encoding()
        for i in range(3):
            packet = av.Packet(b"\x00\x00\x00\x01\x09" + bytes(40))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, FPS)
            out.mux(packet)
    return path


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda d, v: d / "gone.mp4", "no such file"),
        (lambda d, v: write(d / "empty.mp4", b""), "file is empty"),
        (lambda d, v: write(d / "notes.txt", b"\x01\x02 my notes" * 50),
         r"not a readable video \(Invalid data found when processing input\) - give an MP4, MOV, MKV or AVI"),
        (lambda d, v: write_audio_only(d / "voice.wav"), "has only audio, no video stream"),
        (lambda d, v: write_stream_without_frames(d / "blank.mkv"), "not a readable video"),
        (lambda d, v: write_undecodable(d / "junk.mkv"), "cannot decode frame 0"),
        (lambda d, v: write(d / "cut.mp4", v.read_bytes()[:-400]), "not a readable video"),
    ],
    ids=["missing", "empty", "not-a-video", "audio-only", "zero-frames", "undecodable", "truncated"],
)
def test_bad_video_files_fail_at_open_in_one_line(tmp_path, video, make, expected):
    path = make(tmp_path, video)
    src = VideoFileSource(SourceSettings(str(path)))
    with pytest.raises(InputFileError, match=expected) as err:
        src.open()
    one_line_error(err, path.name)
    assert not src.is_open


def test_read_before_open_is_a_programming_error(video):
    with pytest.raises(RuntimeError):
        VideoFileSource(SourceSettings(str(video))).read()


def test_settings_are_validated():
    with pytest.raises(ValueError):
        SourceSettings("0", fps=0)


@pytest.fixture
def vox() -> Path:
    path = MEDIA / "driving_man_talking_vox.mp4"
    if not path.exists():
        pytest.skip(f"shared developer media not found at {MEDIA} (the ../shared checkout beside the repo)")
    return path


def test_real_driver_video(vox):
    assert probe_video(vox) == sources.VideoInfo(25.0, 169, 410, 412, pytest.approx(6.76), True)
    with open_source(str(vox)) as src:
        got = [f.t_media for f in src]
    assert len(got) == 169 and got == sorted(got)
