"""`avatar-app render` and `avatar create` end to end, and every bad input ending in one line and exit code 2."""

import subprocess
import sys

import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.pipeline.render.mouth import mouth_opening
from avatar_app.pipeline.stages import track_video
from avatar_app.pipeline.sinks import VideoFileSink
from avatar_app.pipeline.sources import probe_video
from tests.conftest import PORTRAITS, shared_media

MONA = PORTRAITS / "mona_lisa.jpg"


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar_app", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_render_a_generated_driver_on_a_shipped_painting(tmp_path, generated_driver):
    out = tmp_path / "mona.mp4"
    result = run_cli("render", "--driver", generated_driver, "--portrait", MONA, "--out", out, "--size", 512)
    assert result.returncode == 0, result.stderr
    src, dst = probe_video(generated_driver), probe_video(out)
    assert dst.frame_count == src.frame_count  # one output frame per driver frame
    assert dst.fps == pytest.approx(src.fps)
    assert (dst.width, dst.height) == (288, 512)  # the whole portrait, longer side --size
    assert "frames at 25 fps" in result.stdout
    # The Mona Lisa opens her mouth where the driver does (frames 14-19), and is herself at rest (0-7).
    points, _ = track_video(out)
    rest = np.mean([mouth_opening(p) for p in points[:8]])
    opened = np.mean([mouth_opening(p) for p in points[14:20]])
    assert opened > rest + 0.05


def test_render_keeps_the_drivers_audio(tmp_path):
    driver = shared_media("driving_man_talking_vox.mp4")
    out = tmp_path / "talk.mp4"
    assert main(["render", "--driver", str(driver), "--portrait", str(MONA), "--out", str(out), "--size", "128"]) == 0
    info = probe_video(out)
    assert info.has_audio
    assert info.frame_count == probe_video(driver).frame_count


def test_avatar_create_then_render_with_it(tmp_path, generated_driver, capsys):
    avatar = tmp_path / "mona.avatar"
    assert main(["avatar", "create", str(MONA), "--out", str(avatar)]) == 0
    assert avatar.is_file()
    out = tmp_path / "side.mp4"
    code = main(["render", "--driver", str(generated_driver), "--avatar", str(avatar), "--out", str(out),
                 "--size", "128", "--side-by-side", "--reference-frame", "3"])
    assert code == 0
    info = probe_video(out)
    assert info.height == 128 and info.width > 128  # driver | avatar
    assert "; drawn by mesh;" in capsys.readouterr().out  # the summary says which renderer ran


# -- bad input: one line on stderr, exit code 2, nothing written ----------------------------------------------
def _assert_one_line_error(capsys, code, *fragments):
    assert code == 2
    lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
    # Progress bars may have been drawn before the error; everything else is the one error line.
    err = [ln for ln in lines if ln.strip() and not ln.startswith(("tracking:", "rendering:"))]
    assert len(err) == 1, err
    assert err[0].startswith("avatar-app: error: ")
    for f in fragments:
        assert f in err[0]


@pytest.fixture
def no_face_video(tmp_path):
    path = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoFileSink(path, fps=10, size=(160, 120)) as sink:
        for _ in range(8):
            sink.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return path


def test_portrait_that_is_not_an_image(tmp_path, capsys, generated_driver):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    out = tmp_path / "o.mp4"
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(text), "--out", str(out)])
    _assert_one_line_error(capsys, code, "notes.txt", "not an image")
    assert not out.exists()


def test_portrait_without_a_face(tmp_path, capsys, generated_driver):
    import cv2

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((300, 300, 3), 180, np.uint8))
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(blank), "--out", str(tmp_path / "o.mp4")])
    _assert_one_line_error(capsys, code, "error: wall: no face found in the portrait")
    code = main(["avatar", "create", str(blank), "--out", str(tmp_path / "wall.avatar")])
    _assert_one_line_error(capsys, code, "error: wall: no face found in the portrait")
    assert not (tmp_path / "wall.avatar").exists()


def test_driver_that_is_not_a_video_or_missing_or_empty(tmp_path, capsys):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    code = main(["render", "--driver", str(notes), "--portrait", str(MONA), "--out", str(tmp_path / "o.mp4")])
    _assert_one_line_error(capsys, code, "notes.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code = main(["render", "--driver", str(empty), "--portrait", str(MONA), "--out", str(tmp_path / "o.mp4")])
    _assert_one_line_error(capsys, code, "empty.mp4")
    code = main(["render", "--driver", str(tmp_path / "nope.mp4"), "--portrait", str(MONA), "--out", str(tmp_path / "o.mp4")])
    _assert_one_line_error(capsys, code, "nope.mp4", "no such")
    assert not (tmp_path / "o.mp4").exists()


def test_driver_with_no_face_at_all(tmp_path, capsys, no_face_video):
    out = tmp_path / "o.mp4"
    code = main(["render", "--driver", str(no_face_video), "--portrait", str(MONA), "--out", str(out)])
    _assert_one_line_error(capsys, code, "noise.mp4", "no face found in any")
    assert list(tmp_path.glob("*o.*")) == []  # no output, no temp file


def test_output_path_that_cannot_be_written_is_refused_before_work(tmp_path, capsys, generated_driver):
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(tmp_path / "missing.jpg"),
                 "--out", str(tmp_path / "no_such_dir" / "o.mp4")])
    # The output is checked first: the error names the output, not the (also missing) portrait.
    _assert_one_line_error(capsys, code, "no_such_dir")
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(MONA), "--out", str(tmp_path / "o.gif")])
    _assert_one_line_error(capsys, code, "o.gif")


def test_corrupt_or_foreign_avatar_file(tmp_path, capsys, generated_driver):
    junk = tmp_path / "junk.avatar"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip")
    code = main(["render", "--driver", str(generated_driver), "--avatar", str(junk), "--out", str(tmp_path / "o.mp4")])
    _assert_one_line_error(capsys, code, "junk.avatar", "not a usable avatar file")


def test_reference_frame_out_of_range_and_bad_size(tmp_path, capsys, generated_driver):
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(MONA), "--out", str(tmp_path / "o.mp4"),
                 "--reference-frame", "9999"])
    _assert_one_line_error(capsys, code, "--reference-frame 9999")
    code = main(["render", "--driver", str(generated_driver), "--portrait", str(MONA), "--out", str(tmp_path / "o.mp4"),
                 "--size", "5"])
    _assert_one_line_error(capsys, code, "size")
    assert not (tmp_path / "o.mp4").exists()


def test_errors_from_the_real_command_have_no_traceback(tmp_path):
    result = run_cli("render", "--driver", tmp_path / "nope.mp4", "--portrait", MONA, "--out", tmp_path / "o.mp4")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
