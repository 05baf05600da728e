"""The skin of a closing eyelid, which a warp cannot draw.

A warp closes an eye by pulling the band between the upper lid and the brow down over it. On a portrait whose
tracked lid line sits a little inside the visible lid (common on paintings) that band holds the top of the
eyeball, so a shut eye shows a grey smear of iris. So where the upper lid has swept down, the picture keeps
the warp's own fine texture (paint cracks, skin grain) but takes its colour from the portrait's own lid skin,
and a lash line in the portrait's own lash colour marks where the lids meet.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face import landmarks as L

CLOSING_FROM = 0.15  # closure (1 - the opening's share of the portrait's own) at which the lid is painted
CLOSING_FULL = 0.6  # ... fully
DETAIL = 0.8  # how much of the warp's fine texture the painted lid keeps
# ... up to this many grey levels either way: skin grain and paint cracks are within it, the edge of the white of
# the eye swept under the lid is not (kept whole, a shut eye showed a white crescent on the Girl).
DETAIL_MAX = 12.0


def _openings(points: np.ndarray, eye: int) -> np.ndarray:
    return np.linalg.norm(points[L.EYE_LOWER[eye][1:-1], :2] - points[L.EYE_UPPER[eye][1:-1], :2], axis=1)


def _eye_width(points: np.ndarray, eye: int) -> float:
    return max(float(np.linalg.norm(points[L.EYE_UPPER[eye][-1], :2] - points[L.EYE_UPPER[eye][0], :2])), 1e-3)


class EyelidPainter:
    """One portrait's lid colours (from the skin between each upper lid and its brow, and the lash line)."""

    def __init__(self, image: np.ndarray, points: np.ndarray):
        """image and points (478 x 2+) at working resolution."""
        h, w = image.shape[:2]
        self.own = [_openings(points, e) for e in (0, 1)]
        self.own_width = [_eye_width(points, e) for e in (0, 1)]
        self.skin, self.lash = [], []
        luma_w = np.array([0.114, 0.587, 0.299], np.float32)
        img = image.astype(np.float32)
        for e in (0, 1):
            band = np.concatenate([points[L.EYE_UPPER[e], :2], points[L.BROWS[e][5:], :2][::-1]])
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [np.round(band).astype(np.int32)], 1)
            px = img[mask > 0] if mask.sum() >= 8 else img.reshape(-1, 3)
            luma = px @ luma_w
            self.skin.append(np.median(px[luma >= np.percentile(luma, 40)], 0))
            line = np.zeros((h, w), np.uint8)
            cv2.polylines(line, [np.round(points[L.EYE_UPPER[e], :2]).astype(np.int32)], False, 1, 2)
            lp = img[line > 0] if line.any() else px
            ll = lp @ luma_w
            self.lash.append(np.median(lp[ll <= np.percentile(ll, 30)], 0))

    def closure(self, points: np.ndarray) -> np.ndarray:
        """How far each eye of these target points (working px) is closed: 0 the portrait's own opening, 1 shut."""
        out = []
        for e in (0, 1):
            k = _eye_width(points, e) / self.own_width[e]
            share = float(np.mean(_openings(points, e)) / max(float(np.mean(self.own[e])) * k, 1e-3))
            out.append(float(np.clip(1.0 - share, 0.0, 1.0)))
        return np.array(out)

    def draw(self, out: np.ndarray, points: np.ndarray, closure: np.ndarray) -> None:
        """Paint the swept lids into ``out`` (in place) for points (478 x 2) in out's pixels."""
        h, w = out.shape[:2]
        for e in (0, 1):
            strength = float(np.clip((closure[e] - CLOSING_FROM) / (CLOSING_FULL - CLOSING_FROM), 0.0, 1.0))
            if strength <= 0.0:
                continue
            upper, lower = points[L.EYE_UPPER[e], :2], points[L.EYE_LOWER[e], :2]
            width = _eye_width(points, e)
            k = width / self.own_width[e]
            ax = (upper[-1] - upper[0]) / width
            up = np.array([ax[1], -ax[0]])
            if up @ (upper.mean(0) - lower.mean(0)) < 0:
                up = -up
            # Where the upper lid would be at the portrait's own opening: the sweep lies between it and the lid.
            swept = np.zeros(len(upper))
            swept[1:-1] = np.maximum(self.own[e] * k - _openings(points, e), 0.0)
            top = upper + swept[:, None] * up
            poly = np.concatenate([upper, top[::-1]])
            x0, y0 = np.maximum(np.floor(poly.min(0) - 0.3 * width).astype(int), 0)
            x1, y1 = np.minimum(np.ceil(poly.max(0) + 0.3 * width).astype(int) + 1, [w, h])
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue
            mask = np.zeros((y1 - y0, x1 - x0), np.float32)
            cv2.fillPoly(mask, [np.round((poly - [x0, y0]) * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
            feather = max(0.06 * width, 0.6)
            mask = cv2.GaussianBlur(mask, (0, 0), feather)
            roi = out[y0:y1, x0:x1].astype(np.float32)
            low = cv2.GaussianBlur(roi, (0, 0), max(0.1 * width, 0.8))
            lid = self.skin[e] + DETAIL * np.clip(roi - low, -DETAIL_MAX, DETAIL_MAX)
            alpha = (mask * strength)[..., None]
            painted = roi + alpha * (lid - roi)
            # The lash line where the lids meet, as thick as the portrait's lashes are at this size.
            lash = np.zeros_like(mask)
            thick = max(1, int(round(0.04 * width)))
            cv2.polylines(lash, [np.round((upper - [x0, y0]) * 4).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, shift=2)
            lash = (cv2.GaussianBlur(lash, (0, 0), max(0.02 * width, 0.5)) * 0.85 * strength)[..., None]
            painted += lash * (self.lash[e] - painted)
            out[y0:y1, x0:x1] = np.clip(painted, 0, 255).astype(np.uint8)


class EyelidOverlay:
    """This frame's painted lids as an overlay (pipeline/render/base.py): points in working pixels."""

    def __init__(self, painter: EyelidPainter, points: np.ndarray, closure: np.ndarray):
        self.painter, self.points, self.closure = painter, np.asarray(points, np.float64)[:, :2], closure

    def draw(self, canvas: np.ndarray, to_canvas: np.ndarray) -> None:
        a = np.asarray(to_canvas, np.float64)
        self.painter.draw(canvas, self.points @ a[:, :2].T + a[:, 2], self.closure)
