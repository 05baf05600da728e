"""Which driver frame should be the reference pose: the most neutral one of a clip.

Relative motion (retarget.py) measures every frame against a reference frame, whose pose becomes the portrait's
own. A reference caught mid-word inverts the mouth (the driver closing it then closes the portrait's mouth past
its own lips), one caught mid-blink or mid-turn does the same to the eyes and head. So the reference is the frame
with the mouth closed and not smiling, the eyes open, the head in the clip's usual pose and the face still (no
motion blur).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import fit_similarity, head_pose_angles
from avatar_app.pipeline.render.mouth import mouth_opening

# What counts as "noticeably off" for each measure; a frame's cost is the sum of its squared shares of these.
MOUTH_STEP = 0.02  # mouth opening (inner-lip area / mouth width²; ~0.1-0.3 wide open) above the clip's closed
WIDTH_STEP = 0.08  # share by which the mouth is wider (a smile) or narrower (pursed lips) than the clip's closed one
EYES_STEP = 0.1  # share of the clip's open-eye height lost (a blink, a squint)
POSE_STEP = 6.0  # degrees of yaw and pitch away from the clip's usual head pose
SPEED_STEP = 0.03  # landmark motion per frame, in inter-ocular distances
# The mouth weighs most: it is what an open-mouthed reference visibly breaks (and what made this module).
MOUTH_WEIGHT = 4.0


@dataclass(frozen=True)
class NeutralFrame:
    """One frame's measures and its cost (0 = as neutral as the clip gets)."""

    index: int
    mouth: float  # mouth_opening()
    width: float  # mouth_width()
    eyes: float  # eye_opening()
    yaw: float  # degrees from the clip's usual head pose
    pitch: float
    speed: float  # inter-ocular distances per frame
    cost: float


def eye_opening(points: np.ndarray) -> float:
    """Mean lid gap over eye length, both eyes (about 0.25-0.35 open, near 0 shut)."""
    shares = []
    for eye in (0, 1):
        upper, lower = points[L.EYE_UPPER[eye][2:-2], :2], points[L.EYE_LOWER[eye][2:-2], :2]
        length = np.linalg.norm(points[L.EYE_UPPER[eye][-1], :2] - points[L.EYE_UPPER[eye][0], :2])
        shares.append(np.linalg.norm(lower - upper, axis=1).mean() / max(float(length), 1e-6))
    return float(np.mean(shares))


def _inter_ocular(points: np.ndarray) -> float:
    return max(L.inter_ocular(points), 1e-6)


def mouth_width(points: np.ndarray) -> float:
    """Mouth corner to corner over the distance between the eyes: a smile widens it, closed or not."""
    return float(np.linalg.norm(points[L.MOUTH_CORNERS[1], :2] - points[L.MOUTH_CORNERS[0], :2])) / _inter_ocular(points)


def _head_turns(points: list[np.ndarray]) -> np.ndarray:
    """(yaw, pitch) of each frame's head away from the clip's usual pose (the median over frames), degrees."""
    rigid = [p[L.RIGID] for p in points]
    first = rigid[0]
    angles = np.array([head_pose_angles(fit_similarity(first, r).rotation)[:2] for r in rigid])
    return angles - np.median(angles, axis=0)


def _speeds(drivers: Sequence[np.ndarray | None]) -> list[float]:
    """Landmark motion per frame around each frame (central difference where both neighbours have a face)."""
    out = []
    for i, p in enumerate(drivers):
        if p is None:
            out.append(0.0)
            continue
        steps = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(drivers) and drivers[j] is not None:
                steps.append(np.linalg.norm(drivers[j][:, :2] - p[:, :2], axis=1).mean())
        out.append(float(np.mean(steps)) / _inter_ocular(p) if steps else 0.0)
    return out


def neutral_frames(drivers: Sequence[np.ndarray | None]) -> list[NeutralFrame]:
    """Every frame with a face (landmarks 478 x 3; None where no face was found), measured and costed."""
    found = [i for i, p in enumerate(drivers) if p is not None]
    if not found:
        return []
    points = [np.asarray(drivers[i], np.float64) for i in found]
    mouths = np.array([mouth_opening(p) for p in points])
    widths = np.array([mouth_width(p) for p in points])
    eyes = np.array([eye_opening(p) for p in points])
    angles = _head_turns(points)
    speeds = np.array(_speeds(drivers))[found]
    # "Closed" and "open" are the clip's own: a low percentile of its mouth, a high one of its eyes, so a
    # narrow-eyed face or a resting mouth that never quite shuts is not held against every frame.
    closed = np.percentile(mouths, 5)
    usual_width = np.median(widths[mouths <= closed + MOUTH_STEP])  # of the closed mouths: opening narrows it
    open_eyes = np.percentile(eyes, 90)
    cost = (
        MOUTH_WEIGHT * (np.maximum(mouths - closed, 0) / MOUTH_STEP) ** 2
        + ((widths / usual_width - 1) / WIDTH_STEP) ** 2
        + (np.maximum(open_eyes - eyes, 0) / (EYES_STEP * max(open_eyes, 1e-6))) ** 2
        + ((angles**2).sum(1) / POSE_STEP**2)
        + (speeds / SPEED_STEP) ** 2
    )
    return [
        NeutralFrame(i, float(m), float(w), float(e), float(a[0]), float(a[1]), float(s), float(c))
        for i, m, w, e, a, s, c in zip(found, mouths, widths, eyes, angles, speeds, cost)
    ]


def choose_reference(drivers: Sequence[np.ndarray | None]) -> NeutralFrame | None:
    """The most neutral frame (the earliest of equals); None when no frame has a face."""
    frames = neutral_frames(drivers)
    return min(frames, key=lambda f: (f.cost, f.index)) if frames else None
