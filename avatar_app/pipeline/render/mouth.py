"""The inside of a mouth the portrait never showed: a dark cavity, upper and lower teeth and a tongue.

A warp can only stretch what the portrait has; a closed mouth opened by warping smears the lips into the gap.
So where the target's inner lips open wider than the portrait's own, the gap is painted in colours taken from
the portrait (its lips and its brightest skin), so a dim painting gets dim teeth and a photo bright ones.

What opens it is the gap between the inner lips in the middle of the mouth, not the area between them: a
closed-lip smile stretches the lip contours apart at the corners without opening the mouth. Teeth need a gap
wider than a sliver (a thin white line across nearly closed lips looks wrong), the painting fades out towards
the corners, and its strength changes by at most a share per frame, so a one-frame jump of the tracked lips
does not flash teeth in and out.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face import landmarks as L

# Gap between the inner lips (middle of the mouth, in mouth widths) beyond the portrait's own at which the
# painting starts, and over which it fades in; the gap teeth need, and over which they fade in.
GAP_START = 0.025
GAP_FULL = 0.08
TEETH_GAP = 0.07
TEETH_FADE = 0.05
# Largest change of the painting's strength from one frame to the next (rising, falling).
RISE_PER_FRAME = 0.4
FALL_PER_FRAME = 0.3
TEETH_BASE = np.array([0.9, 0.95, 0.98])  # BGR, a warm off-white relative to the brightest skin
TEETH_TINT = 0.45  # share of the teeth's colour that is the skin's own tint
# The band (mouth widths) inside the inner lip line over which the painting fades in: no drawn edge where the
# warped lips meet it (a hard polygon edge read as a dark outline round a sticker).
EDGE_FEATHER = 0.06


def _polygon(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[L.LIP_INNER_UPPER], points[L.LIP_INNER_LOWER][1:-1][::-1]])


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def mouth_frame(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """The mouth's own axes: its left corner, its width, the unit vector along it and the one towards the chin."""
    left, right = points[L.MOUTH_CORNERS[0], :2], points[L.MOUTH_CORNERS[1], :2]
    width = max(float(np.linalg.norm(right - left)), 1e-3)
    ax = (right - left) / width
    nrm = np.array([-ax[1], ax[0]])
    if nrm @ (points[L.CHIN, :2] - left) < 0:
        nrm = -nrm
    return left, width, ax, nrm


def central_gap(points: np.ndarray) -> float:
    """Gap between the inner lips over the middle third of the mouth, in mouth widths (0 when closed)."""
    _, width, _, nrm = mouth_frame(points)
    mid = slice(3, 8)
    gap = (points[L.LIP_INNER_LOWER[mid], :2] - points[L.LIP_INNER_UPPER[mid], :2]) @ nrm
    return float(max(gap.max(), 0.0) / width)


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip area over squared mouth width: 0 for a closed mouth, ~0.1-0.3 for a wide-open one."""
    width = np.linalg.norm(points[L.MOUTH_CORNERS[1], :2] - points[L.MOUTH_CORNERS[0], :2])
    return _area(_polygon(points[:, :2])) / max(width**2, 1e-6)


class MouthPainter:
    def __init__(self, image: np.ndarray, points: np.ndarray, face_scale: float):
        """image and points (478 x 2) at output resolution."""
        h, w = image.shape[:2]
        pts = np.round(points[:, :2]).astype(np.int32)
        outer = np.concatenate([pts[L.LIP_OUTER_UPPER], pts[L.LIP_OUTER_LOWER][1:-1][::-1]])
        lips = np.zeros((h, w), np.uint8)
        cv2.fillPoly(lips, [outer], 1)
        cv2.fillPoly(lips, [_polygon(pts)], 0)
        face = np.zeros((h, w), np.uint8)
        cv2.fillPoly(face, [pts[L.FACE_OVAL]], 1)
        img = image.astype(np.float32)
        lip_px = img[lips > 0] if lips.any() else img[face > 0]
        face_px = img[face > 0] if face.any() else img.reshape(-1, 3)
        self.lip = np.median(lip_px, 0)
        skin = np.median(face_px, 0)
        luma = face_px @ np.array([0.114, 0.587, 0.299])
        bright = float(np.percentile(luma, 97))
        tint = skin / max(float(skin @ np.array([0.114, 0.587, 0.299])), 1.0)
        # Teeth in the portrait's light: its brightest skin, nearly half of it in the skin's own tint (a warm
        # painting gets ivory teeth, not a bluish white).
        self.teeth = np.clip(bright * (1.0 - TEETH_TINT) * TEETH_BASE + bright * TEETH_TINT * tint * 0.92, 0, 255)
        self.cavity = self.lip * 0.22 + 3.0
        self.tongue = self.lip * 0.62
        self.own_gap = central_gap(points)
        self.strength = 0.0  # what the last frame showed

    def update(self, points: np.ndarray) -> float:
        """How strongly this frame's mouth is painted (0..1) for target points (478 x 2). Called once per frame,
        in order: the strength follows the mouth at a bounded rate."""
        lip_gap = central_gap(points)
        wanted = float(np.clip((lip_gap - self.own_gap - GAP_START) / GAP_FULL, 0.0, 1.0))
        self.strength = float(np.clip(wanted, self.strength - FALL_PER_FRAME, self.strength + RISE_PER_FRAME))
        return self.strength

    def draw(self, out: np.ndarray, points: np.ndarray, strength: float) -> None:
        """Paint the mouth's inside into out (in place) at ``strength`` for points (478 x 2) in out's pixels; at
        any resolution (the call's picture paints it at its own size, so the teeth are as sharp as the rest)."""
        if strength <= 0:
            return
        lip_gap = central_gap(points)
        teeth_share = float(np.clip((lip_gap - TEETH_GAP) / TEETH_FADE, 0.0, 1.0))
        poly = _polygon(points[:, :2])
        h, w = out.shape[:2]
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 3, [w, h])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        # Mouth frame: u along the corners (0..1), v across, towards the chin.
        left, width, ax, nrm = mouth_frame(points)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        qx, qy = xx - left[0], yy - left[1]
        u = (qx * ax[0] + qy * ax[1]) / width
        v = qx * nrm[0] + qy * nrm[1]

        def chain(idx):
            cu = (points[idx, :2] - left) @ ax / width
            cv = (points[idx, :2] - left) @ nrm
            order = np.argsort(cu)
            return np.interp(u, cu[order], cv[order])

        v_up, v_lo = chain(L.LIP_INNER_UPPER), chain(L.LIP_INNER_LOWER)
        gap = np.maximum(v_lo - v_up, 1e-3)
        depth = np.clip((v - v_up) / gap, 0, 1)  # 0 at the upper lip, 1 at the lower
        side = np.abs(u - 0.5) * 2  # 0 in the middle, 1 at the corners

        colour = np.empty(u.shape + (3,), np.float32)
        shade = 0.6 + 0.4 * np.abs(depth - 0.5) * 2
        colour[:] = self.cavity
        colour *= shade[..., None]

        max_gap = float(gap.max())
        tongue = np.clip((depth - 0.55) * 4, 0, 1) * np.clip(1.4 - side * 1.6, 0, 1) * np.clip(max_gap / width * 4 - 0.6, 0, 1)
        colour += tongue[..., None] * (self.tongue - colour)

        teeth_h = min(0.24 * width, 0.62 * max_gap)
        upper = np.clip((teeth_h - (v - v_up)) / 1.2, 0, 1) * np.clip((0.78 - side) / 0.12, 0, 1)
        low_h = min(0.12 * width, 0.33 * max_gap)
        lower = np.clip((low_h - (v_lo - v)) / 1.2, 0, 1) * np.clip((0.62 - side) / 0.12, 0, 1)
        fall = (1.0 - 0.35 * side**2)[..., None]
        # Gaps between incisors: faint darker lines every ~1/12 of the mouth's width around the middle.
        phase = (u - 0.5) * 12
        gaps = 1.0 - 0.12 * np.exp(-((np.abs(phase - np.round(phase)) * width / 12 / 0.8) ** 2))
        edge = 1.0 - 0.25 * np.clip((v - v_up) / max(teeth_h, 1e-3), 0, 1) ** 3
        colour += (teeth_share * upper)[..., None] * (self.teeth * fall * (gaps * edge)[..., None] - colour)
        # The lower teeth lie behind the lower lip and under the tongue's shadow: dimmer and warmer than the upper.
        lower_colour = (0.65 * self.teeth * 0.8 + 0.35 * self.tongue) * fall
        colour += (teeth_share * lower)[..., None] * (lower_colour - colour)

        alpha = interior_alpha(poly - [x0, y0], (y1 - y0, x1 - x0), side, width, strength)[..., None]
        roi = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(roi + alpha * (colour - roi), 0, 255).astype(np.uint8)


def interior_alpha(poly: np.ndarray, shape: tuple[int, int], side: np.ndarray, width: float, strength: float) -> np.ndarray:
    """How much of a mouth's inside shows at each pixel of a box (shape: h, w) holding the inner lip polygon
    (``poly``, box pixels): 0 outside the line, rising over EDGE_FEATHER mouth widths inside it (the distance from
    the line, not a blur: nothing spills onto the lips, no drawn edge), and fading out towards the corners
    (``side``: 0 in the middle, 1 at a corner), where the lips meet at a sharp angle and keep the warp."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 255, cv2.LINE_8, shift=2)
    inside = np.clip(cv2.distanceTransform(mask, cv2.DIST_L2, 3) / max(EDGE_FEATHER * width, 2.0), 0.0, 1.0)
    return inside * np.clip((1.0 - side) / 0.3, 0.0, 1.0) * strength


class MouthOverlay:
    """This frame's painted mouth as an overlay (pipeline/render/base.py): points in working pixels."""

    def __init__(self, painter: MouthPainter, points: np.ndarray, strength: float):
        self.painter, self.points, self.strength = painter, np.asarray(points, np.float64)[:, :2], strength

    def draw(self, canvas: np.ndarray, to_canvas: np.ndarray) -> None:
        a = np.asarray(to_canvas, np.float64)
        self.painter.draw(canvas, self.points @ a[:, :2].T + a[:, 2], self.strength)
