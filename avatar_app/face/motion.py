"""Expression measured in a face's own frame: the head frame (eye line, inter-ocular scale), the lips' opening,
and the learned jaw shape that says where every landmark goes as the mouth opens (training/face_motion.py
learns it; it ships in assets/motion/jaw.npz)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import as_file, files

import numpy as np

from avatar_app.face import landmarks as L

# The inner-lip columns whose opening is "the mouth's opening": the middle five (the corners always touch).
_MID = slice(3, 8)
# Lips this close (inter-ocular distances) count as together: a mouth at rest is often a hair apart, and
# closing it would move a driver's reference away from the pose it was taken in for nothing.
REST_GAP = 0.03


def head_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre, axes, iod): the rigid points' centre, rows x (along the eye line, image-left eye to right),
    y (down the face) and z, and the inter-ocular distance. ``(p - centre) @ axes.T / iod`` puts points in
    head units; ``units * iod @ axes + centre`` takes them back."""
    p = np.asarray(points, np.float64)
    across = p[L.IRIS_CENTER[1], :2] - p[L.IRIS_CENTER[0], :2]
    iod = float(np.hypot(*across)) + 1e-9
    x = np.array([across[0], across[1], 0.0]) / iod
    axes = np.stack([x, np.array([-x[1], x[0], 0.0]), np.array([0.0, 0.0, 1.0])])
    return p[L.RIGID].mean(0), axes, iod


def inner_lip_gap(points: np.ndarray) -> float:
    """How far the lips are apart in the middle, in inter-ocular distances (0: touching; never negative)."""
    p = np.asarray(points, np.float64)
    _, axes, iod = head_frame(p)
    gap = (p[L.LIP_INNER_LOWER[_MID], :2] - p[L.LIP_INNER_UPPER[_MID], :2]) @ axes[1, :2]
    return max(float(gap.mean()) / iod, 0.0)


@lru_cache(maxsize=1)
def jaw_shape() -> np.ndarray:
    """Each landmark's displacement (head units) per unit of lip opening, learned from talking-face clips."""
    with as_file(files("avatar_app.assets") / "motion" / "jaw.npz") as path:
        with np.load(path, allow_pickle=False) as data:
            jaw = np.asarray(data["jaw"], np.float64)
    if jaw.shape != (L.N_POINTS, 3):
        raise ValueError(f"assets/motion/jaw.npz holds a {jaw.shape} shape, expected ({L.N_POINTS}, 3) - reinstall the app")
    return jaw


def close_mouth(points: np.ndarray) -> np.ndarray:
    """The same face with its lips brought together (to REST_GAP) by the learned jaw motion; unchanged when
    they are no further apart than that."""
    p = np.asarray(points, np.float64)
    gap = inner_lip_gap(p) - REST_GAP
    if gap <= 0.0:
        return p.copy()
    _, axes, iod = head_frame(p)
    jaw = jaw_shape()
    # The learned shape opens the middle of the lips by jaw's own gap per unit; scale to close exactly.
    per_unit = float(((jaw[L.LIP_INNER_LOWER[_MID]] - jaw[L.LIP_INNER_UPPER[_MID]]) @ np.array([0.0, 1.0, 0.0])).mean())
    return p - (gap / max(per_unit, 1e-3)) * iod * (jaw @ axes)
