"""The mesh renderer: warps the whole portrait piecewise-affinely from its own landmarks to the target ones.

Per frame: the target mesh is built (the face exactly at the target landmarks, control rings from the head's
2-D motion), rasterised into a backward displacement field (target pixel -> portrait pixel) and applied with
one cv2.remap; an opened mouth gets its inside painted (mouth.py). No weights, a few milliseconds on a CPU.

A turned head folds its own projection (the far side of the nose, the far cheek): those triangles face away
from the camera. They are drawn first and the surface that faces the camera is drawn over them, far to near,
as a painter's-algorithm renderer would, so what shows is the near surface and the face stays exactly where
the target says. (An earlier design moved the points instead until nothing folded; on real clips that
flattened every turn towards the portrait's own pose and pinned the head.)
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import fit_similarity
from avatar_app.face.mesh_layout import EYE, MOUTH, RING, SKIN, MeshLayout, signed_areas
from avatar_app.pipeline.render.base import RenderSettings, output_size
from avatar_app.pipeline.render.mouth import MouthPainter

# The coarse displacement field has at least this many cells across the face.
CELLS_ACROSS_FACE = 128
# ... and the coarse one this many across the image's longer side.
COARSE_CELLS = 64


class MeshRenderer:
    name = "mesh"

    def __init__(self) -> None:
        self._image: np.ndarray | None = None

    # ----------------------------------------------------------------------------------------------------
    def prepare(self, avatar, settings: RenderSettings = RenderSettings()) -> None:
        h0, w0 = avatar.image.shape[:2]
        self._size = output_size((w0, h0), settings.size)
        w, h = self._size
        self._scale = np.array([w / w0, h / h0])
        interp = cv2.INTER_AREA if w < w0 else cv2.INTER_CUBIC
        self._image = cv2.resize(avatar.image, (w, h), interpolation=interp)
        mesh: MeshLayout = avatar.mesh
        self._tris = mesh.triangles
        self._src = mesh.points.astype(np.float64) * self._scale
        self._follow = mesh.follow.astype(np.float64)
        self._n_face = len(avatar.landmarks)
        face_scale = np.ptp(self._src[L.FACE_OVAL], axis=0).max()
        groups = mesh.groups
        # Slivers (closed lips and lids) have no orientation worth judging: they count as facing the camera.
        src_area = signed_areas(self._src, self._tris)
        corners = self._src[self._tris]
        longest = np.max(np.sum((corners - np.roll(corners, 1, axis=1)) ** 2, axis=2), axis=1)
        self._sliver = np.abs(src_area) < 0.01 * longest + 1e-9
        self._anchor = mesh.anchor
        self._anchored = np.flatnonzero(mesh.anchor >= 0)
        # Iris disks shrink as their eye closes (a rigid iris would poke out of a shut eye): the portrait's own
        # opening at each iris, the lid points above and below it.
        self._lid_mid = [(L.EYE_UPPER[e][4], L.EYE_LOWER[e][4]) for e in (0, 1)]
        self._own_gap = [max(float(np.linalg.norm(self._src[lo] - self._src[up])), 1e-3) for up, lo in self._lid_mid]
        self._disk_eye = np.array([0 if a == L.IRIS_CENTER[0] else 1 for a in mesh.anchor[self._anchored]], np.int64)
        # Fine cells over the face and its first ring, coarse ones over the rest (which moves smoothly).
        self._step = max(1, int(round(face_scale / CELLS_ACROSS_FACE)))
        self._coarse_step = max(4 * self._step, int(round(max(w, h) / COARSE_CELLS)))
        self._near_face = (groups != RING) | (self._tris < self._n_face).any(axis=1)
        # Triangle groups for the drawing order (draw_order()).
        self._ring_tris = np.flatnonzero(groups == RING)
        self._face_tris = np.flatnonzero((groups == SKIN) | (groups == EYE))
        self._mouth_tris = np.flatnonzero(groups == MOUTH)
        # Depth of each mesh point's landmark (an iris disk point has its iris centre's) for that ordering.
        self._depth_source = np.where(mesh.anchor >= 0, mesh.anchor, np.arange(len(self._src)))
        self._rigid_src = self._src[L.RIGID]
        # Each ring point sits on the ray of one face-outline point (build_mesh makes the rings as radial copies
        # of the outline, after the iris disks); it follows that point's motion, by its share.
        n_oval = len(L.FACE_OVAL)
        ring_start = self._n_face + len(self._anchored)
        self._ring_points = np.arange(ring_start, ring_start + 3 * n_oval)
        self._ring_share = self._follow[self._ring_points][:, None]
        self._mouth = MouthPainter(self._image, self._src[: self._n_face], face_scale)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._base = np.dstack([xx, yy])
        self._moved = (None, None)  # the last target rendered and its backward map (warp_like())

    @property
    def output_size(self) -> tuple[int, int]:
        return self._size

    def close(self) -> None:
        self._image = None
        self._moved = (None, None)

    # ----------------------------------------------------------------------------------------------------
    def target_mesh(self, target: np.ndarray) -> np.ndarray:
        """Positions of every mesh point (output pixels) for target landmarks in portrait pixels: the face
        exactly at the landmarks, the control rings following the head's 2-D motion, each iris disk with its
        iris (smaller as its eye closes). Folds are left to draw_order()."""
        face_xy = np.asarray(target, np.float64)[:, :2] * self._scale
        head = fit_similarity(self._rigid_src, face_xy[L.RIGID])
        dst = self._src.copy()
        dst[: self._n_face] = face_xy
        # The rings follow the head's rigid motion (hair turns and rolls with the skull) plus what the outline
        # next to them does beyond it (a turn compresses one side of the face and widens the other, which a
        # rigid ring would tear at the outline); both fade to none at the fixed ring. The first ring takes the
        # outline's own motion point for point, so the band between them moves as one and never folds (a
        # smoothed copy let raised brows push the forehead over the hair: a seam); the middle ring a smoothed
        # copy.
        oval = self._src[L.FACE_OVAL]
        extra = face_xy[L.FACE_OVAL] - head.apply(oval)
        smooth = (np.roll(extra, 2, 0) + 2 * np.roll(extra, 1, 0) + 3 * extra + 2 * np.roll(extra, -1, 0)
                  + np.roll(extra, -2, 0)) / 9.0
        ring = self._src[self._ring_points]
        dst[self._ring_points] = ring + self._ring_share * (head.apply(ring) - ring + np.concatenate([extra, smooth, smooth]))
        a = self._anchored
        if len(a):
            gap = np.array([np.linalg.norm(face_xy[lo] - face_xy[up]) / own
                            for (up, lo), own in zip(self._lid_mid, self._own_gap)])
            shrink = np.clip(gap, 0.0, 1.0)[self._disk_eye, None] * head.scale
            centre = self._anchor[a]
            dst[a] = face_xy[centre] + shrink * (self._src[a] - self._src[centre]) @ head.rotation.T
        return dst

    def facing_away(self, dst: np.ndarray) -> np.ndarray:
        """Per face triangle (self._face_tris): does the target mesh turn it away from the camera?"""
        area = signed_areas(dst, self._tris[self._face_tris])
        return (area < 0) & ~self._sliver[self._face_tris]

    def draw_order(self, dst: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Triangles in the order they are drawn: ring triangles facing away, the other ring triangles, face
        triangles facing away, face triangles facing the camera far to near, the mouth's inside. ``depth``: the
        target landmarks' z (larger = farther)."""
        t = self._tris[self._face_tris]
        away = self.facing_away(dst)
        vertex_depth = np.append(depth, 0.0)[np.minimum(self._depth_source, len(depth))]
        face_depth = vertex_depth[t].sum(1)
        front = np.flatnonzero(~away)
        front = front[np.argsort(-face_depth[front], kind="stable")]
        # A ring band folds where the head moves further than the room to the border allows: the folded part
        # goes under the part that still faces the camera, as on the face.
        ring_away = signed_areas(dst, self._tris[self._ring_tris]) < 0
        return np.concatenate([self._ring_tris[ring_away], self._ring_tris[~ring_away], self._face_tris[away],
                               self._face_tris[front], self._mouth_tris])

    # ----------------------------------------------------------------------------------------------------
    def render(self, target: np.ndarray) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("prepare() first")
        dst = self.target_mesh(target)
        moved = self._backward_map(dst, np.asarray(target)[:, 2])
        self._moved = (target, moved)
        out = _remap(self._image, moved)
        self._mouth.paint(out, dst[: self._n_face])
        return out

    def warp_like(self, channel: np.ndarray, target: np.ndarray) -> np.ndarray:
        """A single-channel image of the output's size (the avatar's person mask) moved as render(target) moved
        the portrait, so what rides on the hair and neck goes with them: the backward map render() made for this
        target, applied by one more remap (no second rasterisation; only a target other than the last one
        rendered has its map made again)."""
        if self._image is None:
            raise RuntimeError("prepare() first")
        if channel.shape[:2] != self._image.shape[:2]:
            raise ValueError(f"warp_like() takes an image of the output's size {self._size}, got {channel.shape[1::-1]}")
        last, moved = self._moved
        if target is not last:
            moved = self._backward_map(self.target_mesh(target), np.asarray(target)[:, 2])
        return _remap(channel, moved)

    def _backward_map(self, dst: np.ndarray, depth: np.ndarray):
        """Where each output pixel takes the portrait from, over the box of all that moves: ((x0, y0, x1, y1),
        an (y1 - y0) x (x1 - x0) x 2 map of portrait positions), or None when nothing moves. A coarse
        displacement field over all that moves, a fine one over the face and its first ring (where detail
        lives). Fine cells start from the coarse field's values, so a cell no fine triangle covers still moves
        with its surroundings and the two join without a seam."""
        moving = np.abs(dst - self._src).max(1) > 1e-3
        order = self.draw_order(dst, depth)
        order = order[moving[self._tris[order]].any(1)]
        if len(order) == 0:
            return None
        c = self._coarse_step
        (x0, y0, x1, y1), lo = self._box(dst, order, c)
        cells = np.zeros(((y1 - y0) // c, (x1 - x0) // c, 2), np.float32)
        field = self._field(dst, order, c, lo, cells)
        fine_tris = order[self._near_face[order]]
        if len(fine_tris):
            s = self._step
            (fx0, fy0, fx1, fy1), flo = self._box(dst, fine_tris, s, within=(x0, y0, x1, y1))
            # Each fine cell starts as the coarse field at its centre pixel.
            start = field[fy0 - y0 + s // 2 : fy1 - y0 : s, fx0 - x0 + s // 2 : fx1 - x0 : s]
            fine = self._field(dst, fine_tris, s, flo, np.ascontiguousarray(start))
            field[fy0 - y0 : fy0 - y0 + fine.shape[0], fx0 - x0 : fx0 - x0 + fine.shape[1]] = fine
        field += self._base[y0:y1, x0:x1]
        return (x0, y0, x1, y1), field

    def _box(self, dst: np.ndarray, tris: np.ndarray, step: int, within=None):
        """The pixel box (x0, y0, x1, y1) on a grid of `step` that these triangles cover before and after the
        move, and its first cell; clipped to the image, and to `within` (a box on a coarser grid)."""
        w, h = self._size
        x_lo, y_lo, x_hi, y_hi = _bounds(dst, self._src, self._tris, tris)
        lo = np.maximum(np.floor(np.array([x_lo, y_lo]) / step).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(np.array([x_hi, y_hi]) / step).astype(int) + 1, [w // step, h // step])
        if within is not None:
            lo = np.maximum(lo, -(-np.array(within[:2]) // step))
            hi = np.minimum(hi, np.array(within[2:]) // step)
        hi = np.maximum(hi, lo + 1)
        return (lo[0] * step, lo[1] * step, hi[0] * step, hi[1] * step), lo

    def _field(self, dst: np.ndarray, tris: np.ndarray, step: int, lo: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Rasterise these triangles' displacement into `cells` (a grid of `step` px from cell `lo`,
        pre-filled with what uncovered cells keep) and upsample it to one value per pixel."""
        x0, y0 = lo * step
        _rasterise_displacement(cells, dst, self._src, self._tris[tris], float(x0), float(y0), step)
        if step == 1:
            return cells
        gh, gw = cells.shape[:2]
        return cv2.resize(cells, (gw * step, gh * step), interpolation=cv2.INTER_LINEAR)


def _remap(image: np.ndarray, moved) -> np.ndarray:
    """A copy of ``image`` (the portrait, or one channel of its size) warped by a backward map (None: unmoved)."""
    out = image.copy()
    if moved is not None:
        (x0, y0, x1, y1), field = moved
        out[y0:y1, x0:x1] = cv2.remap(image, field, None, interpolation=cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
    return out


@numba.njit(cache=True, nogil=True)
def _bounds(a, b, tris, which):  # pragma: no cover - compiled
    """Bounding box (x0, y0, x1, y1) of the chosen triangles in both point sets."""
    x0 = y0 = np.inf
    x1 = y1 = -np.inf
    for t in which:
        for j in range(3):
            v = tris[t, j]
            for p in (a, b):
                x0 = min(x0, p[v, 0])
                y0 = min(y0, p[v, 1])
                x1 = max(x1, p[v, 0])
                y1 = max(y1, p[v, 1])
    return x0, y0, x1, y1


@numba.njit(cache=True, nogil=True)
def _rasterise_displacement(disp, dst, src, tris, ox, oy, step):  # pragma: no cover - compiled
    """For every grid cell centre inside a target triangle: (portrait position - cell position).

    Cell (i, j) has its centre at pixel (ox + (j + 0.5) * step - 0.5, oy + (i + 0.5) * step - 0.5), the
    alignment cv2.resize uses, so the grid upsamples to pixels exactly. Later triangles overwrite earlier ones.
    """
    gh, gw = disp.shape[0], disp.shape[1]
    eps = -1e-6
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        ax = (dst[i0, 0] - ox + 0.5) / step - 0.5
        ay = (dst[i0, 1] - oy + 0.5) / step - 0.5
        bx = (dst[i1, 0] - ox + 0.5) / step - 0.5
        by = (dst[i1, 1] - oy + 0.5) / step - 0.5
        cx = (dst[i2, 0] - ox + 0.5) / step - 0.5
        cy = (dst[i2, 1] - oy + 0.5) / step - 0.5
        v0x, v0y, v1x, v1y = bx - ax, by - ay, cx - ax, cy - ay
        den = v0x * v1y - v1x * v0y
        if abs(den) < 1e-12:
            continue
        inv = 1.0 / den
        x_lo = max(int(np.ceil(min(ax, bx, cx))), 0)
        x_hi = min(int(np.floor(max(ax, bx, cx))), gw - 1)
        y_lo = max(int(np.ceil(min(ay, by, cy))), 0)
        y_hi = min(int(np.floor(max(ay, by, cy))), gh - 1)
        s0x, s0y = src[i0, 0], src[i0, 1]
        e1x, e1y = src[i1, 0] - s0x, src[i1, 1] - s0y
        e2x, e2y = src[i2, 0] - s0x, src[i2, 1] - s0y
        for py in range(y_lo, y_hi + 1):
            qy = py - ay
            for px in range(x_lo, x_hi + 1):
                qx = px - ax
                l1 = (qx * v1y - v1x * qy) * inv
                l2 = (v0x * qy - qx * v0y) * inv
                if l1 >= eps and l2 >= eps and 1.0 - l1 - l2 >= eps:
                    disp[py, px, 0] = s0x + l1 * e1x + l2 * e2x - (ox + (px + 0.5) * step - 0.5)
                    disp[py, px, 1] = s0y + l1 * e1y + l2 * e2y - (oy + (py + 0.5) * step - 0.5)
