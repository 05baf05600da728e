"""Relative motion: the driver's head pose and expression, measured against a reference frame of the driver,
applied to the portrait's own landmarks.

Driving with the driver's absolute landmarks pastes the driver's face shape onto the portrait (the failure the
talking-head ports report for webcam use). Here only *changes* travel: the rigid motion of the driver's head
since the reference frame, and the non-rigid displacement of each landmark in the driver's head frame, scaled
and rotated into the portrait's head frame. With the driver still in its reference pose, the result is the
portrait's own landmarks, exactly, but for the mouth: its opening is measured from lips together on both faces
(face/motion.py), so the avatar's lips are as far apart as the driver's, wherever the reference had them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import Similarity, fit_similarity
from avatar_app.face.motion import close_mouth


# A lid this share of its neutral opening apart is shut: the tracker's lid points rest on the lashes of a closed
# eye (its shut eyes read 5-20 % open on the 38 clips), so a blink would otherwise never quite close. Between
# that and LID_LINEAR the opening is stretched to meet it; above, it is the driver's share as it is.
LID_SHUT = 0.15
LID_LINEAR = 0.6
MIN_LIP_THICKNESS = 0.6  # of the portrait's own, per lip and column


@dataclass(frozen=True)
class RetargetSettings:
    """How strongly the avatar follows: 0 keeps the portrait still, 1 follows the driver, up to 2 exaggerates.
    ``follow_eyes`` / ``follow_mouth`` / ``follow_gaze``: off keeps the portrait's own lids / mouth / gaze."""

    pose_strength: float = 1.0
    expression_strength: float = 1.0
    follow_translation: bool = True
    follow_gaze: bool = True
    follow_eyes: bool = True
    follow_mouth: bool = True

    def __post_init__(self) -> None:
        for name in ("pose_strength", "expression_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise ValueError(f"{name} must be between 0 and 2, got {value}")


def _scale_rotation(rotation: np.ndarray, strength: float) -> np.ndarray:
    if strength == 1.0:
        return rotation
    rvec, _ = cv2.Rodrigues(rotation)
    return cv2.Rodrigues(rvec * strength)[0]


def _separate_pairs(
    points: np.ndarray, upper: np.ndarray, lower: np.ndarray, down: np.ndarray, floor: np.ndarray
) -> None:
    """Keep each lower point below its upper partner along `down` (no lid or lip crosses the other).

    upper and lower are (rows, columns) index arrays whose last / first row faces the other side; a crossing
    moves the whole column of each side apart, so the lips keep their thickness instead of turning inside out.
    """
    gap = (points[lower[0], :2] - points[upper[-1], :2]) @ down - floor
    crossed = gap < 0
    if crossed.any():
        fix = 0.5 * gap[crossed, None] * down
        for row in upper:
            points[row[crossed], :2] += fix
        for row in lower:
            points[row[crossed], :2] -= fix


def lid_share(share: float) -> float:
    """How open the avatar's eye is, as a share of its own opening, when the driver's is ``share`` of its
    neutral one (below 1): shut from LID_SHUT down, stretched between it and LID_LINEAR, as it is above."""
    if share >= LID_LINEAR:
        return share
    return LID_LINEAR * max(share - LID_SHUT, 0.0) / (LID_LINEAR - LID_SHUT)


def _eye_frame(points: np.ndarray, eye: int):
    """An eye's outer corner, unit axes along and across it, its length, and its lids in those axes."""
    upper, lower = points[L.EYE_UPPER[eye], :2], points[L.EYE_LOWER[eye], :2]
    c0 = upper[0]
    axis = upper[-1] - c0
    length = float(np.hypot(axis[0], axis[1])) + 1e-6
    ax = axis / length
    nrm = np.array([-ax[1], ax[0]])
    if nrm @ (lower.sum(0) - upper.sum(0)) < 0:
        nrm = -nrm
    rel_u, rel_l = upper - c0, lower - c0
    return c0, ax, nrm, length, (rel_u @ ax / length, rel_u @ nrm), (rel_l @ ax / length, rel_l @ nrm)


def _lid(u: float, lid: tuple[np.ndarray, np.ndarray]) -> float:
    along, across = lid
    if np.all(np.diff(along) > 0):
        return float(np.interp(u, along, across))
    return float(across.mean())  # a lid folded over itself (tracking glitch): its mean height


def eye_coordinates(points: np.ndarray, eye: int, p: np.ndarray) -> np.ndarray:
    """(u, v) of image point p in an eye: u from outer (0) to inner corner (1), v from upper (0) to lower lid (1)."""
    c0, ax, nrm, length, upper, lower = _eye_frame(points, eye)
    u = float((p - c0) @ ax) / length
    vu, vl = _lid(u, upper), _lid(u, lower)
    return np.array([u, (float((p - c0) @ nrm) - vu) / max(vl - vu, 1e-3)])


def eye_point(points: np.ndarray, eye: int, uv: np.ndarray) -> np.ndarray:
    """The image point at eye coordinates uv (the inverse of eye_coordinates)."""
    c0, ax, nrm, length, upper, lower = _eye_frame(points, eye)
    vu, vl = _lid(uv[0], upper), _lid(uv[0], lower)
    return c0 + ax * uv[0] * length + nrm * (vu + uv[1] * (vl - vu))


class Retargeter:
    """Maps driver landmarks to portrait landmarks by relative motion.

    The first driver frame given (or the one passed to calibrate()) is the reference: a driver back in that
    pose gives the portrait exactly as it is.
    """

    def __init__(self, portrait: np.ndarray, settings: RetargetSettings = RetargetSettings()):
        self.settings = settings
        self.portrait = np.asarray(portrait, np.float64).copy()
        self._p_rigid_mean = self.portrait[L.RIGID].mean(0)
        # The driver's mouth is measured from its lips together, so it is laid on the portrait's lips together
        # too: a portrait painted mid-word shows the driver's opening, not its own plus the driver's.
        self._portrait_shut = close_mouth(self.portrait) - self.portrait
        down = self.portrait[L.CHIN, :2] - self.portrait[L.FOREHEAD, :2]
        self._down = down / (np.linalg.norm(down) + 1e-9)
        self._portrait_uv = [eye_coordinates(self.portrait, e, self.portrait[L.IRIS_CENTER[e], :2]) for e in (0, 1)]
        # How far each lid / lip pair may close: to touching, or as far as the portrait's own already are.
        self._pairs = [(L.EYE_UPPER[e][None, 1:-1], L.EYE_LOWER[e][None, 1:-1]) for e in (0, 1)]
        self._pairs.append((L.LIP_UPPER_ROWS, L.LIP_LOWER_ROWS))
        self._pair_floor = [
            np.minimum((self.portrait[lo[0], :2] - self.portrait[up[-1], :2]) @ self._down, 0.0)
            for up, lo in self._pairs
        ]
        # Each lip's own thickness per column (outer edge to inner edge along down), of which at least
        # MIN_LIP_THICKNESS stays whatever the driver's lips do: thin painted lips would otherwise vanish under a
        # driver who presses or rolls in thick ones.
        self._lip_thickness = [
            np.maximum((self.portrait[rows[-1], :2] - self.portrait[rows[0], :2]) @ self._down, 0.0)
            for rows in (L.LIP_UPPER_ROWS, L.LIP_LOWER_ROWS)
        ]
        # With the mouth switched off: how much of each point belongs to the mouth, from 0 at the nose tip to 1
        # at the upper lip and below (so the jaw stays shut too, without a seam across the cheeks).
        depth = self.portrait[:, :2] @ self._down
        nose, lip = depth[L.NOSE_TIP], depth[L.LIP_OUTER_UPPER].min()
        self._mouth_weight = np.clip((depth - nose) / max(lip - nose, 1e-6), 0.0, 1.0)
        self._eye_points = np.unique(np.concatenate([*L.EYE_UPPER, *L.EYE_LOWER]))
        self.reference: np.ndarray | None = None

    @property
    def has_reference(self) -> bool:
        return self.reference is not None

    def calibrate(self, driver: np.ndarray) -> None:
        """Make this driver frame the reference pose (the first frame with a face, or the Calibrate button)."""
        self.reference = np.asarray(driver, np.float64).copy()
        ref = self.reference
        # Expression is measured from the driver's face with its lips together: a reference taken mid-word or
        # smiling with teeth would otherwise keep the avatar's mouth shut whenever the driver's is less open.
        self._neutral = close_mouth(ref)
        # Driver frame -> portrait frame: rotates and scales expression displacements onto the portrait's head,
        # so a frontal driver can animate a three-quarter portrait.
        self._to_portrait = fit_similarity(ref[L.RIGID], self.portrait[L.RIGID])
        self._ref_uv = [eye_coordinates(ref, e, ref[L.IRIS_CENTER[e], :2]) for e in (0, 1)]
        down = ref[L.CHIN, :2] - ref[L.FOREHEAD, :2]
        self._ref_down = down / (np.linalg.norm(down) + 1e-9)
        self._ref_gaps = self._lid_gaps(ref)

    def _lid_gaps(self, aligned: np.ndarray) -> np.ndarray:
        """Each eye's mean lid opening along the reference's down axis (driver pixels)."""
        p = aligned[:, :2]
        return np.array([float(((p[L.EYE_LOWER[e][1:-1]] - p[L.EYE_UPPER[e][1:-1]]) @ self._ref_down).mean())
                         for e in (0, 1)])

    def driver_pose(self, driver: np.ndarray) -> Similarity:
        """The driver's head motion since the reference frame (3-D similarity, image axes)."""
        if self.reference is None:
            raise RuntimeError("calibrate() first")
        return fit_similarity(self.reference[L.RIGID], np.asarray(driver, np.float64)[L.RIGID])

    def __call__(self, driver: np.ndarray) -> np.ndarray:
        """Portrait landmarks (478 x 3, portrait pixels) for this driver frame."""
        driver = np.asarray(driver, np.float64)
        if self.reference is None:
            self.calibrate(driver)
        s = self.settings
        pose = self.driver_pose(driver)
        # Expression: the driver aligned back onto its reference pose, minus the reference with its lips together.
        aligned = (driver - pose.translation) @ pose.rotation / pose.scale
        expression = (aligned - self._neutral) * s.expression_strength
        if not s.follow_mouth:  # the lower face keeps the portrait's own mouth (and jaw)
            expression *= 1.0 - self._mouth_weight[:, None]
        if not s.follow_eyes:
            expression[self._eye_points] = 0.0
        to_p = self._to_portrait
        out = self.portrait + to_p.scale * expression @ to_p.rotation.T
        if s.follow_mouth:
            out += s.expression_strength * self._portrait_shut
        if s.follow_eyes:
            self._open_eyes_like_driver(out, self._lid_gaps(aligned), self._ref_gaps)

        for (upper, lower), floor in zip(self._pairs, self._pair_floor):
            _separate_pairs(out, upper, lower, self._down, floor)
        self._keep_lip_thickness(out)

        # Pose: the driver's rotation (camera axes) about the portrait's own head centre.
        rot = _scale_rotation(pose.rotation, s.pose_strength)
        scale = pose.scale ** s.pose_strength
        centre = self._p_rigid_mean
        moved = (out - centre) @ rot.T * scale + centre
        if s.follow_translation:
            shift = driver[L.RIGID].mean(0) - self.reference[L.RIGID].mean(0)
            shift[2] = 0.0
            moved += shift * to_p.scale * s.pose_strength
        self._place_irises(moved, driver)
        return moved

    def _keep_lip_thickness(self, out: np.ndarray) -> None:
        """Where a lip is thinner than MIN_LIP_THICKNESS of its own, move its outer edge out (the rows between
        it and the inner edge in proportion): the inner edges, which say how open the mouth is, stay."""
        for rows, own, sign in ((L.LIP_UPPER_ROWS, self._lip_thickness[0], 1.0),
                                (L.LIP_LOWER_ROWS, self._lip_thickness[1], -1.0)):
            # upper lip: rows from the outer edge down to the inner one; lower lip: inner edge down to outer
            inner, outer = (rows[-1], rows[0]) if sign > 0 else (rows[0], rows[-1])
            now = sign * ((out[inner, :2] - out[outer, :2]) @ self._down)
            short = MIN_LIP_THICKNESS * own - now
            if not (short > 0).any():
                continue
            short = np.maximum(short, 0.0)
            n = len(rows) - 1
            for k, row in enumerate(rows if sign > 0 else rows[::-1]):  # outer edge first
                out[row, :2] -= sign * ((n - k) / n * short)[:, None] * self._down

    def _open_eyes_like_driver(self, out: np.ndarray, now: np.ndarray, neutral: np.ndarray) -> None:
        """Open each eye by the same *share* of its own opening as the driver's eye of its opening at the
        reference (its neutral: the pose held still at calibration), not by the same pixels.

        Displacements alone under-close a large eye driven by a narrow one (a blink would stop half way) and
        over-close the reverse; a ratio of openings closes a blink fully on any face.
        """
        strength = self.settings.expression_strength
        for eye in (0, 1):
            upper, lower = L.EYE_UPPER[eye][1:-1], L.EYE_LOWER[eye][1:-1]
            ref_gap, now_gap = float(neutral[eye]), float(now[eye])
            if ref_gap <= 1e-3:
                continue
            own = (self.portrait[lower, :2] - self.portrait[upper, :2]) @ self._down
            # Closing: the driver's share of its neutral opening (a blink shuts any eye). Opening wider: the
            # driver's extra opening in the portrait's proportion (bounded, so a squinting reference cannot
            # make the portrait's eyes pop). Both agree to first order around the neutral.
            if now_gap <= ref_gap:
                wanted = own * lid_share(max(now_gap, 0.0) / ref_gap)
            else:
                wanted = own + (now_gap - ref_gap) * float(np.clip(own.mean() / ref_gap, 0.5, 2.0))
            wanted = own + strength * (wanted - own)
            gap = (out[lower, :2] - out[upper, :2]) @ self._down
            # The upper lid moves (the lower one barely does in a blink): to the wanted opening.
            out[upper, :2] += ((gap - np.where(own > 0, wanted, own))[:, None]) * self._down

    def _place_irises(self, out: np.ndarray, driver: np.ndarray) -> None:
        """Put each iris where the driver's gaze says, measured within the eye so it never leaves the eye."""
        for eye in (0, 1):
            uv = self._portrait_uv[eye].copy()
            if self.settings.follow_gaze:
                uv += eye_coordinates(driver, eye, driver[L.IRIS_CENTER[eye], :2]) - self._ref_uv[eye]
            own = self._portrait_uv[eye]
            uv = np.clip(uv, np.minimum(own, 0.2), np.maximum(own, 0.8))
            centre = eye_point(out, eye, uv)
            delta = centre - out[L.IRIS_CENTER[eye], :2]
            out[L.IRIS_CENTER[eye], :2] += delta
            out[L.IRIS_RING[eye], :2] += delta


class FaceLossEasing:
    """What the avatar does while the driver's face is missing: it holds the last pose, then eases to neutral.

    The sinks keep receiving frames meanwhile (a video call must not freeze). When the face returns, the
    avatar blends from where it was to the tracked pose over `return_s`, so it does not snap.
    """

    def __init__(self, neutral: np.ndarray, hold_s: float = 0.25, ease_s: float = 0.6, return_s: float = 0.15):
        self.neutral = np.asarray(neutral, np.float64)
        self.hold_s, self.ease_s, self.return_s = hold_s, ease_s, return_s
        self._last = self.neutral.copy()
        self._shown = self.neutral.copy()
        self._lost_at: float | None = None
        self._found_at: float | None = None
        self._from = self.neutral.copy()

    def __call__(self, target: np.ndarray | None, t: float) -> np.ndarray:
        if target is None:
            if self._lost_at is None:
                self._lost_at = t
                self._last = self._shown.copy()
            since = t - self._lost_at - self.hold_s
            w = 1.0 if since <= 0 else float(np.exp(-since / (self.ease_s / 3)))
            self._shown = self.neutral + w * (self._last - self.neutral)
            return self._shown
        if self._lost_at is not None:
            self._lost_at = None
            self._found_at = t
            self._from = self._shown.copy()
        if self._found_at is not None:
            a = (t - self._found_at) / self.return_s
            if a >= 1.0:
                self._found_at = None
            else:
                a = 0.5 - 0.5 * np.cos(np.pi * max(a, 0.0))
                self._shown = self._from + a * (np.asarray(target, np.float64) - self._from)
                return self._shown
        self._shown = np.asarray(target, np.float64)
        return self._shown
