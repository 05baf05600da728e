"""The reference pose `render` picks: the most neutral frame of the driver, not its first (pipeline/reference.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.pipeline.demo import close_eyes, open_mouth, turn_head
from avatar_app.pipeline.reference import choose_reference, neutral_frames
from avatar_app.pipeline.render.mouth import mouth_opening
from tests.conftest import PORTRAITS, shared_media

SPEECH = (0.3, 0.15, 0.4, 0.25, 0.35, 0.2, 0.3, 0.4)


def _script(neutral: np.ndarray) -> tuple[list[np.ndarray], range]:
    """Landmarks that start mid-speech, then turn, blink, rest (the frames returned as a range), jerk, and talk."""
    rng = np.random.default_rng(0)
    frames = [open_mouth(neutral, a) for a in SPEECH]
    frames += [turn_head(neutral, yaw=14 * k / 4, pitch=6 * k / 4) for k in range(1, 5)]
    frames += [close_eyes(neutral, b) for b in (0.5, 1.0, 0.5)]
    rest = range(len(frames), len(frames) + 6)
    frames += [neutral + rng.normal(0, 0.3, neutral.shape) for _ in rest]
    frames += [neutral + [40.0 * k, 0, 0] for k in range(1, 4)]  # the head jerks sideways: motion blur
    frames += [open_mouth(neutral, a) for a in SPEECH]
    return frames, rest


def test_the_most_neutral_frame_is_chosen_not_the_first(girl_avatar):
    neutral = girl_avatar.landmarks.astype(np.float64)
    frames, rest = _script(neutral)
    chosen = choose_reference(frames)
    assert chosen.index in rest
    assert chosen.mouth < mouth_opening(neutral) + 0.01 < mouth_opening(frames[0])  # her own lips are parted
    assert abs(chosen.yaw) < 2 and abs(chosen.pitch) < 2


def test_frames_without_a_face_are_passed_over(girl_avatar):
    frames, rest = _script(girl_avatar.landmarks.astype(np.float64))
    for i in rest[1:]:
        frames[i] = None  # only the first resting frame has a face
    assert choose_reference(frames).index == rest[0]
    assert [f.index for f in neutral_frames(frames)] == [i for i, p in enumerate(frames) if p is not None]
    assert choose_reference([None, None]) is None and neutral_frames([]) == []


@pytest.fixture(scope="module")
def speaking_first(tmp_path_factory, girl_avatar):
    """A clip of the Girl with a Pearl Earring that opens mid-speech and rests later (25 fps)."""
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.pipeline.sinks import VideoFileSink

    neutral = girl_avatar.landmarks.astype(np.float64)
    targets = [open_mouth(neutral, a) for a in SPEECH + SPEECH[::-1]]
    targets += [turn_head(neutral, yaw=-16 * k / 4) for k in range(1, 5)] + [turn_head(neutral, yaw=-16)] * 4
    targets += [neutral] * 10
    targets += [open_mouth(neutral, a) for a in SPEECH]
    renderer = MeshRenderer()
    renderer.prepare(girl_avatar, RenderSettings(size=320))
    path = tmp_path_factory.mktemp("speaking") / "speaking_first.mp4"
    with VideoFileSink(path, fps=25, size=renderer.output_size) as sink:
        for t in targets:
            sink.write(renderer.render(t))
    return path, range(24, 34)


def test_render_picks_a_closed_mouth_facing_forward_and_says_which(tmp_path, capsys, speaking_first):
    from avatar_app.pipeline.stages import track_video

    driver, rest = speaking_first
    out = tmp_path / "mona.mp4"
    assert main(["render", "--driver", str(driver), "--portrait", str(PORTRAITS / "mona_lisa.jpg"), "--out", str(out),
                 "--size", "128"]) == 0
    said = re.search(r"reference frame (\d+) \(the most neutral", capsys.readouterr().out)
    assert said, "the summary names the reference frame"
    chosen = int(said.group(1))
    assert chosen in rest
    points, _ = track_video(driver)
    assert mouth_opening(points[chosen]) < 0.5 * mouth_opening(points[0])  # her own lips are parted a little


def test_reference_frame_still_wins(tmp_path, capsys, speaking_first):
    driver, _ = speaking_first
    out = tmp_path / "mona.mp4"
    assert main(["render", "--driver", str(driver), "--portrait", str(PORTRAITS / "mona_lisa.jpg"), "--out", str(out),
                 "--size", "128", "--reference-frame", "3"]) == 0
    assert "reference frame 3 (as asked)" in capsys.readouterr().out


def test_on_a_real_talking_clip_the_reference_has_a_closed_mouth():
    from avatar_app.pipeline.stages import track_video

    points, _ = track_video(shared_media("driving_man_talking_vox.mp4"))
    chosen = choose_reference(points)
    assert chosen.mouth < 0.02 < mouth_opening(points[0])  # the clip opens mid-word
    assert abs(chosen.yaw) < 8 and abs(chosen.pitch) < 8
