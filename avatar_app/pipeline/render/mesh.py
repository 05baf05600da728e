"""The mesh renderer: warps the portrait piecewise-affinely from its own landmarks to the target ones.

Per frame it works out a backward map (target pixel -> portrait pixel): over the face, the face mesh rasterised
exactly at the target landmarks; everywhere else one smooth field, continuous with the face's outline by
construction, so no seam can open where the face meets the hair (below). An opened mouth gets its inside
painted (mouth.py). The map and the mouth are a Drawing: the call's picture evaluates it once at the call's
size from the full-resolution portrait (avatar_app/call/); render() draws it at the working size. No weights.

Outside the face, a pixel p takes the portrait from
    p + w(p) * (H^-1(p) - p) + fade(rho) * r(b):
H is the head's rigid 2-D motion (a similarity of the rigid landmarks), so hair and the skull move with it
unstretched; w is 1 over the head and falls to 0 from the chin down to the shoulders (the body stays, the neck
stretches between) and beyond the widest hair; b is where the ray from the face's centre through p meets the target outline, r(b) what
the face mesh does there beyond that motion, interpolated along the outline edge exactly as the mesh
interpolates it, and fade (1 at the outline, 0 at FADE_RADII outline radii out) lets it die out. At the outline
the field equals the mesh, so the two join without a step; nothing is triangulated out there, so nothing folds.
What lies behind the person does not move at all: the call's picture lays the warped person (its mask moved by
the same map) over a still background.

A turned head folds its own projection (the far side of the nose, the far cheek): those triangles face away
from the camera. They are drawn first and the surface that faces the camera is drawn over them, far to near,
as a painter's-algorithm renderer would, so what shows is the near surface and the face stays exactly where
the target says.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import Similarity, fit_similarity
from avatar_app.face.mesh_layout import EYE, MOUTH, SKIN, MeshLayout, signed_areas
from avatar_app.pipeline.render.eyelids import CLOSING_FROM, EyelidOverlay, EyelidPainter
from avatar_app.pipeline.render.base import Drawing, RenderSettings, compose, output_size
from avatar_app.pipeline.render.mouth import MouthOverlay, MouthPainter
from avatar_app.pipeline.render.mouth_sources import DriverView, InteriorOverlay, MineMouth, NeuralMouth, mouth_source

# The fine displacement field (the face) has at least this many cells across the face.
CELLS_ACROSS_FACE = 128
# The smooth field outside the face: one cell per this share of the face's size.
OUTSIDE_CELLS_ACROSS_FACE = 10
# How far the face's own motion beyond the head's reaches out (outline radii), and the head's share w: 1 down
# to HEAD_TO below the chin, 0 from BODY_FROM (face heights) down.
FADE_RADII = 0.6
MAX_SQUEEZE = 0.4  # the most the fading motion may compress or stretch what lies beside the face (share)
HEAD_TO, BODY_FROM = 0.0, 0.35
# ... and, sideways and above, 1 out to HEAD_REACH outline radii from the face's centre (the hair), 0 from
# HEAD_REACH + HEAD_FADE on. In the call's picture the room around the head is behind the person and shows the
# still background anyway; a plain render() (training's warps, the demo) has no such layer, so the scene a
# little way from the head must stay still there (as the rings of the mesh layout once made it, at 1.3 / 1.6).
HEAD_REACH, HEAD_FADE = 1.3, 0.35


class MeshRenderer:
    name = "mesh"

    def __init__(self) -> None:
        self._image: np.ndarray | None = None
        self.head_reach = HEAD_REACH

    def set_head_reach(self, radii: float) -> None:
        """How far (outline radii from the face's centre) the head and its hair reach: they move as one piece
        out to there. The call's picture knows it from the person mask (its hair lies over a still background
        that shows wherever the person is not); a plain render() keeps HEAD_REACH, so the scene around a head it
        draws stays still."""
        self.head_reach = float(max(HEAD_REACH, radii))

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
        # Fine cells over the face, one smooth coarse field outside it.
        self._step = max(1, int(round(face_scale / CELLS_ACROSS_FACE)))
        self._coarse_step = max(2, int(round(face_scale / OUTSIDE_CELLS_ACROSS_FACE)))
        # Triangle groups for the drawing order (draw_order()); the layout's control rings are not drawn.
        self._face_tris = np.flatnonzero((groups == SKIN) | (groups == EYE))
        self._mouth_tris = np.flatnonzero(groups == MOUTH)
        self._drawn = np.concatenate([self._face_tris, self._mouth_tris])
        # Depth of each mesh point's landmark (an iris disk point has its iris centre's) for that ordering.
        self._depth_source = np.where(mesh.anchor >= 0, mesh.anchor, np.arange(len(self._src)))
        self._rigid_src = self._src[L.RIGID]
        self._oval_src = self._src[L.FACE_OVAL]
        self._face_height = float(np.linalg.norm(self._src[L.CHIN] - self._src[L.FOREHEAD]))
        self._mouth = MouthPainter(self._image, self._src[: self._n_face], face_scale)
        self._interior = mouth_source(settings, self._image, self._src[: self._n_face])
        self._lids = EyelidPainter(self._image, self._src[: self._n_face])
        c = self._coarse_step
        gw, gh = -(-w // c), -(-h // c)
        gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float64)
        self._cells = np.stack([(gx + 0.5) * c - 0.5, (gy + 0.5) * c - 0.5], -1).reshape(-1, 2)
        self._cells_shape = (gh, gw)

    @property
    def output_size(self) -> tuple[int, int]:
        return self._size

    @property
    def image(self) -> np.ndarray:
        """The portrait at the working size (what render() warps)."""
        return self._image

    def close(self) -> None:
        self._image = None

    # ----------------------------------------------------------------------------------------------------
    def target_mesh(self, target: np.ndarray) -> np.ndarray:
        """Positions of the drawn mesh points (output pixels) for target landmarks in portrait pixels: the face
        exactly at the landmarks, each iris disk with its iris (smaller as its eye closes); the layout's control
        rings stay where they are (nothing outside the face is triangulated). Folds are left to draw_order()."""
        face_xy = np.asarray(target, np.float64)[:, :2] * self._scale
        head = fit_similarity(self._rigid_src, face_xy[L.RIGID])
        dst = self._src.copy()
        dst[: self._n_face] = face_xy
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
        """Triangles in the order they are drawn: face triangles facing away, face triangles facing the camera far
        to near, the mouth's inside. ``depth``: the target landmarks' z (larger = farther)."""
        t = self._tris[self._face_tris]
        away = self.facing_away(dst)
        vertex_depth = np.append(depth, 0.0)[np.minimum(self._depth_source, len(depth))]
        face_depth = vertex_depth[t].sum(1)
        front = np.flatnonzero(~away)
        front = front[np.argsort(-face_depth[front], kind="stable")]
        return np.concatenate([self._face_tris[away], self._face_tris[front], self._mouth_tris])

    # ----------------------------------------------------------------------------------------------------
    def render(self, target: np.ndarray, driver: DriverView | None = None) -> np.ndarray:
        return compose(self._image, self.draw(target, driver))

    def draw(self, target: np.ndarray, driver: DriverView | None = None) -> Drawing:
        if self._image is None:
            raise RuntimeError("prepare() first")
        target = np.asarray(target)
        dst = self.target_mesh(target)
        box, reach, far = self._backward_map(dst, target[:, 2])
        face = dst[: self._n_face]
        strength = self._mouth.update(face)
        overlays = [self._mouth_overlay(face, strength, driver)] if strength > 0 else []
        closure = self._lids.closure(face)
        if closure.max() > CLOSING_FROM:
            overlays.append(EyelidOverlay(self._lids, face, closure))
        return Drawing(self._size, box, reach, overlays, far)

    def _mouth_overlay(self, face: np.ndarray, strength: float, driver: DriverView | None):
        """The opened mouth's inside from the chosen source; the painted one where that source has none."""
        patch = self._interior.interior(driver, face) if self._interior is not None else None
        if patch is None:
            return MouthOverlay(self._mouth, face, strength)
        return InteriorOverlay(patch, face, strength)

    @property
    def mouth_source(self) -> str:
        """Which source draws the opened mouth: painted, mine or neural."""
        return {MineMouth: "mine", NeuralMouth: "neural"}.get(type(self._interior), "painted")

    def head_motion(self, dst: np.ndarray) -> Similarity:
        """The head's rigid 2-D motion (output pixels, portrait -> target) for a target mesh."""
        return fit_similarity(self._rigid_src, dst[L.RIGID])

    def outside_map(self, dst: np.ndarray, points: np.ndarray, head: Similarity | None = None) -> np.ndarray:
        """Where each of ``points`` (N x 2, target output pixels) outside the face takes the portrait from (N x 2):
        the smooth field of the module's docstring, equal to the face mesh on the target outline. ``head``: the
        head's motion for this target mesh, when the caller has fitted it already."""
        head = head or self.head_motion(dst)
        down = head.rotation @ np.array([0.0, 1.0])
        oval_t = dst[L.FACE_OVAL]
        centre = oval_t.mean(0)
        radius = max(float(np.sqrt(np.mean(np.sum((oval_t - centre) ** 2, 1)))), 1.0)
        ang = np.arctan2(oval_t[:, 1] - centre[1], oval_t[:, 0] - centre[0])
        order = np.argsort(ang, kind="stable")
        # One compiled pass over the points (it was ~20 numpy calls over all of them, twice a frame: a third of
        # the renderer's time, holding the GIL the tracker's thread waits on between them).
        return _outside_field(
            np.ascontiguousarray(points, np.float64), ang[order], np.ascontiguousarray(oval_t[order], np.float64),
            np.ascontiguousarray(self._oval_src[order], np.float64), centre, radius,
            np.asarray(head.translation, np.float64), np.ascontiguousarray(head.rotation, np.float64),
            1.0 / head.scale, np.asarray(dst[L.CHIN], np.float64), down,
            max(self._face_height * head.scale, 1.0), float(self.head_reach))

    def _backward_map(self, dst: np.ndarray, depth: np.ndarray):
        """How far each output pixel reaches into the portrait: (the box of all that moves (x0, y0, x1, y1), the
        reach over the whole picture (h x w x 2), the longest reach), or (None, None, 0) when nothing moves. The
        smooth outside field on a coarse grid over the whole picture, the face mesh rasterised over it on a fine
        one (cells no face triangle covers keep the outside field's values, so the two join without a seam)."""
        if np.abs(dst[: self._n_face] - self._src[: self._n_face]).max() <= 1e-3:
            return None, None, 0.0
        w, h = self._size
        c = self._coarse_step
        gh, gw = self._cells_shape
        head = self.head_motion(dst)
        cells = (self.outside_map(dst, self._cells, head) - self._cells).reshape(gh, gw, 2).astype(np.float32)
        field = cv2.resize(cells, (gw * c, gh * c), interpolation=cv2.INTER_LINEAR)[:h, :w]
        order = self.draw_order(dst, depth)
        s = self._step
        (fx0, fy0, fx1, fy1), flo = self._box(dst, order, s)
        # Around the face the outside field is worked out on a grid of 2 fine cells (a coarse cell straddling
        # the outline would blend the field inside the face into the hair just outside it: a small step there),
        # then the face's own triangles are drawn over it.
        # Only a band of cells along the outline needs it: inside, the face is drawn over; further out, the
        # coarse field's interpolation is exact enough (the field is smooth there).
        m = 2 * s
        gw_m, gh_m = (fx1 - fx0) // m + 1, (fy1 - fy0) // m + 1
        near = self._near_cells(fx0, fy0, fx1, fy1, m)
        iy = np.clip(np.round(near[:, 1]).astype(int), 0, h - 1)
        ix = np.clip(np.round(near[:, 0]).astype(int), 0, w - 1)
        start = field[iy, ix].copy()
        outline = np.round((dst[L.FACE_OVAL] - [fx0 - 0.5 + m / 2, fy0 - 0.5 + m / 2]) / m * 4).astype(np.int32)
        inside = np.zeros((gh_m, gw_m), np.uint8)
        cv2.fillPoly(inside, [outline], 1, shift=2)
        kernel = np.ones((5, 5), np.uint8)
        band = np.flatnonzero((cv2.dilate(inside, kernel) > 0).ravel() & (cv2.erode(inside, kernel) == 0).ravel())
        start[band] = self.outside_map(dst, near[band], head) - near[band]
        start = start.astype(np.float32).reshape(gh_m, gw_m, 2)
        gh_f, gw_f = (fy1 - fy0) // s, (fx1 - fx0) // s
        fine = np.ascontiguousarray(cv2.resize(start, (start.shape[1] * 2, start.shape[0] * 2),
                                               interpolation=cv2.INTER_LINEAR)[:gh_f, :gw_f])
        fine = self._field(dst, order, s, flo, fine)
        fh, fw = min(fine.shape[0], h - fy0), min(fine.shape[1], w - fx0)
        field[fy0 : fy0 + fh, fx0 : fx0 + fw] = fine[:fh, :fw]
        # Only the part that moves is remapped (the rest of the picture is the portrait itself).
        still = np.abs(cells).max(2) < 0.01
        rows, cols = np.flatnonzero(~still.all(1)), np.flatnonzero(~still.all(0))
        y0, y1, x0, x1 = fy0, min(fy1, h), fx0, min(fx1, w)  # at least the face (an eye alone may move)
        if len(rows):
            y0, y1 = min(rows[0] * c, y0), min(max((rows[-1] + 1) * c, y1), h)
            x0, x1 = min(cols[0] * c, x0), min(max((cols[-1] + 1) * c, x1), w)
        far = max(float(np.abs(cells).max()), float(np.abs(fine).max()) if fine.size else 0.0)
        return (int(x0), int(y0), int(x1), int(y1)), field, far

    def _near_cells(self, x0: int, y0: int, x1: int, y1: int, m: int) -> np.ndarray:
        """Centres (output px) of the cells of side m covering the box from (x0, y0), one more each way."""
        gw, gh = (x1 - x0) // m + 1, (y1 - y0) // m + 1
        gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float64)
        return np.stack([x0 + (gx + 0.5) * m - 0.5, y0 + (gy + 0.5) * m - 0.5], -1).reshape(-1, 2)

    def _box(self, dst: np.ndarray, tris: np.ndarray, step: int):
        """The pixel box (x0, y0, x1, y1) on a grid of `step` that these triangles cover before and after the
        move, and its first cell; clipped to the image."""
        w, h = self._size
        x_lo, y_lo, x_hi, y_hi = _bounds(dst, self._src, self._tris, tris)
        lo = np.maximum(np.floor(np.array([x_lo, y_lo]) / step).astype(int) - 1, 0)
        hi = np.minimum(np.ceil(np.array([x_hi, y_hi]) / step).astype(int) + 1, [-(-w // step), -(-h // step)])
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


@numba.njit(cache=True, nogil=True)
def _smoothstep(x):  # pragma: no cover - compiled
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


@numba.njit(cache=True, nogil=True)
def _moved_back(qx, qy, chin, down, face_h, centre, radius, head_reach, translation, rot,
                inv_scale):  # pragma: no cover - compiled
    """A point moved back by the head's motion in proportion to its share of the head (not the body)."""
    v = ((qx - chin[0]) * down[0] + (qy - chin[1]) * down[1]) / face_h
    r = np.sqrt((qx - centre[0]) ** 2 + (qy - centre[1]) ** 2) / radius
    w = (1.0 - _smoothstep((v - HEAD_TO) / (BODY_FROM - HEAD_TO))) * (1.0 - _smoothstep((r - head_reach) / HEAD_FADE))
    tx, ty = qx - translation[0], qy - translation[1]
    backx = (tx * rot[0, 0] + ty * rot[1, 0]) * inv_scale  # (q - translation) @ rot / scale
    backy = (tx * rot[0, 1] + ty * rot[1, 1]) * inv_scale
    return qx + w * (backx - qx), qy + w * (backy - qy)


@numba.njit(cache=True, nogil=True)
def _outside_field(points, ang, ot, os_, centre, radius, translation, rot, inv_scale, chin, down, face_h,
                   head_reach):  # pragma: no cover - compiled
    """MeshRenderer.outside_map per point: ``ang``, ``ot``, ``os_`` are the outline's angles about ``centre`` (sorted),
    its target points and where the mesh takes them from; the head's motion is ``rot``, 1 / ``inv_scale`` and
    ``translation``."""
    n, m = points.shape[0], ang.shape[0]
    out = np.empty((n, 2))
    for i in range(n):
        px, py = points[i, 0], points[i, 1]
        rx, ry = px - centre[0], py - centre[1]
        theta = np.arctan2(ry, rx)
        k = np.searchsorted(ang, theta, side="right") - 1
        k = k % m
        k1 = (k + 1) % m
        ax, ay = ot[k, 0] - centre[0], ot[k, 1] - centre[1]
        dx, dy = ot[k1, 0] - ot[k, 0], ot[k1, 1] - ot[k, 1]
        dist = np.sqrt(rx * rx + ry * ry)
        ux, uy = rx / max(dist, 1e-9), ry / max(dist, 1e-9)
        den = ux * dy - uy * dx
        if abs(den) < 1e-9:
            den = 1e-9
        lam = min(max((ax * uy - ay * ux) / den, 0.0), 1.0)
        ex, ey = centre[0] + ax + lam * dx, centre[1] + ay + lam * dy  # where the ray meets the outline
        sx = os_[k, 0] + lam * (os_[k1, 0] - os_[k, 0])  # where the mesh takes that point from
        sy = os_[k, 1] + lam * (os_[k1, 1] - os_[k, 1])
        basex, basey = _moved_back(ex, ey, chin, down, face_h, centre, radius, head_reach, translation, rot,
                                   inv_scale)
        resx, resy = sx - basex, sy - basey  # the face's own motion on the outline, beyond the head's
        basex, basey = _moved_back(px, py, chin, down, face_h, centre, radius, head_reach, translation, rot,
                                   inv_scale)
        edge_r = max(np.sqrt((ex - centre[0]) ** 2 + (ey - centre[1]) ** 2), 1e-6)
        rho = dist / edge_r - 1.0
        # The face's own motion dies out over at least FADE_RADII, further where it is large (a turned head
        # compresses one side of the face by a fifth of its width): so the hair beside it is never squeezed to
        # less than ~60 % of its width, or stretched as much, which would streak it.
        reach = max(FADE_RADII, np.sqrt(resx * resx + resy * resy) / edge_r / MAX_SQUEEZE)
        fade = 1.0 - _smoothstep(rho / reach)
        out[i, 0] = basex + fade * resx
        out[i, 1] = basey + fade * resy
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
