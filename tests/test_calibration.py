"""Guided calibration and the motion switches: the reference pose is never taken silently from a moving or turned
face, and turning eyes or mouth off keeps the portrait's own."""

import numpy as np
import pytest

from avatar_app.face import landmarks as L
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.calibration import CalibrationSettings, SteadyHold, off_centre
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.retarget import Retargeter, RetargetSettings
from tests.conftest import turn_head

ANY_TURN = CalibrationSettings(max_turn=1.0)  # the paintings look sideways themselves


def _frontal(points: np.ndarray) -> np.ndarray:
    """The face turned until its nose sits between its eyes (what "look straight ahead" asks)."""
    best = min(range(-40, 41, 2), key=lambda yaw: off_centre(turn_head(points, yaw=yaw)))
    return turn_head(points, yaw=best)


def test_a_turned_face_reads_as_off_centre(mona_avatar):
    front = _frontal(mona_avatar.landmarks)
    assert off_centre(front) < 0.05
    assert off_centre(turn_head(front, yaw=20)) > 0.15 and off_centre(turn_head(front, yaw=-20)) > 0.15


def test_the_countdown_runs_only_while_the_face_holds_still_and_looks_ahead(mona_avatar):
    face = _frontal(mona_avatar.landmarks)
    hold = SteadyHold(CalibrationSettings(hold_s=1.0))
    left = [hold(face, i / 30) for i in range(20)]
    assert left[0] == 1.0 and left[-1] == pytest.approx(1.0 - 19 / 30) and np.all(np.diff(left) < 0)
    assert hold(face + [30, 0, 0], 20 / 30) == 1.0  # a jump: from the start again
    assert hold(None, 22 / 30) == 1.0  # no face: from the start too
    left = [hold(face, 1 + i / 30) for i in range(32)]
    assert left[-1] == 0.0
    talking = SteadyHold(CalibrationSettings(hold_s=1.0))
    iod = np.linalg.norm(face[L.IRIS_CENTER[1], :2] - face[L.IRIS_CENTER[0], :2])
    for i in range(60):  # a still head that talks (the lower lip 0.3 IOD up and down, 3 times a second)
        spoken = face.copy()
        spoken[L.LIP_LOWER_ROWS.ravel(), 1] += 0.15 * iod * (1 - np.cos(2 * np.pi * 3 * i / 30))
        left = talking(spoken, i / 30)
    assert left > 0.9  # never taken mid-word
    aside = SteadyHold(CalibrationSettings(hold_s=1.0, patience_s=4.0))
    left = [aside(turn_head(face, yaw=20), i / 30) for i in range(60)]
    assert left[-1] > 2.0  # looking aside: 2 s of holding still are not enough ...
    assert [aside(turn_head(face, yaw=20), 2 + i / 30) for i in range(61)][-1] == 0.0  # ... 4 s are


def test_guided_animator_keeps_the_portrait_still_until_calibrated_then_follows(mona_avatar):
    face = _frontal(mona_avatar.landmarks)
    animator = Animator(mona_avatar, RenderSettings(size=64), guided=True, calibration=ANY_TURN)
    moving = [face + [5 * np.sin(i), 0, 0] for i in range(15)]  # the user settles in
    for i, driver in enumerate(moving):
        target = animator.target(driver, i / 30)
        np.testing.assert_allclose(target, mona_avatar.landmarks, atol=1e-6)  # not the first frame, silently
        assert animator.calibration_left == 1.0
    t = 15 / 30
    while animator.calibration_left is not None:  # holds still: counted down, then taken
        animator.target(face, t)
        t += 1 / 30
    assert 0.95 <= t - 15 / 30 <= 1.1
    nod = turn_head(face, pitch=12)
    for i in range(10):  # it eases in from the portrait's pose, as after any time without a pose
        target = animator.target(nod, t + i / 30)
    assert np.abs(target - mona_avatar.landmarks).max() > 5  # now it follows
    animator.calibrate()  # C again: a new countdown, and the avatar keeps following meanwhile
    assert np.abs(animator.target(nod, t + 0.5) - mona_avatar.landmarks).max() > 5
    assert animator.calibration_left == 1.0
    animator.close()


def _open_mouth_and_shut_eyes(face: np.ndarray) -> np.ndarray:
    out = face.copy()
    iod = np.linalg.norm(face[L.IRIS_CENTER[1], :2] - face[L.IRIS_CENTER[0], :2])
    out[L.LIP_LOWER_ROWS.ravel(), 1] += 0.4 * iod  # the lower lip drops
    for eye in (0, 1):  # the upper lid comes down to the lower one
        upper, lower = L.EYE_UPPER[eye][1:-1], L.EYE_LOWER[eye][1:-1]
        out[upper, 1] = face[lower, 1]
    return out


def _mouth_gap(points):
    return float(np.mean(points[L.LIP_INNER_LOWER[2:-2], 1] - points[L.LIP_INNER_UPPER[2:-2], 1]))


def _eye_gap(points):
    return float(np.mean([np.mean(points[L.EYE_LOWER[e][1:-1], 1] - points[L.EYE_UPPER[e][1:-1], 1]) for e in (0, 1)]))


def test_mouth_and_eyes_switched_off_keep_the_portrait_s_own(mona_avatar):
    portrait = mona_avatar.landmarks.astype(np.float64)
    ref = _frontal(portrait)
    driver = _open_mouth_and_shut_eyes(ref)
    both = Retargeter(portrait, RetargetSettings())
    both.calibrate(ref)
    out = both(driver)
    assert _mouth_gap(out) > _mouth_gap(portrait) + 5 and _eye_gap(out) < 0.3 * _eye_gap(portrait)
    still = Retargeter(portrait, RetargetSettings(follow_mouth=False, follow_eyes=False))
    still.calibrate(ref)
    out = still(driver)
    assert _mouth_gap(out) == pytest.approx(_mouth_gap(portrait), abs=0.5)
    assert _eye_gap(out) == pytest.approx(_eye_gap(portrait), abs=0.5)
    turned = still(turn_head(driver, yaw=15))  # the head still follows
    assert np.abs(turned - out).max() > 5
