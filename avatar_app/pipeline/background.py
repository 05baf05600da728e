"""What shows behind the avatar, for streamers who key it over a scene: the portrait's own background (keep), that
background blurred, or a solid colour (a green screen).

The person is cut out once per avatar (MediaPipe's selfie segmentation, cleaned up with GrabCut and softened
along the portrait's own edges) and the cut moves with the head every frame by the renderer's own warp, so hair
and shoulders that the mesh moves take their mask along. The background itself stands still, as a room behind a
webcam does.
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
from avatar_app.pipeline.frame import Frame

if TYPE_CHECKING:
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import Avatar

BACKGROUNDS = ("keep", "blur", "colour")
GREEN_SCREEN = "#00b140"  # chroma-key green, what keying filters (OBS's among them) expect by default
NAMED_COLOURS = {"green": GREEN_SCREEN, "blue": "#0047bb", "black": "#000000", "white": "#ffffff"}

MASK_SIDE = 512  # the person mask's resolution (longer side); it is resized to each output size once
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


@dataclass(frozen=True)
class _Scene:
    """One animation's background: the person mask at the output size and the still picture behind."""

    mask: np.ndarray  # H x W float32, the avatar at rest
    behind: np.ndarray  # H x W x 3 uint8


class BackgroundStage:
    """The background stage: over ``frame.output`` (in place), out = mask * avatar + (1 - mask) * background,
    with the avatar's person mask moved as the renderer moved the portrait this frame. "keep" leaves the frame
    alone. Runs on the renderer's thread, right after the renderer (its warp is reused)."""

    name = "background"

    def __init__(self, settings: BackgroundSettings = BackgroundSettings()):
        self.settings = settings
        self._lock = threading.Lock()
        self._scenes: dict[int, _Scene] = {}  # by animation (generation): the newest two

    def open(self) -> None:
        pass

    def prepare(self, animator: Animator) -> None:
        """Per-animation work (the mask at the output size, the picture behind; the first time an avatar is seen,
        its segmentation): off the renderer's thread, before this animation's first frame. Without it, that
        first frame does it (once)."""
        if self.settings.mode != "keep":
            self._scene(animator)

    def process(self, frame: Frame) -> None:
        if self.settings.mode == "keep" or frame.output is None or frame.animator is None:
            return
        animator = frame.animator
        scene = self._scene(animator)
        mask = scene.mask
        if mask.shape != frame.output.shape[:2]:  # not the renderer's own picture: nothing to key it by
            return
        warp_like = getattr(animator.renderer, "warp_like", None)
        if warp_like is not None and frame.target is not None:
            mask = warp_like(mask, frame.target)
        # In place where the output allows it (OpenCV hands back a new array for one that does not).
        frame.output = cv2.blendLinear(frame.output, scene.behind, mask, 1.0 - mask, dst=frame.output)

    def close(self) -> None:
        with self._lock:
            self._scenes = {}

    def _scene(self, animator: Animator) -> _Scene:
        with self._lock:
            scene = self._scenes.get(animator.generation)
        if scene is not None:
            return scene
        w, h = animator.output_size
        person = avatar_mask(animator.avatar)
        shrink = w < person.shape[1]
        mask = cv2.resize(person, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if self.settings.mode == "blur":
            image = cv2.resize(animator.avatar.image, (w, h), interpolation=cv2.INTER_AREA)
            behind = blurred_background(image, mask, self.settings.blur * max(w, h))
        else:
            behind = np.empty((h, w, 3), np.uint8)
            behind[:] = self.settings.colour
        scene = _Scene(mask, behind)
        with self._lock:
            newest = sorted(self._scenes)[-1:]  # frames of the previous animation may still be on their way
            self._scenes = {g: self._scenes[g] for g in newest}
            self._scenes[animator.generation] = scene
        return scene
