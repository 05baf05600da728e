"""Framing for the call: a tall portrait reaches the call as a full 1280 x 720 picture that follows the head."""

import cv2
import numpy as np
import pytest

from avatar_app.pipeline.framing import Framer, FramingSettings, fitting_crop
from avatar_app.pipeline.tracker import detect_portrait


def _output(avatar, size=512):
    """The avatar image as a renderer returns it: the whole portrait, longer side ``size``."""
    h, w = avatar.image.shape[:2]
    k = size / max(w, h)
    return cv2.resize(avatar.image, (round(w * k / 2) * 2, round(h * k / 2) * 2), interpolation=cv2.INTER_AREA)


def test_fit_shows_the_whole_portrait_between_bars(mona_avatar):
    picture = Framer(FramingSettings(mode="fit")).picture(_output(mona_avatar), mona_avatar.landmarks,
                                                          mona_avatar.size, 0.0)
    assert picture.shape == (720, 1280, 3)
    assert picture[:, :100].max() == 0 and picture[:, -100:].max() == 0  # bars left and right
    assert picture[:, 600:680].mean() > 40


def test_fill_and_follow_leave_no_bars_and_follow_puts_the_face_large(mona_avatar):
    image = _output(mona_avatar)
    for mode in ("fill", "follow"):
        picture = Framer(FramingSettings(mode=mode)).picture(image, mona_avatar.landmarks, mona_avatar.size, 0.0,
                                                             mona_avatar.landmarks)
        assert picture.shape == (720, 1280, 3)
        assert (picture.reshape(-1, 3).max(axis=1) == 0).mean() < 0.01, mode  # no black bars
        face = detect_portrait(picture, name=mode)  # the call sees a face (the centre of a portrait is her chest)
        assert face.inter_ocular() > 60, mode
    framer = Framer(FramingSettings(mode="follow", head_share=0.4))
    cx, cy, ch = framer.follow(mona_avatar.landmarks, mona_avatar.size, image.shape[1::-1], 0.0)
    k = image.shape[1] / mona_avatar.size[0]
    face = mona_avatar.landmarks[:, :2] * k
    face_h = face[:, 1].max() - face[:, 1].min()
    # The portrait is narrow: the widest 16:9 crop is what fits, and the face fills more of it than asked.
    assert ch * 16 / 9 == pytest.approx(image.shape[1], abs=1.0)
    assert face_h / ch >= 0.4
    assert face[:, 0].min() >= cx - ch * 8 / 9 and face[:, 0].max() <= cx + ch * 8 / 9  # the whole face in view
    assert face[:, 1].min() >= cy - ch / 2 and face[:, 1].max() <= cy + ch / 2


def test_follow_moves_like_a_camera_operator_not_like_the_head(mona_avatar):
    """A wide picture (the portrait padded) leaves room to follow; the head jumps sideways: the crop glides."""
    image = cv2.copyMakeBorder(_output(mona_avatar), 0, 0, 400, 400, cv2.BORDER_REPLICATE)
    portrait_size = (mona_avatar.size[0] + round(800 * mona_avatar.size[0] / _output(mona_avatar).shape[1]),
                     mona_avatar.size[1])
    k = image.shape[1] / portrait_size[0]
    pad = 400 / k  # the padding in portrait pixels
    here = mona_avatar.landmarks + [pad, 0, 0]
    there = here + [120 / k, 0, 0]  # 120 output pixels to the right
    framer = Framer(FramingSettings(mode="follow"))
    xs = []
    for i in range(150):  # 5 s at 30 fps: the head jumps at 1 s
        xs.append(framer.follow(here if i < 30 else there, portrait_size, image.shape[1::-1], i / 30)[0])
    steps = np.abs(np.diff(xs))
    assert steps.max() < 20  # never a jump: at most 20 of the 120 px in one frame
    assert abs(xs[29] - xs[0]) < 1  # a still head: a still camera
    assert xs[-1] - xs[29] == pytest.approx(120, abs=6)  # it got there within the 4 s


def test_a_crop_never_leaves_the_picture():
    for cx, cy, ch in [(-50, -50, 100), (900, 700, 300), (100, 100, 5000)]:
        x, y, h = fitting_crop((640, 480), 16 / 9, cx, cy, ch)
        w = h * 16 / 9
        assert 0 <= x - w / 2 and x + w / 2 <= 640 + 1e-9 and 0 <= y - h / 2 and y + h / 2 <= 480 + 1e-9
