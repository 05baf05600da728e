"""Where the call's camera looks: the crop of the portrait that becomes the call's picture, in portrait pixels.

A portrait is rarely 16:9. "follow" frames head and shoulders as a webcam's auto-framing does: the whole head
with room above it, the face about a third of the picture's height, gliding after the head no faster than a
camera operator would; "fill" takes the largest picture of the call's shape inside the portrait, around the
face, and holds it still; "fit" shows the whole portrait between bars.

Where a portrait is too narrow for head and shoulders at that size (every portrait-format picture is: a 16:9
picture of a head a third of its height is twice as wide as the head is tall), the crop reaches past the
portrait's sides into the still background's continuation (background.extend). It never reaches below the
portrait, nor above it by more than HEADROOM_PAST_TOP of its height; when the portrait is too short for that, the
crop is as tall as the portrait allows and the face takes a larger share (the crown and chin stay inside).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.geometry import fit_similarity
from avatar_app.pipeline.smoothing import OneEuroFilter

FRAMINGS = ("follow", "fill", "fit")
HEADROOM = 0.08  # room above the crown, as a share of the picture's height
CHIN_ROOM = 0.25  # at least this share of the picture below the chin (neck and shoulders)
HEADROOM_PAST_TOP = 0.1  # how far above the portrait the crop may reach (its continuation), share of the crop
SIDE_ROOM = 0.15  # how far past the needed width the continuation reaches each side, share of the crop's width
CROWN_ABOVE_FACE = (0.12, 0.9)  # the crown above the face's top: at least, at most (face heights)

Crop = tuple[float, float, float]  # centre x, centre y, height: portrait pixels, the call's aspect


@dataclass(frozen=True)
class FramingSettings:
    """``width`` x ``height``: the call's picture. ``head_share``: the face's height (forehead to chin) as a share
    of the picture's in "follow". ``steadiness``: the follow crop's cutoff in Hz (lower: calmer)."""

    width: int = 1280
    height: int = 720
    mode: str = "follow"
    head_share: float = 0.34
    steadiness: float = 0.4

    def __post_init__(self) -> None:
        if self.mode not in FRAMINGS:
            raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {self.mode!r}")
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096) or self.width % 2 or self.height % 2:
            raise ValueError(f"the call's picture must be even sizes of 16 to 4096 pixels, got {self.width}x{self.height}")
        if not 0.1 <= self.head_share <= 0.9:
            raise ValueError(f"head_share must be between 0.1 and 0.9, got {self.head_share}")

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def aspect(self) -> float:
        return self.width / self.height


def parse_call_size(text: str) -> tuple[int, int]:
    """The command line's --call-size: WIDTHxHEIGHT (e.g. 1280x720)."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"call size must be WIDTHxHEIGHT, e.g. 1280x720, got {text!r}")
    return int(parts[0]), int(parts[1])


def crown(landmarks: np.ndarray, person: np.ndarray | None, image_size: tuple[int, int]) -> np.ndarray:
    """The top of the head at rest (x, y in portrait pixels): the person mask's highest point above the face's
    width (hair counts), kept between CROWN_ABOVE_FACE face heights above the face's top."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    face_h = y1 - y0
    lo, hi = y0 - CROWN_ABOVE_FACE[1] * face_h, y0 - CROWN_ABOVE_FACE[0] * face_h
    top = hi
    if person is not None:
        w, h = image_size
        ky, kx = person.shape[0] / h, person.shape[1] / w
        c0, c1 = int(max(0, np.floor(x0 * kx))), int(min(person.shape[1], np.ceil(x1 * kx)))
        rows = np.flatnonzero((person[:, c0:c1] > 0.5).any(1)) if c1 > c0 else np.zeros(0, int)
        if len(rows):
            top = rows[0] / ky
    return np.array([(x0 + x1) / 2, float(np.clip(top, lo, hi))])


def head_and_shoulders(face_top: float, chin: float, cx: float, crown_y: float, image_size: tuple[int, int],
                       s: FramingSettings) -> Crop:
    """The follow crop for a face spanning ``face_top``..``chin`` (y) centred at ``cx``, crown at ``crown_y``."""
    iw, ih = image_size
    face_h = max(chin - face_top, 1.0)
    ch = min(face_h / s.head_share, ih * (1 + HEADROOM_PAST_TOP))
    top = crown_y - HEADROOM * ch
    top = min(top, chin - (1 - CHIN_ROOM) * ch)  # the chin with room below it, before the headroom
    top = float(np.clip(top, -HEADROOM_PAST_TOP * ch, max(ih - ch, -HEADROOM_PAST_TOP * ch)))
    ch = min(ch, ih - top)  # never below the portrait
    cw = ch * s.aspect
    if cw <= iw:
        cx = float(np.clip(cx, cw / 2, iw - cw / 2))
    else:  # wider than the portrait: centred on the face, no further out than the continuation reaches
        reach = (cw - iw) / 2 + SIDE_ROOM * cw
        cx = float(np.clip(cx, cw / 2 - reach, iw + reach - cw / 2))
    return cx, top + ch / 2, float(ch)


def side_reach(image_size: tuple[int, int], landmarks: np.ndarray, s: FramingSettings) -> tuple[int, int]:
    """How far (x, y portrait pixels) a follow crop can reach past the portrait's sides and top: what the still
    background's continuation must cover."""
    iw, ih = image_size
    pts = np.asarray(landmarks, np.float64)[:, :2]
    face_h = np.ptp(pts[:, 1])
    ch = min(face_h / s.head_share * 1.35, ih * (1 + HEADROOM_PAST_TOP))  # a head that comes closer: larger
    cw = ch * s.aspect
    return int(np.ceil(max(0.0, (cw - iw) / 2 + SIDE_ROOM * cw))) + 2, int(np.ceil(HEADROOM_PAST_TOP * ch) + 2)


def fitting_crop(image_size: tuple[int, int], aspect: float, cx: float, cy: float, ch: float) -> Crop:
    """The crop (cx, cy, height) of ``aspect`` (w / h) nearest the asked one that lies inside the image."""
    iw, ih = image_size
    ch = min(ch, ih, iw / aspect)
    cw = ch * aspect
    cx = float(np.clip(cx, cw / 2, iw - cw / 2))
    cy = float(np.clip(cy, ch / 2, ih - ch / 2))
    return cx, cy, float(ch)


class Framer:
    """The crop for each frame. ``rest``: the portrait's own landmarks; ``crown_at_rest``: crown() of them."""

    def __init__(self, settings: FramingSettings = FramingSettings()):
        self.settings = settings
        # beta 0: a plain low-pass. A camera that sped up with the head would jump with every quick turn.
        self._filter = OneEuroFilter(min_cutoff=settings.steadiness, beta=0.0, d_cutoff=1.0)
        self._last: Crop | None = None

    def crop(self, target: np.ndarray | None, rest: np.ndarray, crown_at_rest: np.ndarray,
             image_size: tuple[int, int], t: float) -> Crop:
        """Where the camera looks for the avatar at ``target`` (portrait pixels; None: no pose) at time t."""
        s = self.settings
        iw, ih = image_size
        if s.mode == "fit":
            return iw / 2, ih / 2, float(max(ih, iw / s.aspect))
        if s.mode == "fill":
            pts = np.asarray(rest, np.float64)[:, :2]
            cx = (pts[:, 0].min() + pts[:, 0].max()) / 2
            ch = min(ih, iw / s.aspect)
            top = float(np.clip(crown_at_rest[1] - HEADROOM * ch, 0, ih - ch))
            return fitting_crop(image_size, s.aspect, cx, top + ch / 2, ch)
        if target is None:  # no pose: the camera holds still where it was
            if self._last is None:
                return self.crop(rest, rest, crown_at_rest, image_size, t)
            return self._last
        pts = np.asarray(target, np.float64)[:, :2]
        head = fit_similarity(np.asarray(rest, np.float64)[L.RIGID, :2], pts[L.RIGID])
        crown_now = head.apply(crown_at_rest[None])[0]
        # The face's extent and the crown, smoothed, then the crop: a low-passed camera.
        cx, top, chin, crown_y = self._filter(np.array([(pts[:, 0].min() + pts[:, 0].max()) / 2, pts[:, 1].min(),
                                                        pts[:, 1].max(), crown_now[1]]), t)
        self._last = head_and_shoulders(top, chin, cx, min(crown_y, top), image_size, s)
        return self._last
