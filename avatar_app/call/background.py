"""What shows behind the person in the call's picture: the portrait's own background (keep), that background
blurred, or a solid colour (a green screen, for streamers who key the avatar over a scene).

The person is cut out once per avatar (MediaPipe's selfie segmentation, cleaned up with GrabCut and softened
along the portrait's own edges). Behind it lies a still layer made once per avatar too: the portrait with the
person filled in from the background around it (inpainted), so what a moved head uncovers is background and not
a smear, continued past the portrait's sides (mirrored and blurred more the further out) where a 16:9 call
picture is wider than a portrait. Only the person moves (picture.py lays it over this layer), as in front of
a webcam.
"""

from __future__ import annotations

import re
import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from avatar_app.errors import first_line
from avatar_app.face import landmarks as L

if TYPE_CHECKING:
    from avatar_app.pipeline.avatar import Avatar

BACKGROUNDS = ("keep", "blur", "colour")
GREEN_SCREEN = "#00b140"  # chroma-key green, what keying filters (OBS's among them) expect by default
NAMED_COLOURS = {"green": GREEN_SCREEN, "blue": "#0047bb", "black": "#000000", "white": "#ffffff"}

MASK_SIDE = 512  # the person mask's resolution (longer side); it is resized to the call picture's source once
INPAINT_SIDE = 320  # the background fill's resolution (longer side)
GRABCUT_SIDE = 256  # GrabCut's resolution: colour models need no more, and it stays ~0.1 s per avatar
SELFIE_MODEL = 0  # 0: the general model (256 x 256 input). 1, "landscape" (144 x 256), cut hair and the
# paintings' shoulders blockier and lost more of the Girl with a Pearl Earring's turban.


@dataclass(frozen=True)
class BackgroundSettings:
    """``mode``: keep, blur or colour. ``colour``: (B, G, R) or "#RRGGBB" (kept as (B, G, R)). ``blur``: the
    blur's sigma as a share of the picture's longer side (0.025: 13 px at 512)."""

    mode: str = "keep"
    colour: tuple[int, int, int] | str = GREEN_SCREEN
    blur: float = 0.025

    def __post_init__(self) -> None:
        if self.mode not in BACKGROUNDS:
            raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, got {self.mode!r}")
        object.__setattr__(self, "colour", bgr_colour(self.colour))
        if not 0.001 <= self.blur <= 0.2:
            raise ValueError(f"background blur must be between 0.001 and 0.2 of the picture's size, got {self.blur}")

    @property
    def hex(self) -> str:
        b, g, r = self.colour
        return f"#{r:02x}{g:02x}{b:02x}"


def bgr_colour(colour: tuple[int, int, int] | str) -> tuple[int, int, int]:
    """(B, G, R) for "#RRGGBB", "RRGGBB", a name (green, blue, black, white) or a (B, G, R) triple."""
    if isinstance(colour, str):
        text = NAMED_COLOURS.get(colour.strip().lower(), colour.strip())
        if not re.fullmatch(r"#?[0-9a-fA-F]{6}", text):
            raise ValueError(f"background colour must be #RRGGBB (e.g. {GREEN_SCREEN}) or one of "
                             f"{', '.join(NAMED_COLOURS)}, got {colour!r}")
        rgb = int(text.lstrip("#"), 16)
        return rgb & 0xFF, (rgb >> 8) & 0xFF, rgb >> 16
    bgr = tuple(int(c) for c in colour)
    if len(bgr) != 3 or not all(0 <= c <= 255 for c in bgr):
        raise ValueError(f"background colour must be three values 0-255 (B, G, R), got {colour!r}")
    return bgr


def parse_background(text: str) -> BackgroundSettings:
    """The command line's --background: keep, blur, or a colour (#RRGGBB or a name, e.g. green)."""
    word = text.strip().lower()
    if word in ("keep", "blur"):
        return BackgroundSettings(mode=word)
    return BackgroundSettings(mode="colour", colour=text)


# -- the person, once per avatar ------------------------------------------------------------------------------
def segment_person(image: np.ndarray) -> np.ndarray:
    """MediaPipe's selfie segmentation of a BGR image: the chance each pixel is the person, H x W float32."""
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=SELFIE_MODEL) as segmenter:
        result = segmenter.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return np.clip(result.segmentation_mask, 0.0, 1.0).astype(np.float32)


def person_mask(image: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """The person in a portrait, float32 0..1 (exactly 0 and 1 away from the outline, soft along it), at
    MASK_SIDE on its longer side. ``landmarks`` (portrait pixels): the face, which is always the person.

    The selfie model was trained on photos: on paintings it leaves half-sure patches where a dark background
    meets dark clothes. GrabCut, seeded with the sure parts, settles those by colour; a guided filter then
    softens the cut along the portrait's own edges (hair), and a stretch makes the sure parts exactly 0 or 1."""
    h, w = image.shape[:2]
    k = min(1.0, MASK_SIDE / max(h, w))
    small = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    chance = segment_person(small)
    face = None
    if landmarks is not None:
        face = np.round(np.asarray(landmarks)[L.FACE_OVAL, :2] * k).astype(np.int32)
        cv2.fillConvexPoly(chance, cv2.convexHull(face), 1.0)
    hard = _grabcut(small, chance, face)
    radius = max(2, round(max(small.shape) / 128))  # 4 px at 512: the hair's edge, not a blur
    soft = cv2.ximgproc.guidedFilter(small.astype(np.float32) / 255.0, hard, radius, 1e-4)
    return np.clip((soft - 0.1) / 0.8, 0.0, 1.0).astype(np.float32)


def _grabcut(image: np.ndarray, chance: np.ndarray, face: np.ndarray | None) -> np.ndarray:
    """The person as 0/1 (float32, image size): GrabCut seeded with the segmentation's sure and likely parts; the
    segmentation itself where GrabCut has nothing to learn from (all person, or none)."""
    seeds = np.full(chance.shape, cv2.GC_PR_BGD, np.uint8)
    seeds[chance > 0.5] = cv2.GC_PR_FGD
    seeds[chance > 0.9] = cv2.GC_FGD
    seeds[chance < 0.1] = cv2.GC_BGD
    fallback = (chance > 0.5).astype(np.float32)
    person = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if person.sum() < 64 or (~person).sum() < 64:
        return fallback
    h, w = chance.shape
    k = min(1.0, GRABCUT_SIDE / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_seeds = cv2.resize(seeds, size, interpolation=cv2.INTER_NEAREST)
    if face is not None:
        cv2.fillConvexPoly(small_seeds, cv2.convexHull(np.round(face * k).astype(np.int32)), cv2.GC_FGD)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models at random: the same portrait gets the same mask
    try:
        cv2.grabCut(small, small_seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few seeds of one kind after the resize
        return fallback
    cut = np.isin(small_seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
    return cv2.resize(cut, (w, h), interpolation=cv2.INTER_LINEAR)


class _MaskPerAvatar:
    """Each avatar's person mask, made the first time it is asked for (from any thread) and kept while the
    avatar lives: a new size or renderer for the same avatar does not segment it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._masks: dict[int, tuple[weakref.ref, np.ndarray]] = {}

    def __call__(self, avatar: Avatar) -> np.ndarray:
        with self._lock:  # held while segmenting, so two threads never segment the same avatar twice
            known = self._masks.get(id(avatar))
            if known is not None and known[0]() is avatar:
                return known[1]
            try:
                mask = person_mask(avatar.image, avatar.landmarks)
            except Exception as err:  # noqa: BLE001 - a broken install must not fail every frame
                warnings.warn(f"{avatar.name}: the person could not be cut out ({first_line(err)}) - its own "
                              "background stays", stacklevel=2)
                mask = np.ones(avatar.image.shape[:2], np.float32)
            self._masks = {k: v for k, v in self._masks.items() if v[0]() is not None}
            self._masks[id(avatar)] = (weakref.ref(avatar), mask)
            return mask


avatar_mask = _MaskPerAvatar()


# -- what shows behind, once per animation --------------------------------------------------------------------
def blurred_background(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """The portrait's background blurred, with the person left out: each pixel is a Gaussian-weighted mean of the
    background around it (a normalised convolution), so no blurred ghost of the head shows where the head has
    moved away. Where the person covers all around, a blur four times wider fills in, then the mean background."""
    keep = 1.0 - mask
    pixels = image.astype(np.float32)
    weighted = pixels * keep[..., None]
    weight = float(keep.sum())
    mean = weighted.sum((0, 1)) / weight if weight > 0 else pixels.mean((0, 1))
    wide, wide_share = _normalised_blur(weighted, keep, 4 * sigma)
    wide += (mean - wide) * (1 - np.clip(wide_share / 0.05, 0, 1))
    near, near_share = _normalised_blur(weighted, keep, sigma)
    out = near + (wide - near) * (1 - np.clip(near_share / 0.2, 0, 1))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _normalised_blur(weighted: np.ndarray, keep: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(blur(pixels * keep) / blur(keep), blur(keep)[..., None]) with a Gaussian of ``sigma`` px. Worked out at
    the resolution where the Gaussian is 4 px wide (a blur that wide has no finer detail to lose), so a wide one
    costs milliseconds, not half a second."""
    h, w = keep.shape
    k = min(1.0, 4.0 / sigma)
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small_w = cv2.resize(weighted, size, interpolation=cv2.INTER_AREA)
    small_k = cv2.resize(keep, size, interpolation=cv2.INTER_AREA)
    num = cv2.GaussianBlur(small_w, (0, 0), sigma * k, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(small_k, (0, 0), sigma * k, borderType=cv2.BORDER_REFLECT)
    num = cv2.resize(num, (w, h), interpolation=cv2.INTER_LINEAR)
    den = cv2.resize(den, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    return num / np.maximum(den, 1e-6), den


def inpainted_background(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The portrait with the person filled in from the background around it (once per avatar). The fill is
    worked out at INPAINT_SIDE (a fill has no detail to lose), then laid in only where the person was, with the
    portrait's own pixels everywhere else."""
    h, w = image.shape[:2]
    person = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR) if mask.shape != (h, w) else mask
    k = min(1.0, INPAINT_SIDE / max(h, w))
    size = (max(1, round(w * k)), max(1, round(h * k)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    hole = cv2.resize(person, size, interpolation=cv2.INTER_LINEAR) > 0.05
    hole = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8))  # the fringe of the old cut goes too
    if not hole.any():
        return image.copy()
    if hole.all():  # nothing to fill from: the portrait's mean colour
        return np.broadcast_to(image.reshape(-1, 3).mean(0).astype(np.uint8), image.shape).copy()
    filled = cv2.inpaint(small, hole * 255, 3, cv2.INPAINT_TELEA)
    # A Telea fill streaks along its rays: a blur over the hole (only) makes it read as out-of-focus background.
    soft = cv2.GaussianBlur(filled, (0, 0), max(1.0, max(size) / 96))
    filled = np.where(hole[..., None] > 0, soft, filled)
    big = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    # The fill goes only where the person is (fully from a quarter of the mask up): the scene stays itself
    # exactly, so a pixel that never moves shows the same whether the person is drawn over it or not.
    keep = (1.0 - np.clip(person * 4.0, 0.0, 1.0))[..., None]
    return (image * keep + big * (1.0 - keep) + 0.5).astype(np.uint8)


def extend(image: np.ndarray, pad: tuple[int, int, int, int], like: np.ndarray | None = None) -> np.ndarray:
    """``image`` continued by (left, top, right, bottom) pixels: mirrored at its edges and blurred more the
    further from them, so the continuation reads as out-of-focus room rather than a copy. ``like``: an image
    already extended so, whose continuation this one takes over (the still layers must agree out there)."""
    left, top, right, bottom = (max(0, int(p)) for p in pad)
    if not (left or top or right or bottom):
        return image
    h, w = image.shape[:2]
    side = max(h, w)
    big = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REFLECT_101)
    ph, pw = big.shape[:2]
    k = min(1.0, 64.0 / side)
    small = cv2.resize(big, (max(1, round(pw * k)), max(1, round(ph * k))), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(cv2.GaussianBlur(small, (0, 0), 2.5), (pw, ph), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.ogrid[0:ph, 0:pw]
    out_x = np.maximum(np.maximum(left - xx, xx - (left + w - 1)), 0)
    out_y = np.maximum(np.maximum(top - yy, yy - (top + h - 1)), 0)
    ramp = np.clip(np.maximum(out_x, out_y) / max(0.04 * side, 1.0), 0, 1).astype(np.float32)[..., None]
    out = (big * (1 - ramp) + blurred * ramp + 0.5).astype(np.uint8)
    if like is not None and like.shape == out.shape:
        # Its own mirror image just past the edge (no step there), the other's continuation from a little way out
        # (so nothing of what is only in this image, a person, shows far out).
        near = np.clip(np.maximum(out_x, out_y) / max(0.03 * side, 1.0), 0, 1).astype(np.float32)[..., None]
        out = (out * (1 - near) + like * near + 0.5).astype(np.uint8)
    return out
