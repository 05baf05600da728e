"""The naive warp: a baseline the app's renderer must beat, kept in benchmarks/ (never in the app).

Relative motion of the landmarks since the reference frame (each landmark's displacement in the driver,
mapped onto the portrait by the 2-D similarity between the driver's reference face and the portrait's face),
a ring of fixed points 1.6 face radii around the face and the image border fixed, one Delaunay
triangulation of the portrait's points, a piecewise-affine backward warp. No mouth fill, no fold handling, no
smoothing beyond the tracker's.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

from avatar_app.face.geometry import fit_similarity

RING_RADII = 1.6
RING_POINTS = 24
BORDER_POINTS = 8  # per side


class NaiveWarp:
    def __init__(self, image: np.ndarray, portrait: np.ndarray, reference: np.ndarray) -> None:
        h, w = image.shape[:2]
        self.image = image
        self.portrait = np.asarray(portrait, np.float64)[:468, :2]
        ref = np.asarray(reference, np.float64)[:468, :2]
        sim = fit_similarity(ref, self.portrait)  # Umeyama least squares, 2-D
        self.linear = sim.scale * sim.rotation
        self.reference = ref
        centre = self.portrait.mean(0)
        radius = np.linalg.norm(self.portrait - centre, axis=1).max() * RING_RADII
        a = np.linspace(0, 2 * np.pi, RING_POINTS, endpoint=False)
        ring = centre + radius * np.stack([np.cos(a), np.sin(a)], 1)
        ring = ring[(ring[:, 0] > 0) & (ring[:, 0] < w - 1) & (ring[:, 1] > 0) & (ring[:, 1] < h - 1)]
        t = np.linspace(0, 1, BORDER_POINTS, endpoint=False)
        border = np.concatenate([
            np.stack([t * (w - 1), np.zeros_like(t)], 1), np.stack([np.full_like(t, w - 1), t * (h - 1)], 1),
            np.stack([(1 - t) * (w - 1), np.full_like(t, h - 1)], 1), np.stack([np.zeros_like(t), (1 - t) * (h - 1)], 1),
        ])
        self.fixed = np.concatenate([ring, border])
        self.src = np.concatenate([self.portrait, self.fixed])
        self.tris = Delaunay(self.src).simplices.astype(np.int32)
        self.size = (w, h)

    def __call__(self, driver: np.ndarray | None, t: float = 0.0) -> np.ndarray:
        if driver is None:
            return self.image.copy()
        moved = self.portrait + (np.asarray(driver, np.float64)[:468, :2] - self.reference) @ self.linear.T
        dst = np.concatenate([moved, self.fixed])
        return warp_piecewise_affine(self.image, self.src, dst, self.tris)

    def close(self) -> None:
        pass


def warp_piecewise_affine(image: np.ndarray, src: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Backward warp: each pixel inside target triangle k samples the portrait through k's affine map.
    Later triangles overwrite earlier ones where the target mesh folds."""
    h, w = image.shape[:2]
    index = np.full((h, w), -1, np.int32)
    for k, tri in enumerate(tris):
        cv2.fillConvexPoly(index, np.round(dst[tri] * 16).astype(np.int32), int(k), lineType=cv2.LINE_8, shift=4)
    # Affine target -> source per triangle: [x_s, y_s] = A @ [x_t, y_t, 1].
    d = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], axis=2)  # (T, 3, 3)
    s = src[tris]  # (T, 3, 2)
    det = np.linalg.det(d)
    ok = np.abs(det) > 1e-9
    maps = np.zeros((len(tris), 3, 2))
    maps[ok] = np.linalg.solve(d[ok], s[ok])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    covered = index >= 0
    m = maps[index[covered]]
    map_x = xx.copy()
    map_y = yy.copy()
    map_x[covered] = xx[covered] * m[:, 0, 0] + yy[covered] * m[:, 1, 0] + m[:, 2, 0]
    map_y[covered] = xx[covered] * m[:, 0, 1] + yy[covered] * m[:, 1, 1] + m[:, 2, 1]
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def naive_factory(avatar, reference: np.ndarray, t0: float, size: int) -> NaiveWarp:
    """A MethodFactory for avatar_app.evaluate: the avatar's image at size x size (a square crop)."""
    image = avatar.image
    scale = size / image.shape[1]
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return NaiveWarp(image, np.asarray(avatar.landmarks)[:, :2] * scale, np.asarray(reference)[:, :2] * scale)
