"""Framing for the call: the picture the virtual camera and recordings get, at the call's size.

A portrait is rarely 16:9. "follow" fills the call's picture with a crop that follows the avatar's head
smoothly, as a webcam's auto-framing does (head and shoulders, the head a little above the centre, moving only
as fast as a camera operator would); "fill" cuts the largest picture of the call's shape around the portrait's
face, and holds it still; "fit" shows the whole portrait between bars. The window's "What the call sees" shows this same picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.smoothing import OneEuroFilter

FRAMINGS = ("follow", "fill", "fit")


@dataclass(frozen=True)
class FramingSettings:
    """``width`` x ``height``: the call's picture. ``head_share``: the face's height as a share of the picture's
    in "follow" (0.4: head and shoulders). ``steadiness``: the follow crop's cutoff at rest in Hz (lower: calmer)."""

    width: int = 1280
    height: int = 720
    mode: str = "follow"
    head_share: float = 0.4
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


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit inside ``size`` (w, h), aspect kept, centred on black."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return np.ascontiguousarray(image)
    scale = min(w / iw, h / ih)
    nw, nh = max(1, min(w, int(round(iw * scale)))), max(1, min(h, int(round(ih * scale))))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = resized
    return out


def cut(image: np.ndarray, crop: tuple[float, float, float], size: tuple[int, int]) -> np.ndarray:
    """The crop (centre x, centre y, height; the call's aspect) of ``image``, resized to ``size``.

    The crop's centre is placed to the sub-pixel (a gliding camera does not step) and its side to the pixel;
    cut first and then resized, which is about four times cheaper than one affine warp to the call's size.
    """
    w, h = size
    cx, cy, ch = crop
    ih, iw = image.shape[:2]
    crop_h = max(2, min(ih, int(round(ch))))
    crop_w = max(2, min(iw, int(round(crop_h * w / h))))
    patch = cv2.getRectSubPix(image, (crop_w, crop_h), (float(cx) - 0.5, float(cy) - 0.5))
    interpolation = cv2.INTER_AREA if crop_h > h else cv2.INTER_LINEAR
    return cv2.resize(patch, (w, h), interpolation=interpolation)


def fitting_crop(image_size: tuple[int, int], aspect: float, cx: float, cy: float, ch: float
                 ) -> tuple[float, float, float]:
    """The crop (cx, cy, height) of ``aspect`` (w / h) nearest the asked one that lies inside the image."""
    iw, ih = image_size
    ch = min(ch, ih, iw / aspect)
    cw = ch * aspect
    cx = float(np.clip(cx, cw / 2, iw - cw / 2))
    cy = float(np.clip(cy, ch / 2, ih - ch / 2))
    return cx, cy, float(ch)


class Framer:
    """The framing stage: fills ``frame.call_image`` from ``frame.output`` (and, in "follow", its target)."""

    name = "framing"

    def __init__(self, settings: FramingSettings = FramingSettings()):
        self.settings = settings
        # beta 0: a plain low-pass. A camera that sped up with the head would jump with every quick turn.
        self._filter = OneEuroFilter(min_cutoff=settings.steadiness, beta=0.0, d_cutoff=1.0)
        self._last: tuple[float, float, float] | None = None

    def open(self) -> None:
        pass

    def process(self, frame: Frame) -> None:
        avatar = frame.avatar
        rest = None if avatar is None else avatar.landmarks
        frame.call_image = self.picture(frame.output, frame.target, frame.avatar_size, frame.t_capture, rest)

    def picture(self, image: np.ndarray, target: np.ndarray | None, portrait_size: tuple[int, int] | None,
                t: float, rest: np.ndarray | None = None) -> np.ndarray:
        """The call's picture of ``image`` (the avatar at ``target``; ``rest``: the portrait's own landmarks)."""
        s = self.settings
        if s.mode == "fit":
            return fit_image(image, s.size)
        ih, iw = image.shape[:2]
        aspect = s.width / s.height
        face = rest if rest is not None else target
        if s.mode == "follow" and target is not None and portrait_size is not None:
            crop = self.follow(target, portrait_size, (iw, ih), t)
        elif s.mode == "follow" and self._last is not None:  # no pose: the camera holds still where it was
            crop = self._last
        elif s.mode == "fill" and face is not None and portrait_size is not None:  # the largest crop, on the face
            cx, cy = (face[:, :2].min(axis=0) + face[:, :2].max(axis=0)) / 2 * (iw / portrait_size[0])
            crop = fitting_crop((iw, ih), aspect, cx, cy, ih)
        else:  # nothing to place it by: the middle
            crop = fitting_crop((iw, ih), aspect, iw / 2, ih / 2, ih)
        return cut(image, crop, s.size)

    def follow(self, target: np.ndarray, portrait_size: tuple[int, int], image_size: tuple[int, int],
               t: float) -> tuple[float, float, float]:
        """Where the camera looks now: the head's crop, smoothed, inside the image."""
        s = self.settings
        k = image_size[0] / portrait_size[0]  # the output is the whole portrait, scaled
        pts = np.asarray(target, np.float64)[:, :2] * k
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        cx, top, bottom = self._filter(np.array([(x0 + x1) / 2, y0, y1]), t)  # the face, smoothed
        face_h = max(bottom - top, 1.0)
        ch = min(face_h / s.head_share, image_size[1], image_size[0] * s.height / s.width)
        # The face's centre a sixth of the picture above its middle (room for the shoulders, little for the sky),
        # but never its forehead cut off when the picture is small.
        cy = min((top + bottom) / 2 + ch / 6, top + ch / 2 - 0.02 * ch) if face_h < 0.96 * ch else (top + bottom) / 2
        self._last = fitting_crop(image_size, s.width / s.height, cx, cy, ch)
        return self._last

    def close(self) -> None:
        pass
