"""The alignment overlay: the portrait's face placed on the driver's, both landmark sets drawn."""

from __future__ import annotations

import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.ui.overlay import DRIVER_COLOUR, PORTRAIT_COLOUR, alignment_overlay, placement


def _count(image, colour):
    return int((np.abs(image.astype(int) - colour).sum(axis=2) < 30).sum())


def test_the_portrait_lands_on_the_driver_face_by_scale_and_shift_only(girl_avatar):
    portrait = girl_avatar.landmarks
    driver = portrait * [0.5, 0.5, 0.5] + [40, 30, 0]
    m = placement(portrait, driver, (640, 480))
    assert np.allclose(m[:, :2], np.eye(2) * 0.5)
    placed = portrait[:, :2] @ m[:, :2].T + m[:, 2]
    assert np.allclose(placed[L.RIGID].mean(0), driver[L.RIGID, :2].mean(0))


def test_overlay_draws_both_sets_and_ghosts_only_the_face(girl_avatar):
    camera = np.full((480, 640, 3), 30, np.uint8)
    portrait = girl_avatar.landmarks
    centre = portrait[:, :2].mean(0)
    scale = 200 / np.ptp(portrait[:, 1])
    a = np.radians(20)  # the driver's head is tilted: the overlay must show it against the upright portrait
    tilt = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    driver = ((portrait - [*centre, 0]) * scale) @ tilt.T + [300, 240, 0]  # a face 200 px tall in the middle
    out = alignment_overlay(camera, girl_avatar.image, portrait, driver)
    assert out.shape == camera.shape
    assert _count(out, PORTRAIT_COLOUR) > 100 and _count(out, DRIVER_COLOUR) > 100
    assert np.array_equal(out[:20, :20], camera[:20, :20])  # away from the face, the camera is untouched


def test_without_a_face_the_ghost_waits_in_the_middle_and_big_frames_are_shrunk(girl_avatar):
    camera = np.full((1080, 1920, 3), 30, np.uint8)
    out = alignment_overlay(camera, girl_avatar.image, girl_avatar.landmarks, None)
    assert out.shape == (360, 640, 3)
    assert _count(out, DRIVER_COLOUR) == 0 and _count(out, PORTRAIT_COLOUR) > 50
    ys, xs = np.nonzero(np.abs(out.astype(int) - 30).sum(axis=2) > 10)
    assert abs(xs.mean() - 320) < 40  # centred
