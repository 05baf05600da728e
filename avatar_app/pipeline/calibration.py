"""Guided calibration: the driver's reference pose is taken only once the face has looked straight ahead and
held still for about a second, never silently from whatever the first frame happened to be."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_app.face import landmarks as L


@dataclass(frozen=True)
class CalibrationSettings:
    """``hold_s``: how long the face must hold still. ``max_speed``: the most the head may move meanwhile, in
    inter-ocular distances per second. ``max_turn``: how far off-centre the nose may be, as a share of the
    distance between the eyes (about 0.1 is 6-7 degrees of yaw). ``max_mouth_speed``: how fast the lips may
    part or close meanwhile (IOD per second), so a pose is never taken mid-word. ``patience_s``: a face that holds still but
    keeps looking aside (a camera beside the screen) is taken after this long instead, so nobody is stuck."""

    hold_s: float = 1.0
    max_speed: float = 0.35
    max_turn: float = 0.12
    patience_s: float = 3.0
    max_mouth_speed: float = 0.5  # inter-ocular distances per second: talking is not holding still

    def __post_init__(self) -> None:
        if not 0.05 <= self.hold_s <= self.patience_s:
            raise ValueError(f"hold_s must be 0.05 s or more and at most patience_s, got {self.hold_s}")


def off_centre(points: np.ndarray) -> float:
    """How far the nose tip sits from the middle of the eyes, sideways, in inter-ocular distances (0: frontal)."""
    p = np.asarray(points, np.float64)[:, :2]
    left, right = p[L.IRIS_CENTER[0]], p[L.IRIS_CENTER[1]]
    across = right - left
    iod = float(np.linalg.norm(across)) + 1e-9
    return abs(float((p[L.NOSE_TIP] - (left + right) / 2) @ across) / iod) / iod


class SteadyHold:
    """Counts down while the face holds still: ``hold_s`` looking straight ahead, ``patience_s`` looking aside.
    Any movement starts it again."""

    def __init__(self, settings: CalibrationSettings = CalibrationSettings()):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._since: float | None = None
        self._last: tuple[np.ndarray, float] | None = None

    def __call__(self, driver: np.ndarray | None, t: float) -> float:
        """Seconds still to hold (0: take the reference now); the full time while there is no face."""
        s = self.settings
        if driver is None:
            self.reset()
            return s.hold_s
        p = np.asarray(driver, np.float64)[:, :2]
        iod = L.inter_ocular(p) + 1e-9
        centre = p[L.RIGID].mean(0)
        lips = float(np.linalg.norm(p[L.LIP_INNER_LOWER[5]] - p[L.LIP_INNER_UPPER[5]])) / iod  # mid-lip gap
        moving = False
        if self._last is not None:
            (previous, previous_lips), t0 = self._last
            dt = max(t - t0, 1e-3)
            moving = (float(np.linalg.norm(centre - previous)) / iod / dt > s.max_speed
                      or abs(lips - previous_lips) / dt > s.max_mouth_speed)
        self._last = ((centre, lips), t)
        if moving:
            self._since = None
            return s.hold_s
        if self._since is None:
            self._since = t
        needed = s.hold_s if off_centre(driver) <= s.max_turn else s.patience_s
        return max(0.0, needed - (t - self._since))
