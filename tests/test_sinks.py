"""The video sink: exact rate and count, faithful pictures, the driver's audio kept, nothing half-written."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avatar_app.errors import AvatarAppError, InputFileError, OutputPathError
from avatar_app.pipeline.sinks import VideoFileSink, check_output_path
from avatar_app.pipeline.sources import open_source, probe_video

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
W, H, FPS = 96, 64, 25


def picture(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A smooth gradient with a moving square: easy for H.264, easy to check."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    image[10:30, 3 * i : 3 * i + 20] = (20, 220, 240)
    return image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def write_video(path: Path, n: int, fps=FPS, size=(W, H), audio_from=None) -> VideoFileSink:
    with VideoFileSink(path, fps, size, audio_from=audio_from) as sink:
        for i in range(n):
            sink.write(picture(i, *size))
    return sink


def write_sine(path: Path, codec: str, seconds: float, rate: int = 44100, with_video: bool = False) -> Path:
    """A 440 Hz tone (optionally beside a few video frames), encoded with PyAV."""
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    with av.open(str(path), "w") as out:
        if with_video:
            video = out.add_stream("libx264", rate=FPS)
            video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream(codec, rate=rate)
        audio.layout = "mono"
        if codec == "aac":
            frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="fltp", layout="mono")
        else:
            pcm = (samples[None] * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        if with_video:
            for i in range(int(seconds * FPS)):
                vf = av.VideoFrame.from_ndarray(picture(i % 20), format="bgr24")
                vf.pts = i
                out.mux(video.encode(vf))
            out.mux(video.encode(None))
        out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


def audio_streams(path: Path) -> list[tuple[str, float]]:
    """(codec, seconds) of each audio stream, measured from the packets."""
    with av.open(str(path)) as container:
        result = []
        for stream in container.streams.audio:
            ends = [p.pts + p.duration for p in container.demux(stream) if p.size]
            result.append((stream.codec_context.name, float(max(ends) * stream.time_base)))
            container.seek(0)
        return result


def test_round_trip_keeps_count_rate_and_picture(tmp_path):
    path = tmp_path / "out.mp4"
    sink = write_video(path, 10)
    assert sink.frames_written == 10
    info = probe_video(path)
    assert (info.frame_count, info.fps, info.width, info.height) == (10, 25.0, W, H)
    assert info.duration == pytest.approx(10 / FPS)
    with open_source(path) as src:
        got = [f.image for f in src]
    assert len(got) == 10
    assert min(psnr(a, picture(i)) for i, a in enumerate(got)) > 30


def test_ntsc_rate_is_kept_exactly(tmp_path):
    write_video(tmp_path / "ntsc.mov", 6, fps=30000 / 1001)
    with av.open(str(tmp_path / "ntsc.mov")) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_odd_size_is_padded_to_even(tmp_path):
    write_video(tmp_path / "odd.mkv", 3, size=(41, 31))
    info = probe_video(tmp_path / "odd.mkv")
    assert (info.width, info.height, info.frame_count) == (42, 32, 3)
    with open_source(tmp_path / "odd.mkv") as src:
        assert psnr(src.read().image[:31, :41], picture(0, 41, 31)) > 30


def test_audio_is_copied_and_cut_at_the_video_end(tmp_path):
    driver = write_sine(tmp_path / "driver.mp4", "aac", seconds=2.0, with_video=True)
    out = tmp_path / "out.mp4"
    sink = write_video(out, 10, audio_from=driver)  # 0.4 s of video
    assert sink.has_audio
    [(codec, seconds)] = audio_streams(out)
    assert codec == "aac"
    assert 0.35 < seconds <= 0.4 + 1024 / 44100  # at most one AAC packet past the last frame
    with av.open(str(driver)) as a, av.open(str(out)) as b:  # copied, not re-encoded: same bytes
        first = [bytes(next(p for p in c.demux(c.streams.audio[0]) if p.size)) for c in (a, b)]
    assert first[0] == first[1]


def test_pcm_audio_is_reencoded_for_mp4_and_copied_into_mkv(tmp_path):
    wav = write_sine(tmp_path / "voice.wav", "pcm_s16le", seconds=1.0)
    write_video(tmp_path / "out.mp4", 10, audio_from=wav)
    write_video(tmp_path / "out.mkv", 10, audio_from=wav)
    [(mp4_codec, mp4_seconds)] = audio_streams(tmp_path / "out.mp4")
    [(mkv_codec, _)] = audio_streams(tmp_path / "out.mkv")
    assert (mp4_codec, mkv_codec) == ("aac", "pcm_s16le")
    assert 0.3 < mp4_seconds < 0.5


def test_audio_source_without_audio_gives_a_silent_video(tmp_path):
    silent = tmp_path / "silent.mp4"
    write_video(silent, 5)
    assert not write_video(tmp_path / "out.mp4", 5, audio_from=silent).has_audio
    assert not probe_video(tmp_path / "out.mp4").has_audio


def test_missing_audio_source_is_refused_before_writing(tmp_path):
    sink = VideoFileSink(tmp_path / "out.mp4", FPS, (W, H), audio_from=tmp_path / "driver.mp4")
    with pytest.raises(InputFileError, match="no such file") as err:
        sink.open()
    assert "\n" not in str(err.value) and "driver.mp4" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_abort_leaves_nothing_behind(tmp_path):
    sink = VideoFileSink(tmp_path / "out.mp4", FPS, (W, H))
    sink.open()
    for i in range(5):
        sink.write(picture(i))
    sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_error_inside_with_aborts_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    with pytest.raises(KeyboardInterrupt):
        with VideoFileSink(path, FPS, (W, H)) as sink:
            sink.write(picture(0))
            raise KeyboardInterrupt
    assert path.read_bytes() == b"previous render"
    assert list(tmp_path.iterdir()) == [path]


def test_closing_without_frames_saves_nothing(tmp_path):
    with pytest.raises(AvatarAppError, match="no frames were written"):
        with VideoFileSink(tmp_path / "out.mp4", FPS, (W, H)):
            pass
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_size_is_a_programming_error(tmp_path):
    with VideoFileSink(tmp_path / "out.mp4", FPS, (W, H)) as sink:
        sink.write(picture(0))
        with pytest.raises(ValueError, match="96x64"):
            sink.write(picture(0, W + 2, H))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("clip.avi", "cannot write '.avi' files - use .mp4, .mov, .mkv"),
        ("clip", "cannot write 'no suffix' files"),
        ("no_dir/clip.mp4", "folder .* does not exist - create it first"),
        (".", "is a folder"),
    ],
)
def test_check_output_path_refusals(tmp_path, name, expected):
    with pytest.raises(OutputPathError, match=expected) as err:
        check_output_path(tmp_path / name)
    assert "\n" not in str(err.value) and str(tmp_path / name) in str(err.value)


def test_check_output_path_refuses_a_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # chmod would not stop root
    with pytest.raises(OutputPathError, match="is not writable - choose another folder"):
        check_output_path(tmp_path / "clip.mp4")


def test_check_output_path_accepts_a_good_path(tmp_path):
    assert check_output_path(str(tmp_path / "Clip.MP4")) == tmp_path / "Clip.MP4"


def test_sink_refuses_a_bad_path_before_any_work(tmp_path):
    with pytest.raises(OutputPathError):
        VideoFileSink(tmp_path / "missing" / "out.mp4", FPS, (W, H)).open()


def test_real_driver_video_keeps_its_audio(tmp_path):
    vox = MEDIA / "driving_man_talking_vox.mp4"
    if not vox.exists():
        pytest.skip(f"shared developer media not found at {MEDIA} (the ../shared checkout beside the repo)")
    out = tmp_path / "avatar.mp4"
    with open_source(vox) as src, VideoFileSink(out, src.fps, src.size, audio_from=vox) as sink:
        for frame in src:
            sink.write(frame.image)
    info = probe_video(out)
    assert (info.frame_count, info.fps, info.width, info.height, info.has_audio) == (169, 25.0, 410, 412, True)
    assert audio_streams(out) == audio_streams(vox)  # its 6.74 s of audio fits within the video: all kept
