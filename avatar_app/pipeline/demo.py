"""The demo source: a face that moves by itself, so the app runs and shows what it does without a camera.

A shipped portrait (the Girl with a Pearl Earring) is animated by the app's own mesh renderer from scripted
landmarks: slow head turns, a nod, speech-like mouth movement, blinks and a little drift. The same landmark
scripting (``open_mouth``, ``close_eyes``, ``squint``, ``raise_brows``, ``turn_head``) makes the tests' generated
driver clips and expressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import rotation_from_angles

DEMO_PORTRAIT = "girl_with_a_pearl_earring.jpg"
DEMO_SIZE = 480  # longer side of the demo's frames when the settings ask for none (a webcam's height)
DEMO_FPS = 25.0


# -- landmark scripting: the same face with its jaw dropped, its eyes shut, its head turned -----------------------
def open_mouth(points: np.ndarray, amount: float) -> np.ndarray:
    """Landmarks with the jaw dropped: the lower lip and chin move down by `amount` x the mouth's width."""
    p = np.array(points, np.float64)
    left, right = p[L.MOUTH_CORNERS[0], :2], p[L.MOUTH_CORNERS[1], :2]
    width = np.linalg.norm(right - left)
    centre_x = 0.5 * (left[0] + right[0])
    # "Below the mouth" is below the upper inner lip's own curve (a smiling mouth is not a straight line).
    upper = p[L.LIP_INNER_UPPER]
    order = np.argsort(upper[:, 0])
    lip_y = np.interp(p[:, 0], upper[order, 0], upper[order, 1])
    depth = p[:, 1] - lip_y
    w = np.clip(depth / (0.5 * width), 0, 1)
    # The lower lip and what is under it drop as one, fully in the middle, not at the corners.
    below = (depth > 0) & (np.abs(p[:, 0] - centre_x) < 0.5 * width)
    taper = np.clip(1 - ((p[:, 0] - centre_x) / (0.5 * width)) ** 2, 0, 1) ** 0.5
    w[below] = np.maximum(w[below], taper[below])
    w[L.LIP_INNER_LOWER[1:-1]] = taper[L.LIP_INNER_LOWER[1:-1]]
    w[np.concatenate([L.LIP_INNER_UPPER, L.LIP_OUTER_UPPER])] = 0.0
    p[:, 1] += w * amount * width
    return p


def _narrow_eyes(points: np.ndarray, amount: float, upper_share: float) -> np.ndarray:
    """Both eyes' openings narrowed by `amount` (0-1), the upper lid taking `upper_share` of the travel."""
    p = np.array(points, np.float64)
    for eye in (0, 1):
        upper, lower = L.EYE_UPPER[eye][1:-1], L.EYE_LOWER[eye][1:-1]
        gap = p[lower] - p[upper]
        p[upper] += upper_share * amount * gap
        p[lower] -= (1.0 - upper_share) * amount * gap
    return p


def close_eyes(points: np.ndarray, amount: float) -> np.ndarray:
    """Landmarks with both eyes closed by `amount` (0 open, 1 shut): the upper lid does most of the travel."""
    return _narrow_eyes(points, amount, 0.75)


def squint(points: np.ndarray, amount: float) -> np.ndarray:
    """Landmarks narrowed into a squint by `amount` (0-1): the lower lid rises as much as the upper one falls."""
    return _narrow_eyes(points, amount, 0.5)


def raise_brows(points: np.ndarray, amount: float, side: int | None = None) -> np.ndarray:
    """Landmarks with the brows raised by `amount` inter-ocular distances (negative: lowered, a frown);
    ``side`` 0 or 1 raises one brow only."""
    p = np.array(points, np.float64)
    left, right = p[L.IRIS_CENTER[0], :2], p[L.IRIS_CENTER[1], :2]
    iod = float(np.linalg.norm(right - left))
    up = np.array([(right - left)[1], -(right - left)[0]]) / iod  # perpendicular to the eye line, up the face
    for eye in (0, 1) if side is None else (side,):
        p[L.BROWS[eye], :2] += amount * iod * up
    return p


def turn_head(points: np.ndarray, yaw=0.0, pitch=0.0, roll=0.0) -> np.ndarray:
    """Landmarks of the same face rotated about its own centre (degrees)."""
    p = np.asarray(points, np.float64)
    c = p[L.RIGID].mean(0)
    return (p - c) @ rotation_from_angles(yaw, pitch, roll).T + c


# -- the script --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoPose:
    """The scripted face at one moment: head angles (degrees), mouth (mouth widths), eyes closed (0-1) and the
    head's shift (face heights)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    mouth: float = 0.0
    blink: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)


def _window(t: float, start: float, end: float, edge: float) -> float:
    """1 inside [start, end], easing to 0 over `edge` seconds at both ends (a smooth envelope)."""
    if t <= start or t >= end:
        return 0.0
    rise = min(1.0, (t - start) / edge, (end - t) / edge)
    return 0.5 - 0.5 * math.cos(math.pi * rise)


@dataclass(frozen=True)
class DemoScript:
    """One pass of the demo, ``period`` seconds, that loops without a seam and starts at rest (the first frame
    faces the camera with the mouth closed, so it is a good reference pose).

    Every motion is a sum of whole cycles over the period, or a burst that starts and ends inside it.
    """

    period: float = 12.0
    # Degrees at the peak. She turns further away and back, never towards the camera: the painting does not
    # show the far side of her face, and a warp that turned her to the front would tear her far cheek.
    yaw: float = 20.0
    pitch: float = 8.0
    roll: float = 10.0
    nod: float = 7.0  # degrees, peak of the nod's pitch
    nod_at: tuple[float, float] = (5.2, 7.0)  # seconds, around a zero of the slow pitch
    # seconds when she "talks": silent for the first 3.8 s (and the last 0.8), so the window's calibration, which
    # waits for a face that holds still and does not talk, takes her pose near rest
    speech: tuple[tuple[float, float], ...] = ((3.8, 6.8), (7.6, 11.2))
    syllables_per_second: float = 3.5
    mouth: float = 0.32  # the widest opening, in mouth widths
    blinks: tuple[float, ...] = (2.1, 5.2, 8.9, 11.3)  # seconds
    blink_duration: float = 0.3
    shift: tuple[float, float] = (0.05, 0.025)  # face heights, peak

    def pose(self, t: float) -> DemoPose:
        t = t % self.period
        w = 2 * math.pi / self.period
        yaw = self.yaw * (0.5 - 0.5 * math.cos(w * t))
        pitch = self.pitch * math.sin(2 * w * t) + self.nod * math.sin(
            2 * math.pi * 1.4 * (t - self.nod_at[0])) * _window(t, *self.nod_at, 0.3)
        roll = self.roll * math.sin(w * t + 0.6 * math.sin(2 * w * t))
        shift = (self.shift[0] * math.sin(2 * w * t), self.shift[1] * math.sin(3 * w * t))
        return DemoPose(yaw, pitch, roll, self._mouth(t), self._blink(t), shift)

    def _mouth(self, t: float) -> float:
        for start, end in self.speech:
            envelope = _window(t, start, end, 0.25)
            if envelope > 0:
                k = (t - start) * self.syllables_per_second  # syllable number and how far into it
                syllable = int(k)
                # Syllables differ in how wide they open (a fixed, irregular pattern, like speech).
                loud = 0.35 + 0.65 * (0.5 + 0.5 * math.sin(2.7 * syllable + 1.3 * math.sin(1.9 * syllable)))
                return self.mouth * envelope * loud * math.sin(math.pi * (k - syllable)) ** 2
        return 0.0

    def _blink(self, t: float) -> float:
        d = self.blink_duration
        for at in self.blinks:
            if at <= t < at + d:  # closes fast (a third of the time), opens slower
                u = (t - at) / d
                return u / 0.35 if u < 0.35 else (1 - u) / 0.65
        return 0.0


def demo_landmarks(neutral: np.ndarray, pose: DemoPose) -> np.ndarray:
    """The portrait's own landmarks moved as `pose` says."""
    p = open_mouth(neutral, pose.mouth) if pose.mouth > 0 else np.asarray(neutral, np.float64)
    if pose.blink > 0:
        p = close_eyes(p, pose.blink)
    p = turn_head(p, pose.yaw, pose.pitch, pose.roll)
    height = float(np.ptp(np.asarray(neutral)[L.FACE_OVAL, 1]))
    p[:, 0] += pose.shift[0] * height
    p[:, 1] += pose.shift[1] * height
    return p


@lru_cache(maxsize=1)
def demo_avatar():
    """The demo's portrait, found once per process (finding its face is the slow part of opening)."""
    from importlib.resources import as_file, files

    from avatar_app.images import load_image
    from avatar_app.pipeline.avatar import create_avatar

    with as_file(files("avatar_app.assets") / "portraits" / DEMO_PORTRAIT) as path:
        return create_avatar(load_image(path), "demo")
