"""Where the call's camera looks: head and shoulders with the whole head and room above it, the face about a
third of the picture, a glide like a camera operator's, and the whole portrait between bars for "fit"."""

import numpy as np
import pytest

from avatar_app.call.framing import (HEADROOM, Framer, FramingSettings, crown, fitting_crop, head_and_shoulders,
                                     parse_call_size)
from avatar_app.call.background import avatar_mask
from tests.conftest import turn_head


def _crown(avatar):
    return crown(avatar.landmarks, avatar_mask(avatar), avatar.size)


@pytest.mark.parametrize("name", ["mona", "girl"])
def test_follow_frames_head_and_shoulders_with_the_whole_head_and_room_above_it(name, mona_avatar, girl_avatar):
    avatar = mona_avatar if name == "mona" else girl_avatar
    top_of_head = _crown(avatar)
    face = avatar.landmarks[:, :2]
    assert top_of_head[1] < face[:, 1].min() - 0.1 * np.ptp(face[:, 1])  # hair above the forehead counts
    cx, cy, ch = Framer(FramingSettings()).crop(avatar.landmarks, avatar.landmarks, top_of_head, avatar.size, 0.0)
    top, bottom = cy - ch / 2, cy + ch / 2
    share = np.ptp(face[:, 1]) / ch
    assert 0.28 <= share <= 0.40, share  # about a third: head and shoulders, as a webcam's auto-framing
    assert top <= top_of_head[1] - 0.9 * HEADROOM * ch  # the crown inside, with headroom
    assert face[:, 1].max() <= bottom - 0.24 * ch  # the chin with neck and shoulders below it
    assert abs(cx - (face[:, 0].min() + face[:, 0].max()) / 2) < 1  # the face in the middle
    assert bottom <= avatar.size[1] + 1e-6  # never below the portrait


def test_a_portrait_too_short_for_head_and_shoulders_gets_the_tallest_crop_with_the_crown_in():
    # A close-up: the face is 60 % of the portrait's height. The crop is as tall as the portrait allows (and a
    # tenth above it, the still layer's continuation), the crown and the chin stay inside.
    cx, cy, ch = head_and_shoulders(face_top=150, chin=450, cx=250, crown_y=100, image_size=(500, 500),
                                    s=FramingSettings())
    assert ch == pytest.approx(500 * 1.1, abs=1)
    assert cy - ch / 2 <= 100 - HEADROOM * ch + 1e-6 and cy + ch / 2 <= 500 + 1e-6
    assert 450 < cy + ch / 2


def test_follow_moves_like_a_camera_operator_not_like_the_head(mona_avatar):
    """The head jumps sideways: the crop glides after it."""
    rest = mona_avatar.landmarks
    there = rest + [60, 0, 0]
    framer = Framer(FramingSettings())
    top = _crown(mona_avatar)
    xs = [framer.crop(rest if i < 30 else there, rest, top, mona_avatar.size, i / 30)[0] for i in range(150)]
    steps = np.abs(np.diff(xs))
    assert steps.max() < 10  # never a jump: at most 10 of the 60 px in one frame
    assert abs(xs[29] - xs[0]) < 1  # a still head: a still camera
    assert xs[-1] - xs[29] == pytest.approx(60, abs=3)  # it got there within the 4 s


def test_the_camera_follows_a_head_that_rolls_and_keeps_its_crown_in(mona_avatar):
    rest = mona_avatar.landmarks
    top = _crown(mona_avatar)
    framer = Framer(FramingSettings())
    for i in range(90):
        target = turn_head(rest, roll=25 * min(1.0, i / 30), pitch=-10 * min(1.0, i / 30))
        cx, cy, ch = framer.crop(target, rest, top, mona_avatar.size, i / 30)
    assert cy - ch / 2 < top[1]  # still above the top of the head


def test_fit_and_fill(mona_avatar):
    s = FramingSettings(mode="fit")
    cx, cy, ch = Framer(s).crop(mona_avatar.landmarks, mona_avatar.landmarks, _crown(mona_avatar), mona_avatar.size, 0)
    assert ch == mona_avatar.size[1] and (cx, cy) == (mona_avatar.size[0] / 2, mona_avatar.size[1] / 2)
    cx, cy, ch = Framer(FramingSettings(mode="fill")).crop(None, mona_avatar.landmarks, _crown(mona_avatar),
                                                           mona_avatar.size, 0)
    assert ch * 16 / 9 == pytest.approx(mona_avatar.size[0])  # the widest 16:9 the portrait has


def test_a_crop_never_leaves_the_picture():
    for cx, cy, ch in [(-50, -50, 100), (900, 700, 300), (100, 100, 5000)]:
        x, y, h = fitting_crop((640, 480), 16 / 9, cx, cy, ch)
        w = h * 16 / 9
        assert 0 <= x - w / 2 and x + w / 2 <= 640 + 1e-9 and 0 <= y - h / 2 and y + h / 2 <= 480 + 1e-9


def test_call_sizes_are_read_and_bad_ones_refused():
    assert parse_call_size("1280x720") == (1280, 720) and parse_call_size("1920X1080") == (1920, 1080)
    for bad in ("1280", "axb", "1280x720x3"):
        with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
            parse_call_size(bad)
    with pytest.raises(ValueError, match="even sizes"):
        FramingSettings(width=1281, height=720)
