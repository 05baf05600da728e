"""Where the inside of an opened mouth comes from, and the one compositor that lays it between the avatar's lips.

Three sources (``RenderSettings.mouth``, base.MOUTHS):

- ``painted`` (mouth.py): a cavity, teeth and a tongue shaded from the portrait's own palette; needs nothing.
- ``mine``: the driver's own mouth from the camera picture, its inner lips aligned to the avatar's and its
  colours carried over to the portrait's (brightness relative to the skin around the mouth, the skin's white
  balance), so a dim painting gets dim teeth and a photo bright ones. Live it costs about 1.9 ms here.
- ``neural``: the mouth model (a `mouth` model folder, e.g. the shipped mouth-1): G draws the mouth crop from the
  avatar's lip landmarks, a blurred view of the driver's mouth when there is one, and the portrait's ψ.

Whatever the source, it hands over a picture and where it lies (``MouthPatch``); ``InteriorOverlay`` draws it at
the call's size inside the avatar's inner lip line, faded in over a band inside that line (no outline: the
warped lips meet the interior without a drawn edge) and out towards the mouth corners. Where a source has
nothing this frame (no driver face, a driver whose mouth is shut while the avatar's opens), the painted mouth
stands in.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.crop import mouth_affine, mouth_crop, to_affine_crop
from avatar_app.pipeline.render.base import then
from avatar_app.pipeline.render.mouth import interior_alpha, mouth_frame

# "mine": the side of the driver's mouth crop (pixels; sharp enough at a 1280x720 call, cheap), the narrowest
# driver opening (crop pixels) whose inside is worth carrying over, and how fast its colour statistics follow.
MINE_CROP = 96
MINE_MIN_GAP = 2.0
STATS_KEEP = 0.8  # share of the previous frame's statistics kept (flicker of the skin's mean under a moving mouth)
LIGHT_GAIN = (0.6, 1.4)
CAST_SHARE = 0.5


@dataclass
class DriverView:
    """The camera picture a frame was tracked in and the driver's landmarks there (478 x 3, its pixels; None when
    no face was found)."""

    image: np.ndarray
    points: np.ndarray | None


@dataclass
class MouthPatch:
    """A picture of the inside of the mouth (BGR uint8) and the 2 x 3 affine taking its pixels to working pixels."""

    image: np.ndarray
    to_working: np.ndarray


def _inverse(affine: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(affine, np.float64)).astype(np.float32)


def _chain(points: np.ndarray, idx: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """A lip line (points[idx], crop pixels) as y over the columns xs."""
    p = points[idx, :2]
    order = np.argsort(p[:, 0])
    return np.interp(xs, p[order, 0], p[order, 1])


def _skin_and_lips(size: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (size x size bool) of the skin around the mouth (a band round the outer lips, above and below them)
    and of the lips (between the outer and inner lip lines), for landmarks in crop pixels."""
    p = np.round(points[:, :2] * 4).astype(np.int32)
    outer = np.concatenate([p[L.LIP_OUTER_UPPER], p[L.LIP_OUTER_LOWER][1:-1][::-1]])
    inner = np.concatenate([p[L.LIP_INNER_UPPER], p[L.LIP_INNER_LOWER][1:-1][::-1]])
    lips = np.zeros((size, size), np.uint8)
    cv2.fillPoly(lips, [outer], 1, shift=2)
    grown = cv2.dilate(lips, np.ones((2 * (size // 24) + 1,) * 2, np.uint8))
    near = cv2.dilate(lips, np.ones((2 * (size // 8) + 1,) * 2, np.uint8))  # the chin's skin, not the neck below
    cv2.fillPoly(lips, [inner], 0, shift=2)
    skin = (grown == 0) & (near > 0)
    skin[: size // 8] = False  # the nostrils' shadow
    # Only above and below the lips, between their corners: beside the mouth of a turned head lies the background.
    x0, x1 = points[L.LIP_OUTER_UPPER[0], 0], points[L.LIP_OUTER_UPPER[-1], 0]
    cols = np.arange(size)
    skin[:, (cols < min(x0, x1)) | (cols > max(x0, x1))] = False
    return skin, lips > 0


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)


class MineMouth:
    """The driver's mouth carried into the avatar's (``interior()`` per frame)."""

    def __init__(self, image: np.ndarray, points: np.ndarray):
        """The portrait (working size) and its landmarks there: its skin's colour around the mouth."""
        affine = mouth_affine(points, MINE_CROP)
        crop = mouth_crop(image, affine, MINE_CROP)
        skin, _ = _skin_and_lips(MINE_CROP, to_affine_crop(points, affine))
        lab = _lab(crop)[skin] if skin.any() else _lab(crop).reshape(-1, 3)
        self.skin = np.median(lab, 0)
        self._driver_skin: np.ndarray | None = None  # the driver's, followed from frame to frame

    def interior(self, driver: DriverView | None, target: np.ndarray) -> MouthPatch | None:
        """The driver's mouth at the avatar's lips (target: 478 landmarks, working pixels), or None when the driver
        has no face or no open mouth to give."""
        if driver is None or driver.points is None or not driver.image.size:
            return None
        s = MINE_CROP
        d_aff, a_aff = mouth_affine(driver.points, s), mouth_affine(target, s)
        d_pts, a_pts = to_affine_crop(driver.points, d_aff), to_affine_crop(target, a_aff)
        xs = np.arange(s, dtype=np.float64)
        d_up, d_lo = _chain(d_pts, L.LIP_INNER_UPPER, xs), _chain(d_pts, L.LIP_INNER_LOWER, xs)
        a_up, a_lo = _chain(a_pts, L.LIP_INNER_UPPER, xs), _chain(a_pts, L.LIP_INNER_LOWER, xs)
        mid = slice(s * 3 // 8, s * 5 // 8)
        if float(np.max(d_lo[mid] - d_up[mid])) < MINE_MIN_GAP:
            return None
        # Column by column, the avatar's opening takes the driver's: its upper inner lip to the driver's upper
        # inner lip, its lower to the lower (both crops put the mouth corners at the same columns).
        stretch = np.maximum(d_lo - d_up, 0.5) / np.maximum(a_lo - a_up, 0.5)
        yy = np.arange(s, dtype=np.float64)[:, None]
        map_y = (d_up[None] + (yy - a_up[None]) * stretch[None]).astype(np.float32)
        map_x = np.broadcast_to(xs[None].astype(np.float32), (s, s)).copy()
        crop = mouth_crop(driver.image, d_aff, s)
        moved = cv2.remap(crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        skin, _ = _skin_and_lips(s, d_pts)
        lab = _lab(crop)
        now = np.median(lab[skin], 0) if skin.sum() > s else self.skin
        self._driver_skin = now if self._driver_skin is None else STATS_KEEP * self._driver_skin + (1 - STATS_KEEP) * now
        out = _lab(moved)
        # Brightness relative to the skin around the mouth (a dim painting gets dim teeth), within reason; half the
        # skins' difference in white balance (a cavity takes the portrait's cast, teeth do not turn its colour).
        out[..., 0] *= float(np.clip(self.skin[0] / max(self._driver_skin[0], 1.0), LIGHT_GAIN[0], LIGHT_GAIN[1]))
        # Colour as strong as the portrait's own (its skin's chroma against the driver's): a black-and-white photo
        # gets a grey mouth.
        chroma = float(np.clip(np.hypot(*self.skin[1:]) / max(float(np.hypot(*self._driver_skin[1:])), 1.0), 0.0, 1.2))
        out[..., 1:] = (out[..., 1:] - CAST_SHARE * self._driver_skin[1:]) * chroma + CAST_SHARE * self.skin[1:]
        bgr = cv2.cvtColor(out, cv2.COLOR_LAB2BGR)
        return MouthPatch(np.clip(bgr * 255.0 + 0.5, 0, 255).astype(np.uint8), _inverse(a_aff))


class NeuralMouth:
    """The mouth model draws the mouth crop (``interior()`` per frame); ψ from the portrait (K = 1)."""

    def __init__(self, model, image: np.ndarray, points: np.ndarray, use_driver: bool = True):
        """model: an ExportedModel of a mouth model folder; the portrait at working size and its landmarks."""
        from avatar_app.face.landmark_image import draw_mouth_landmarks

        self.model, self.use_driver = model, use_driver
        self._draw = draw_mouth_landmarks
        self.learn([image], [points])
        s = model.size
        self._absent = np.zeros((1, 4, s, s), np.float32)

    def learn(self, images: list[np.ndarray], points: list[np.ndarray]) -> None:
        """ψ from K pictures of the person and their landmarks (the paper's few-shot identity: ê is the mean over
        the K mouth crops, ψ = P·ê; more pictures, and some with teeth showing, make a better mouth)."""
        s = self.model.size
        rgbs, lms = [], []
        for image, p in zip(images, points):
            affine = mouth_affine(p, s)
            rgb = cv2.cvtColor(mouth_crop(image, affine, s), cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
            rgbs.append(rgb.transpose(2, 0, 1))
            lms.append(self._draw(to_affine_crop(p, affine), s, self.model.thickness).transpose(2, 0, 1))
        _, self.psi = self.model.identity(np.stack(rgbs), np.stack(lms))

    def driver_input(self, driver: DriverView | None) -> np.ndarray:
        """The driver's mouth as the model was trained to read it: cut by its lips, blurred to a 12-pixel picture
        and back (what it says is whether teeth, tongue or a dark opening show, not what they look like)."""
        s = self.model.size
        if not self.use_driver or driver is None or driver.points is None or not driver.image.size:
            return self._absent
        crop = mouth_crop(driver.image, mouth_affine(driver.points, s), s)
        small = cv2.resize(crop, (12, 12), interpolation=cv2.INTER_AREA)
        blurred = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(blurred, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        return np.concatenate([rgb.transpose(2, 0, 1)[None], np.ones((1, 1, s, s), np.float32)], axis=1)

    def interior(self, driver: DriverView | None, target: np.ndarray) -> MouthPatch:
        s = self.model.size
        affine = mouth_affine(target, s)
        lm = self._draw(to_affine_crop(target, affine), s, self.model.thickness).transpose(2, 0, 1)[None]
        out = self.model.mouth(np.ascontiguousarray(lm), self.driver_input(driver), self.psi)[0]
        bgr = cv2.cvtColor(((out.transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        return MouthPatch(bgr, _inverse(affine))


class InteriorOverlay:
    """A source's mouth drawn inside the avatar's inner lip line at the canvas's size (pipeline/render/base.py's
    Overlay): points in working pixels, strength 0..1 (the painted mouth's, so every source opens alike)."""

    def __init__(self, patch: MouthPatch, points: np.ndarray, strength: float):
        self.patch, self.points, self.strength = patch, np.asarray(points, np.float64)[:, :2], strength

    def draw(self, canvas: np.ndarray, to_canvas: np.ndarray) -> None:
        a = np.asarray(to_canvas, np.float64)
        pts = self.points @ a[:, :2].T + a[:, 2]
        poly = np.concatenate([pts[L.LIP_INNER_UPPER], pts[L.LIP_INNER_LOWER][1:-1][::-1]])
        h, w = canvas.shape[:2]
        x0, y0 = np.maximum(np.floor(poly.min(0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(poly.max(0)).astype(int) + 3, [w, h])
        if x1 - x0 < 2 or y1 - y0 < 2 or self.strength <= 0:
            return
        left, width, ax, _ = mouth_frame(pts)
        place = then(self.patch.to_working, a.astype(np.float32)).astype(np.float64)
        place[:, 2] -= (x0, y0)
        size = (int(x1 - x0), int(y1 - y0))
        picture = cv2.warpAffine(self.patch.image, place, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        side = np.abs(((xx - left[0]) * ax[0] + (yy - left[1]) * ax[1]) / width - 0.5) * 2
        alpha = interior_alpha(poly - [x0, y0], (size[1], size[0]), side, width, self.strength)
        roi = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = np.clip(roi + alpha[..., None] * (picture.astype(np.float32) - roi) + 0.5, 0, 255).astype(np.uint8)


def mouth_source(settings, image: np.ndarray, points: np.ndarray) -> MineMouth | NeuralMouth | None:
    """The source RenderSettings.mouth names, prepared for this portrait (working size) and its landmarks; None for
    the painted mouth. A neural mouth loads its model folder here (a missing or broken one is a user error)."""
    if settings.mouth == "mine":
        return MineMouth(image, points)
    if settings.mouth == "neural":
        from avatar_app.pipeline.render.exported import ExportedModel, default_mouth_model

        model = ExportedModel(settings.mouth_model or default_mouth_model(), "onnx", settings.provider)
        if model.conditioning != "mouth":
            from avatar_app.errors import InputFileError

            raise InputFileError(f"{model.directory}: a {model.conditioning} model, not a mouth model - pass a mouth "
                                 "model folder (e.g. the shipped mouth-1) to --mouth-model")
        return NeuralMouth(model, image, points)
    return None
