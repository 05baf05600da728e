"""The jaw shape: learned from faces opening their mouths, it closes a mouth that was open at calibration."""

import numpy as np
import pytest

from avatar_app.face import landmarks as L
from avatar_app.face.motion import REST_GAP, close_mouth, inner_lip_gap, jaw_shape
from avatar_app.pipeline.demo import open_mouth, turn_head
from avatar_app.training.face_motion import clip_jaw


def test_the_shipped_jaw_shape_moves_the_jaw_not_the_skull():
    jaw = jaw_shape()
    assert jaw.shape == (L.N_POINTS, 3)
    lower, upper = jaw[L.LIP_INNER_LOWER[5], 1], jaw[L.LIP_INNER_UPPER[5], 1]
    assert lower > 0.5 and lower > jaw[L.CHIN, 1] > 0.1  # the lower lip drops most, the chin with it
    assert upper < 0.05  # the upper lip stays or rises
    assert np.abs(jaw[L.RIGID, :2]).max() < 0.1  # forehead, nose and eye corners stay


def test_close_mouth_brings_the_lips_together_and_leaves_a_closed_mouth_alone(mona_avatar):
    face = mona_avatar.landmarks.astype(np.float64)
    np.testing.assert_allclose(close_mouth(face), face)  # lips already together
    talking = turn_head(open_mouth(face, 0.3), yaw=10, roll=8)
    assert inner_lip_gap(talking) > 0.15
    closed = close_mouth(talking)
    assert inner_lip_gap(closed) == pytest.approx(REST_GAP, abs=0.015)
    iod = L.inter_ocular(face)
    assert np.abs(closed[L.RIGID] - talking[L.RIGID]).max() < 0.1 * iod
    assert closed[L.CHIN, 1] < talking[L.CHIN, 1] - 0.03 * iod  # the chin comes up with the jaw


def test_the_jaw_shape_is_learned_from_the_frames(mona_avatar):
    """A clip whose only motion is the jaw (scripted, with head turns): the learned shape is that jaw."""
    face = mona_avatar.landmarks.astype(np.float64)
    rng = np.random.default_rng(0)
    frames = [turn_head(open_mouth(face, a), yaw=y) for a, y in zip(rng.uniform(0, 0.4, 40), rng.uniform(-8, 8, 40))]
    shape, spread = clip_jaw(frames)
    assert spread > 0
    assert shape[L.LIP_INNER_LOWER[5], 1] > 0.7  # the lower lip is what opens the scripted mouth
    assert abs(shape[L.LIP_INNER_UPPER[5], 1]) < 0.1
    assert np.abs(shape[L.RIGID, :2]).max() < 0.05
    assert clip_jaw(frames[:1] * 40) is None  # a clip whose lips never move teaches nothing
