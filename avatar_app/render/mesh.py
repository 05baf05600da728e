"""The mesh renderer: warps the whole portrait piecewise-affinely from its own landmarks to the target ones.

Per frame: the target mesh is built (face from the landmarks, control rings from the head's 2-D motion), any
triangle the motion would flip is relaxed until none does, the target mesh is rasterised into a coarse
backward displacement field (target pixel -> portrait pixel), which is upsampled and applied with one
cv2.remap; an opened mouth gets its inside painted (mouth.py). No weights, a few milliseconds on a CPU.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np
import scipy.sparse as sp

from avatar_app import landmarks as L
from avatar_app.render.base import RenderSettings, output_size
from avatar_app.render.mesh_layout import EYE, MOUTH, RING, SKIN, MeshLayout, signed_areas
from avatar_app.render.mouth import MouthPainter
from avatar_app.retarget import fit_similarity

# A target triangle may shrink to this share of its portrait area, never further (and never flip).
MIN_AREA_SHARE = 0.01
UNFOLD_ITERATIONS = 40
PARALLAX_ROUNDS = 30
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
        self._landmarks = avatar.landmarks.astype(np.float64)
        self._n_face = len(avatar.landmarks)
        src_area = signed_areas(self._src, self._tris)
        face_scale = np.ptp(self._src[L.FACE_OVAL], axis=0).max()
        # Only triangles that face the viewer in the portrait are kept from flipping: slivers (closed lips and
        # lids) have no orientation worth keeping, and triangles the portrait's own projection already folds
        # (the far cheek of a three-quarter view) may unfold as the head turns towards the camera.
        corners = self._src[self._tris]
        longest = np.max(np.sum((corners - np.roll(corners, 1, axis=1)) ** 2, axis=2), axis=1)
        tiny = np.abs(src_area) < 0.01 * longest + 1e-9
        groups = mesh.groups
        # The mouth's inside is painted over when open and a sliver when closed; the eyes' insides follow the
        # iris placed by gaze and close to slivers in a blink: neither is worth pulling the face back for.
        inside = (groups == EYE) | (groups == MOUTH)
        self._src_sign = np.where(tiny | inside | (src_area < 0), 0.0, 1.0)
        self._min_area = MIN_AREA_SHARE * np.abs(src_area)
        self._flip_buf = np.zeros(len(self._tris), np.bool_)
        self._anchor = mesh.anchor
        self._anchored = np.flatnonzero(mesh.anchor >= 0)
        self._movable = self._follow > 0
        self._movable[: self._n_face] = True
        # Smoothing must not pull an upper lip towards the lower one (or lids together) across the mouth's or
        # eyes' inside: the neighbourhood used by _unfold() is the skin surface only.
        self._adjacency = _neighbour_average(self._tris[~inside], len(self._src))
        # Fine cells over the face and its first ring, coarse ones over the rest (which moves smoothly).
        self._step = max(1, int(round(face_scale / CELLS_ACROSS_FACE)))
        self._coarse_step = max(4 * self._step, int(round(max(w, h) / COARSE_CELLS)))
        self._near_face = (groups != RING) | (self._tris < self._n_face).any(axis=1)
        # Drawing order (later overwrites earlier): the rings, then the face far to near (where the portrait's
        # own projection folds, as beside the nose of a three-quarter view, the nearer surface is what the
        # portrait shows), the mouth's inside last.
        self._ring_tris = np.flatnonzero(groups == RING)
        self._face_tris = np.flatnonzero((groups == SKIN) | (groups == EYE))
        self._mouth_tris = np.flatnonzero(groups == MOUTH)
        # Depth of each mesh point's landmark (an iris disk point has its iris centre's) for that ordering.
        self._depth_source = np.where(mesh.anchor >= 0, mesh.anchor, np.arange(len(self._src)))
        self._rigid_src = self._src[L.RIGID]
        # The portrait's 3-D landmarks at output scale (depth scaled like x), for the pose of each target.
        self._scale3 = np.array([self._scale[0], self._scale[1], self._scale[0]])
        face3 = self._landmarks * self._scale3
        self._rigid3 = face3[L.RIGID]
        self._depth = face3[:, 2] - self._rigid3[:, 2].mean()
        self._mouth = MouthPainter(self._image, self._src[: self._n_face], face_scale)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._base = np.dstack([xx, yy])

    @property
    def output_size(self) -> tuple[int, int]:
        return self._size

    def close(self) -> None:
        self._image = None

    # ----------------------------------------------------------------------------------------------------
    def target_mesh(self, target: np.ndarray) -> np.ndarray:
        """Positions of every mesh point (output pixels) for target landmarks in portrait pixels.

        A turned head projects its far cheek (and the far side of the nose) over itself. Rather than fold,
        the points of folding triangles give up part of their depth parallax, a little more each round and
        spread softly to their neighbours, until the turn flips nothing: the far side compresses, the rest
        keeps its full 3-D turn. What still flips (a mouth pressed thinner than the portrait's lips allow) is
        smoothed towards the head's rigid motion by _unfold().
        """
        face = np.asarray(target, np.float64) * self._scale3
        dst, rigid = self._mesh_at(face[:, :2])
        bad = self.flipped(dst)
        if not bad.any():
            return dst
        pose = fit_similarity(self._rigid3, face[L.RIGID])
        # What each point's depth contributed to its image position under this rotation.
        parallax = pose.scale * self._depth[:, None] * pose.rotation[:2, 2]
        if np.abs(parallax).max() > 0.05:
            base = dst[: self._n_face].copy()
            flat = dst.copy()
            flat[: self._n_face] -= parallax
            not_the_turn = self.flipped(flat)  # flips a flat face would have too: expression, not the turn
            share = np.ones(len(self._src))
            for _ in range(PARALLAX_ROUNDS):
                bad = self.flipped(dst) & ~not_the_turn
                if not bad.any():
                    break
                share[np.unique(self._tris[bad])] *= 0.6
                share = np.minimum(share, 0.5 * (share + self._adjacency @ share))
                dst[: self._n_face] = base - (1.0 - share[: self._n_face, None]) * parallax
            a = self._anchored
            dst[a] = self._src[a] + dst[self._anchor[a]] - self._src[self._anchor[a]]
        self._unfold(dst, rigid)
        return dst

    def _mesh_at(self, face_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The whole mesh for these face positions (control rings follow the head's 2-D motion), and where
        every point would be under that head motion alone."""
        head = fit_similarity(self._rigid_src, face_xy[L.RIGID])
        ctrl = self._src[self._n_face :]
        dst = np.empty_like(self._src)
        dst[: self._n_face] = face_xy
        dst[self._n_face :] = ctrl + self._follow[self._n_face :, None] * (head.apply(ctrl) - ctrl)
        a = self._anchored
        dst[a] = self._src[a] + face_xy[self._anchor[a]] - self._src[self._anchor[a]]  # iris disks
        rigid = dst.copy()
        rigid[: self._n_face] = head.apply(self._src[: self._n_face])
        return dst, rigid

    def flipped(self, dst: np.ndarray) -> np.ndarray:
        """Triangles whose orientation the target mesh reverses (or shrinks below the allowed share)."""
        out = np.zeros(len(self._tris), np.bool_)
        _flipped(dst, self._tris, self._src_sign, self._min_area, out)
        return out

    def _count_flipped(self, dst: np.ndarray) -> int:
        return int(_flipped(dst, self._tris, self._src_sign, self._min_area, self._flip_buf))

    def _unfold(self, dst: np.ndarray, rigid: np.ndarray) -> None:
        """Smooth what the face does beyond the head's rigid motion, around what flips, until nothing does.

        A similarity never folds a triangle, so the head keeps its pose and only the expression around the
        fold is softened. Should that not be enough (control rings squeezed by a large move), the motion
        around the fold is taken back towards the portrait, which never flips.
        """
        a = self._adjacency
        left = _relax(dst, rigid, self._tris, self._src_sign, self._min_area, a.indptr, a.indices,
                      self._movable, UNFOLD_ITERATIONS)
        for anchor in (rigid, self._src):
            for _ in range(UNFOLD_ITERATIONS):
                if not left:
                    return
                verts = np.unique(self._tris[self.flipped(dst)])
                dst[verts] = anchor[verts] + 0.5 * (dst[verts] - anchor[verts])
                left = self._count_flipped(dst)
        dst[:] = self._src

    # ----------------------------------------------------------------------------------------------------
    def render(self, target: np.ndarray) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("prepare() first")
        dst = self.target_mesh(target)
        out = self._warp(dst, np.asarray(target)[:, 2])
        self._mouth.paint(out, dst[: self._n_face])
        return out

    def _warp(self, dst: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Backward-warp the portrait: a coarse displacement field over all that moves, a fine one over the
        face and its first ring (where detail lives). Fine cells start from the coarse field's values, so a
        cell no fine triangle covers still moves with its surroundings and the two join without a seam."""
        moving = np.abs(dst - self._src).max(1) > 1e-3
        vertex_depth = np.append(depth, 0.0)[np.minimum(self._depth_source, len(depth))]
        face_depth = vertex_depth[self._tris[self._face_tris]].sum(1)
        order = np.concatenate([self._ring_tris, self._face_tris[np.argsort(-face_depth)], self._mouth_tris])
        order = order[moving[self._tris[order]].any(1)]
        if len(order) == 0:
            return self._image.copy()
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
        out = self._image.copy()
        out[y0:y1, x0:x1] = cv2.remap(
            self._image, field, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return out

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


def _neighbour_average(tris: np.ndarray, n: int) -> sp.csr_matrix:
    """Row-normalised vertex adjacency: (A @ points)[i] is the mean of vertex i's neighbours."""
    i = np.concatenate([tris[:, 0], tris[:, 1], tris[:, 2], tris[:, 1], tris[:, 2], tris[:, 0]])
    j = np.concatenate([tris[:, 1], tris[:, 2], tris[:, 0], tris[:, 0], tris[:, 1], tris[:, 2]])
    a = sp.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    a.data[:] = 1.0  # duplicates summed above; an edge counts once
    deg = np.asarray(a.sum(1)).ravel()
    deg[deg == 0] = 1
    return sp.diags(1.0 / deg) @ a


@numba.njit(cache=True, nogil=True)
def _flipped(dst, tris, src_sign, min_area, out):  # pragma: no cover - compiled
    """Mark (in out) and count the triangles whose signed area, in the portrait's orientation, fell below
    min_area (slivers in the portrait have src_sign 0 and are never counted)."""
    n = 0
    for t in range(tris.shape[0]):
        out[t] = False
        if src_sign[t] == 0:
            continue
        a, b, c = tris[t, 0], tris[t, 1], tris[t, 2]
        area = 0.5 * ((dst[b, 0] - dst[a, 0]) * (dst[c, 1] - dst[a, 1]) - (dst[c, 0] - dst[a, 0]) * (dst[b, 1] - dst[a, 1]))
        if area * src_sign[t] < min_area[t]:
            out[t] = True
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _relax(dst, rigid, tris, src_sign, min_area, indptr, indices, movable, iterations):  # pragma: no cover
    """Jacobi-smooth (dst - rigid) over a region that starts at the flipped triangles and grows by one ring
    of neighbours per iteration; returns how many triangles still flip."""
    n, nt = dst.shape[0], tris.shape[0]
    flags = np.zeros(nt, np.bool_)
    region = np.zeros(n, np.bool_)
    grown = np.zeros(n, np.bool_)
    res = np.empty((n, 2))
    for _ in range(iterations):
        if _flipped(dst, tris, src_sign, min_area, flags) == 0:
            return 0
        for t in range(nt):
            if flags[t]:
                region[tris[t, 0]] = True
                region[tris[t, 1]] = True
                region[tris[t, 2]] = True
        grown[:] = region
        for v in range(n):
            if region[v]:
                for k in range(indptr[v], indptr[v + 1]):
                    grown[indices[k]] = True
        region[:] = grown
        for v in range(n):
            res[v, 0] = dst[v, 0] - rigid[v, 0]
            res[v, 1] = dst[v, 1] - rigid[v, 1]
        for v in range(n):
            count = indptr[v + 1] - indptr[v]
            if region[v] and movable[v] and count > 0:
                sx = 0.0
                sy = 0.0
                for k in range(indptr[v], indptr[v + 1]):
                    sx += res[indices[k], 0]
                    sy += res[indices[k], 1]
                dst[v, 0] = rigid[v, 0] + 0.5 * (res[v, 0] + sx / count)
                dst[v, 1] = rigid[v, 1] + 0.5 * (res[v, 1] + sy / count)
    return _flipped(dst, tris, src_sign, min_area, flags)


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
