"""Face geometry shared by the retargeter and the renderers: similarity fits between point sets and head-pose
angles in image axes (x right, y down, z away from the camera)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Head-pose angles compose as R = Ry(yaw) · Rx(pitch) · Rz(roll): scipy's intrinsic "YXZ" sequence.
EULER_ORDER = "YXZ"


@dataclass(frozen=True)
class Similarity:
    """dst ≈ scale · R · src + t."""

    scale: float
    rotation: np.ndarray  # (d, d)
    translation: np.ndarray  # (d,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation


def fit_similarity(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity (Umeyama 1991) mapping src points onto dst points, in 2-D or 3-D."""
    # Written out rather than scipy's: orthogonal_procrustes may return a reflection and
    # Rotation.align_vectors is 3-D only, while the mesh renderer fits 2-D points and must get a rotation.
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(len(sig))
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_s = (a**2).sum() / len(src)
    scale = float((sig * d).sum() / var_s) if with_scale and var_s > 0 else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def head_pose_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation in image axes, composed as R = Ry(yaw) · Rx(pitch) · Rz(roll),
    the inverse of rotation_from_angles()."""
    # Imported here: scipy.spatial costs the app's start-up almost half a second, and only tests and the
    # alignment tools read angles.
    from scipy.spatial.transform import Rotation

    yaw, pitch, roll = Rotation.from_matrix(rotation).as_euler(EULER_ORDER, degrees=True)
    return float(yaw), float(pitch), float(roll)


def rotation_from_angles(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The rotation that head_pose_angles() reads back (degrees; used by tests and the alignment tools)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(EULER_ORDER, [yaw, pitch, roll], degrees=True).as_matrix()
