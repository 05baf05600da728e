"""Relative motion: the driver's changes, not its face shape, reach the portrait."""

import numpy as np
import pytest

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import (
    fit_similarity,
    head_pose_angles,
    rotation_from_angles,
)
from avatar_app.face.motion import close_mouth, inner_lip_gap
from avatar_app.pipeline.render.mouth import mouth_opening
from avatar_app.pipeline.retarget import FaceLossEasing, Retargeter, RetargetSettings
from tests.conftest import open_mouth, turn_head


@pytest.fixture(scope="module")
def portrait(mona_avatar):
    return mona_avatar.landmarks.astype(np.float64)


@pytest.fixture(scope="module")
def driver(girl_avatar):
    """A different face (shape, size, pose) than the portrait's: the girl's landmarks, her parted lips brought
    together, drive the Mona Lisa."""
    return close_mouth(girl_avatar.landmarks.astype(np.float64))


def test_driver_at_reference_gives_the_portrait_unchanged(portrait, driver):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    np.testing.assert_allclose(rt(driver), portrait, atol=1e-4)


def test_first_frame_becomes_the_reference(portrait, driver):
    rt = Retargeter(portrait)
    assert not rt.has_reference
    np.testing.assert_allclose(rt(driver), portrait, atol=1e-4)
    assert rt.has_reference


@pytest.mark.parametrize("yaw,pitch,roll", [(20, 0, 0), (-30, 0, 0), (0, 15, 0), (0, -20, 0), (0, 0, 25), (15, -10, 8)])
def test_pure_head_rotation_rotates_the_portrait_by_the_same_angles(portrait, driver, yaw, pitch, roll):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    out = rt(turn_head(driver, yaw, pitch, roll))
    moved = fit_similarity(portrait[L.RIGID], out[L.RIGID])
    np.testing.assert_allclose(head_pose_angles(moved.rotation), (yaw, pitch, roll), atol=0.5)
    assert moved.scale == pytest.approx(1.0, abs=1e-3)
    # Rigid motion only: the portrait's own shape is kept (no residual after undoing the rotation).
    residual = np.abs(moved.apply(portrait) - out)
    assert residual[:468].max() < 1e-6
    assert residual[468:].max() < 1.0  # pixels: irises are re-placed within the turned eyes


def test_angles_round_trip():
    for angles in [(10, 0, 0), (0, -12, 0), (0, 0, 30), (20, 10, -5)]:
        np.testing.assert_allclose(head_pose_angles(rotation_from_angles(*angles)), angles, atol=1e-9)


def test_translation_is_scaled_to_the_portrait(portrait, driver):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    shift = np.array([30.0, -12.0, 0.0])
    out = rt(driver + shift)
    ratio = rt._to_portrait.scale
    np.testing.assert_allclose((out - portrait)[L.RIGID].mean(0)[:2], shift[:2] * ratio, atol=0.05)


def test_opening_the_drivers_mouth_opens_the_portraits(portrait, driver):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    out = rt(open_mouth(driver, 0.4))
    assert mouth_opening(out) > mouth_opening(portrait) + 0.1
    # ... and leaves the eyes and forehead where they were.
    for idx in (L.EYE_UPPER[0], L.EYE_UPPER[1], np.array([L.FOREHEAD])):
        assert np.abs(out[idx] - portrait[idx]).max() < 1.0


def test_a_reference_taken_with_the_lips_apart_still_closes_the_avatars_mouth(portrait, driver):
    """Calibrated mid-word: the avatar's lips part as far as the driver's do at that moment, and meet when the
    driver's meet (not only once they are more open than at calibration)."""
    talking = open_mouth(driver, 0.3)
    rt = Retargeter(portrait)
    rt.calibrate(talking)
    scale = rt._to_portrait.scale
    at_reference = rt(talking)
    wanted = inner_lip_gap(talking) * L.inter_ocular(talking) * scale / L.inter_ocular(portrait)
    assert inner_lip_gap(at_reference) == pytest.approx(wanted, rel=0.25)
    closed = rt(driver)
    assert inner_lip_gap(closed) < 0.02
    wider = rt(open_mouth(driver, 0.45))
    assert inner_lip_gap(wider) > inner_lip_gap(at_reference) + 0.03


def test_a_blink_closes_the_portraits_eye_whatever_its_size(portrait, driver):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    blink = driver.copy()
    for eye in (0, 1):
        blink[L.EYE_UPPER[eye][1:-1], :2] = blink[L.EYE_LOWER[eye][1:-1], :2]
    out = rt(blink)
    half = driver.copy()
    for eye in (0, 1):
        half[L.EYE_UPPER[eye][1:-1], :2] = 0.5 * (half[L.EYE_UPPER[eye][1:-1], :2] + half[L.EYE_LOWER[eye][1:-1], :2])
    out_half = rt(half)
    for eye in (0, 1):
        up, lo = L.EYE_UPPER[eye][1:-1], L.EYE_LOWER[eye][1:-1]
        own = np.linalg.norm(portrait[lo, :2] - portrait[up, :2], axis=1).mean()
        assert np.linalg.norm(out[lo, :2] - out[up, :2], axis=1).mean() < 0.15 * own  # shut
        assert 0.3 * own < np.linalg.norm(out_half[lo, :2] - out_half[up, :2], axis=1).mean() < 0.7 * own


def test_strength_zero_keeps_the_portrait_still(portrait, driver):
    rt = Retargeter(portrait, RetargetSettings(pose_strength=0.0, expression_strength=0.0, follow_gaze=False))
    rt.calibrate(driver)
    out = rt(open_mouth(turn_head(driver, 20, 5, 5), 0.4) + [10, 5, 0])
    np.testing.assert_allclose(out, portrait, atol=1e-3)


def test_settings_out_of_range_are_refused():
    with pytest.raises(ValueError):
        RetargetSettings(pose_strength=3.0)


def test_lips_and_lids_never_cross(portrait, driver):
    """A driver squeezing more than the portrait can (its lips already thin) stops at closed."""
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    squeezed = driver.copy()
    squeezed[L.LIP_INNER_LOWER, 1] -= 15  # the lower lip pushed above the upper one
    squeezed[L.EYE_LOWER[0][1:-1], 1] -= 15
    out = rt(squeezed)
    down = portrait[L.CHIN, :2] - portrait[L.FOREHEAD, :2]
    down /= np.linalg.norm(down)
    lips = (out[L.LIP_INNER_LOWER[1:-1], :2] - out[L.LIP_INNER_UPPER[1:-1], :2]) @ down
    own = (portrait[L.LIP_INNER_LOWER[1:-1], :2] - portrait[L.LIP_INNER_UPPER[1:-1], :2]) @ down
    assert np.all(lips >= np.minimum(own, 0) - 0.05)
    lids = (out[L.EYE_LOWER[0][1:-1], :2] - out[L.EYE_UPPER[0][1:-1], :2]) @ down
    assert np.all(lids >= -0.05)


def test_gaze_moves_the_iris_but_keeps_it_in_the_eye(portrait, driver):
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    looking = driver.copy()
    eye_width = np.linalg.norm(driver[33, :2] - driver[133, :2])
    for eye in (0, 1):
        looking[[L.IRIS_CENTER[eye], *L.IRIS_RING[eye]], 0] += 0.2 * eye_width
    out = rt(looking)
    for eye in (0, 1):
        c = L.IRIS_CENTER[eye]
        assert out[c, 0] > portrait[c, 0] + 1.0  # looked the same way
    far = driver.copy()
    far[[L.IRIS_CENTER[0], *L.IRIS_RING[0]], 0] += 5 * eye_width  # tracking glitch: far out of the eye
    out = rt(far)
    xs = out[L.EYE_UPPER[0], 0]
    assert xs.min() < out[L.IRIS_CENTER[0], 0] < xs.max()


def test_face_loss_holds_then_eases_to_neutral_and_returns_smoothly():
    neutral = np.zeros((478, 3))
    pose = np.ones((478, 3)) * 10
    ease = FaceLossEasing(neutral, hold_s=0.2, ease_s=0.6, return_s=0.2)
    np.testing.assert_allclose(ease(pose, 0.0), pose)
    np.testing.assert_allclose(ease(None, 0.1), pose)  # held
    mid = ease(None, 0.5)
    assert 0 < mid[0, 0] < 10
    late = ease(None, 3.0)
    assert abs(late[0, 0]) < 0.1  # neutral
    back = ease(pose, 3.05)
    assert 0 <= back[0, 0] < 5  # blends back, no snap
    np.testing.assert_allclose(ease(pose, 3.5), pose)


def test_a_still_driver_gives_a_still_avatar(girl_avatar, mona_avatar):
    """A driver that does not move, seen by a camera with sensor noise, through the live tracker: the avatar's
    landmarks must not jitter (a tenth of a pixel per frame at 256 px; unsmoothed tracking moves them about
    0.2 px per frame on this input)."""
    import cv2

    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    image = cv2.resize(girl_avatar.image, (384, 450))
    rng = np.random.default_rng(7)
    animator = Animator(mona_avatar, RenderSettings(size=256))
    scale = np.array(animator.output_size) / mona_avatar.size
    targets = []
    with FaceTracker(TrackerSettings()) as tracker:
        for k in range(40):
            noisy = np.clip(image + rng.normal(0, 8.0, image.shape), 0, 255).astype(np.uint8)  # a dim webcam
            face = tracker.process(noisy, k / 25)
            assert face is not None
            targets.append(animator.target(face.points, k / 25)[:, :2] * scale)
    steps = [np.linalg.norm(b - a, axis=1).mean() for a, b in zip(targets[10:], targets[11:])]  # after settling
    assert float(np.mean(steps)) < 0.1


def test_thin_lips_keep_their_thickness(portrait, driver):
    """A driver rolling its lips in (outer edges pressed onto the inner ones): the portrait's lips stay at least
    60 % as thick as its own, and the mouth stays as closed as the driver's."""
    rt = Retargeter(portrait)
    rt.calibrate(driver)
    rolled = driver.copy()
    for rows, toward in ((L.LIP_UPPER_ROWS, -1), (L.LIP_LOWER_ROWS, 0)):
        for row in rows:
            rolled[row, :2] = rolled[rows[toward], :2]  # every row onto the inner edge
    out = rt(rolled)
    down = portrait[L.CHIN, :2] - portrait[L.FOREHEAD, :2]
    down /= np.linalg.norm(down)
    for rows, inner, outer in ((L.LIP_UPPER_ROWS, -1, 0), (L.LIP_LOWER_ROWS, 0, -1)):
        own = np.abs((portrait[rows[inner], :2] - portrait[rows[outer], :2]) @ down)
        now = np.abs((out[rows[inner], :2] - out[rows[outer], :2]) @ down)
        assert np.all(now >= 0.6 * own - 0.05)
    assert inner_lip_gap(out) < 0.02
