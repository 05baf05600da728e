"""The call's picture: the framing's crop composed with the renderer's warp and drawn once, at the call's size,
straight from the full-resolution portrait.

Per frame the renderer says where each of its working pixels takes the portrait from (a Drawing, at the
working Size); that map is resampled at the call's pixels through the crop (one warpAffine of the map, never of
an image), and the portrait is drawn through it by one remap, so the call gets the portrait's own pixels rather
than an upscaled small render. A portrait with too few pixels for the crop is upscaled once per avatar
(UPSCALE_METHOD, chosen by benchmarks/call_picture.py). The person (the portrait's alpha: its person mask) is
drawn over the still background layer (background.py), so only the person moves; the mouth and any generated
face are painted over that at the call's size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from avatar_app.call.background import (BackgroundSettings, avatar_mask, blurred_background, extend,
                                        inpainted_background)
from avatar_app.call.framing import Crop, Framer, FramingSettings, crown, side_reach
from avatar_app.face import landmarks as L
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.base import Drawing

if TYPE_CHECKING:
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import Avatar

# How a portrait with too few pixels for the call is enlarged, once per avatar. Measured on the shipped
# paintings and the shared portraits (benchmarks/call_picture.py --upscalers): Lanczos keeps the most of a
# painting's texture of what OpenCV offers without weights (no super-resolution network can be downloaded).
UPSCALE_METHOD = cv2.INTER_LANCZOS4
MAX_UPSCALE = 4.0
MAX_SOURCE_SIDE = 4096
EDGE_FADE = 0.015  # the person fades out over this share of the portrait's size at its edges (no hard cut)
# Bilinear sampling at sub-pixel offsets keeps only ~0.55 of the high-frequency energy a cubic resize keeps
# (variance of the Laplacian, the shipped paintings at scales 0.96-1.3); a cubic remap would cost 4.5 times a
# bilinear one per frame. So the layers are sharpened once per avatar by what bilinear sampling takes away on
# average: an unsharp mask of this amount and sigma (px) brings the ratio to ~0.9-1.0 (benchmarks/call_picture.py).
PRESHARPEN = (0.4, 0.8)
# Hair further out than this (outline radii) follows the head only in part: on the 38 benchmark clips, moving
# more of a real head's surroundings with the tracked motion (never quite the real one) cost SSIM (mead clip:
# 0.909 at the crown's 1.94 radii, 0.925 at 1.3).
MAX_HEAD_REACH = 1.6


@dataclass(frozen=True)
class CallSettings:
    framing: FramingSettings = FramingSettings()
    background: BackgroundSettings = BackgroundSettings()


@dataclass
class Scene:
    """One animation's layers at the call's resolution, made once per avatar, renderer size and call settings.
    Both still layers reach ``pad`` source pixels past the portrait's left and top (the continuation)."""

    source: np.ndarray  # BGRA uint8: the portrait at ``k`` source px per portrait px, its person mask as alpha
    k: float
    behind: np.ndarray  # BGR uint8: what lies behind the person (inpainted background, blurred, or a colour)
    plate: np.ndarray  # BGR uint8: what every pixel that does not move shows (the portrait; over a colour or blur,
    # the person at rest over ``behind``)
    pad: tuple[int, int]
    portrait_size: tuple[int, int]  # (w, h) of the portrait
    rest: np.ndarray  # the portrait's landmarks
    crown: np.ndarray  # the top of the head at rest (portrait px)
    working_size: tuple[int, int]
    person_box: tuple[float, float, float, float]  # where the person is at rest (portrait px): x0, y0, x1, y1


def source_scale(avatar: Avatar, s: FramingSettings) -> float:
    """Source pixels per portrait pixel for this framing: about one source pixel per call pixel."""
    iw, ih = avatar.size
    if s.mode == "fit":
        ch = max(ih, iw / s.aspect)
    elif s.mode == "fill":
        ch = min(ih, iw / s.aspect)
    else:
        ch = min(np.ptp(np.asarray(avatar.landmarks)[:, 1]) / s.head_share, ih)
    k = s.height / max(ch, 1.0)
    k = min(k, MAX_UPSCALE, MAX_SOURCE_SIDE / max(iw, ih))
    return 1.0 if 0.9 <= k <= 1.1 else float(k)


def resample(image: np.ndarray, k: float) -> np.ndarray:
    if k == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * k)), max(1, round(h * k)))
    # Shrinking by less than half, cubic keeps the texture that area averaging softens (and aliases little);
    # further, area averaging (a cubic would alias).
    shrink = cv2.INTER_CUBIC if k >= 0.5 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=UPSCALE_METHOD if k > 1 else shrink)


def presharpen(image: np.ndarray) -> np.ndarray:
    """``image`` (BGR, or BGRA with its alpha kept) with PRESHARPEN's unsharp mask: see there."""
    amount, sigma = PRESHARPEN
    colour = image[..., :3]
    sharp = cv2.addWeighted(colour, 1 + amount, cv2.GaussianBlur(colour, (0, 0), sigma), -amount, 0)
    return sharp if image.shape[2] == 3 else np.dstack([sharp, image[..., 3]])


def make_scene(avatar: Avatar, working_size: tuple[int, int], settings: CallSettings) -> Scene:
    """The layers for one avatar (the person cut out the first time an avatar is seen: avatar_mask)."""
    s = settings.framing
    iw, ih = avatar.size
    k = source_scale(avatar, s)
    mask = avatar_mask(avatar)
    person = cv2.resize(mask, (iw, ih), interpolation=cv2.INTER_LINEAR)
    # The person fades out at the portrait's edges, where its figure is cut: no hard line against the still
    # layer's continuation beyond them.
    fade = max(1.0, EDGE_FADE * max(iw, ih))
    yy, xx = np.ogrid[0:ih, 0:iw]
    edge = np.minimum(np.minimum(xx, iw - 1 - xx), np.minimum(yy, ih - 1 - yy)).astype(np.float32)
    border = np.clip((edge + 0.5) / fade, 0, 1)
    # The moving layer keeps the person whole up to the portrait's edge (a head that moves down brings the hair the
    # frame cut off along, repeated from the edge, instead of a line across it); the still layers fade it there.
    whole = np.clip(person * 255 + 0.5, 0, 255).astype(np.uint8)
    person *= border
    alpha = np.clip(person * 255 + 0.5, 0, 255).astype(np.uint8)
    if settings.background.mode == "colour":
        behind = np.empty((ih, iw, 3), np.uint8)
        behind[:] = settings.background.colour
    elif settings.background.mode == "blur":
        behind = blurred_background(avatar.image, person, settings.background.blur * max(iw, ih))
    else:
        behind = inpainted_background(avatar.image, person)
    # The plate is the portrait itself: a picture at rest is the portrait, to the pixel. (With a colour or a blur
    # behind, it is the person at rest over that.)
    if settings.background.mode == "keep":
        plate = avatar.image.copy()
    else:
        plate = (avatar.image * person[..., None] + behind * (1.0 - person[..., None]) + 0.5).astype(np.uint8)
    rx, ry = side_reach((iw, ih), avatar.landmarks, s) if s.mode == "follow" else (0, 0)
    if settings.background.mode == "colour":
        behind = cv2.copyMakeBorder(behind, ry, 0, rx, rx, cv2.BORDER_REPLICATE)
        plate = cv2.copyMakeBorder(plate, ry, 0, rx, rx, cv2.BORDER_REPLICATE)
    else:
        behind = extend(behind, (rx, ry, rx, 0))
        plate = extend(plate, (rx, ry, rx, 0), like=behind)  # out there, both the same: no person
    ys, xs = np.nonzero(alpha)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)) if len(xs) else (0.0, 0.0, 0.0, 0.0)
    # Sharpened only where the picture resamples: a crop that maps call pixels onto source pixels one to one (the
    # whole portrait at its own size, as `render` without --framing and `evaluate` draw it) loses nothing.
    scale, _, _ = crop_affine((0, 0, max(ih, iw / s.aspect) if s.mode == "fit" else min(ih, iw / s.aspect)), s.size)
    sharpen = presharpen if s.mode == "follow" or abs(scale * k - 1.0) > 1e-6 else (lambda image: image)
    return Scene(sharpen(resample(np.dstack([avatar.image, whole]), k)), k, sharpen(resample(behind, k)),
                 sharpen(resample(plate, k)),
                 (round(rx * k), round(ry * k)), (iw, ih), np.asarray(avatar.landmarks),
                 crown(avatar.landmarks, mask, (iw, ih)), working_size, box)


def head_reach(scene: Scene) -> float:
    """How far the head and its hair reach, in outline radii from the face's centre: to the crown (the hair's
    soft edge fades out beyond it with the renderer's HEAD_FADE), at most MAX_HEAD_REACH."""
    oval = scene.rest[L.FACE_OVAL, :2]
    centre = oval.mean(0)
    radius = max(float(np.sqrt(np.mean(np.sum((oval - centre) ** 2, 1)))), 1.0)
    return float(min(np.linalg.norm(scene.crown - centre) / radius, MAX_HEAD_REACH))


def crop_affine(crop: Crop, size: tuple[int, int]) -> tuple[float, float, float]:
    """(scale, x0, y0): call pixel (u, v) shows portrait position (x0 + scale * u, y0 + scale * v)."""
    cx, cy, ch = crop
    w, h = size
    a = ch / h
    return a, cx - a * w / 2 + a / 2 - 0.5, cy - ch / 2 + a / 2 - 0.5


class _Workspace:
    """Per-thread scratch arrays, reused frame after frame. ``get`` hands out a C-contiguous view of a flat buffer
    that only ever grows, so a box whose size changes every frame allocates nothing (OpenCV also takes a view of
    a larger array the slow way: these are whole arrays to it)."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        flat = self._flat.get(name)
        if flat is None or flat.size < n:
            flat = self._flat[name] = np.empty(max(n, 1), np.uint8)
        return flat[:n].view(dtype).reshape(shape)


_local = threading.local()


def _workspace() -> _Workspace:
    ws = getattr(_local, "workspace", None)
    if ws is None:
        ws = _local.workspace = _Workspace()
    return ws


MOVED_PX = 1.0  # source px: from a move this long, the picture is the moved person over what lies behind
MAP_STEP = 4  # the map is resampled at every 4th call pixel, then upsampled: it is smooth at that scale


def draw_call_picture(scene: Scene, drawing: Drawing | None, crop: Crop, size: tuple[int, int],
                      bars: bool = False) -> np.ndarray:
    """The call's picture (size = (w, h)) of ``drawing`` (None: the portrait at rest) seen through ``crop``.

    Every pixel that does not move shows the still plate (the person at rest over what lies behind), cut and
    resized; only inside the box of what moves is the person drawn through the renderer's map and laid over the
    layer behind it. At the box's edge nothing moves, so the two agree there: no seam."""
    w, h = size
    ws = _workspace()
    a, x0, y0 = crop_affine(crop, size)
    k = scene.k
    px, py = scene.pad
    # call pixel (u, v) -> source pixel (sx0 + s * u, sy0 + s * v)
    cut_at = (a * k, ((x0 + 0.5) * k - 0.5 + px, (y0 + 0.5) * k - 0.5 + py))
    out, (s, sx0, sy0) = _cut(scene.plate, *cut_at, size)  # placed to the source pixel
    box = _moving_box(scene, drawing, (s, sx0 - px, sy0 - py), size)
    if box is not None:
        _draw_person(out, scene, drawing, (s, sx0, sy0), box, ws, cut_at)
    if drawing is not None and drawing.overlays:
        to_canvas = cv2.invertAffineTransform(_call_to_working(scene, (s, sx0, sy0)))
        for overlay in drawing.overlays:
            overlay.draw(out, to_canvas)
    if bars:  # "fit": black where the crop lies outside the portrait
        iw, ih = scene.portrait_size
        lo_x, lo_y = (px - sx0) / s, (py - sy0) / s
        hi_x, hi_y = (px + iw * k - 1 - sx0) / s, (py + ih * k - 1 - sy0) / s
        u0, u1 = int(np.ceil(lo_x - 1e-6)), int(np.floor(hi_x + 1e-6)) + 1
        v0, v1 = int(np.ceil(lo_y - 1e-6)), int(np.floor(hi_y + 1e-6)) + 1
        out[:, : max(0, u0)] = 0
        out[:, max(0, min(w, u1)):] = 0
        out[: max(0, v0)] = 0
        out[max(0, min(h, v1)):] = 0
    return out


def _call_to_working(scene: Scene, place: tuple[float, float, float]) -> np.ndarray:
    """2 x 3: call px -> the renderer's working px, for a picture placed at (s, sx0, sy0) in the padded layers."""
    s, sx0, sy0 = place
    px, py = scene.pad
    k = scene.k
    ww, wh = scene.working_size
    iw, ih = scene.portrait_size
    fx, fy = ww / iw, wh / ih
    # source px -> portrait px: (x + 0.5) / k - 0.5; portrait px -> working px: (x + 0.5) * f - 0.5
    return np.array([[s / k * fx, 0, (sx0 - px + 0.5) / k * fx - 0.5],
                     [0, s / k * fy, (sy0 - py + 0.5) / k * fy - 0.5]], np.float32)


def _cut(layer: np.ndarray, s: float, start: tuple[float, float], size: tuple[int, int]):
    """The call's picture of a still layer: call pixel u shows layer pixel start + s * u. The origin is placed to
    the layer's pixel and the side to the pixel (a slice resized, several times cheaper than a warp); returns
    the picture and the placement (s, x0, y0) it really has, which everything else in the picture follows."""
    w, h = size
    lh, lw = layer.shape[:2]
    cw, ch = max(1, int(round(s * w))), max(1, int(round(s * h)))
    x = int(round(start[0] + s / 2 - 0.5))
    y = int(round(start[1] + s / 2 - 0.5))
    patch = layer[max(0, y) : max(0, y + ch), max(0, x) : max(0, x + cw)]
    if patch.shape[:2] != (ch, cw):  # past the layer ("fit" shows the whole portrait and more): its edge repeats
        top, left = max(0, -y), max(0, -x)
        patch = cv2.copyMakeBorder(np.ascontiguousarray(patch) if patch.size else layer[:1, :1], top,
                                   max(0, ch - patch.shape[0] - top), left, max(0, cw - patch.shape[1] - left),
                                   cv2.BORDER_REPLICATE)
    # cv2.resize: out pixel u shows patch pixel (u + 0.5) * cw / w - 0.5
    sx, sy = cw / w, ch / h
    place = (sx, x + 0.5 * sx - 0.5, y + 0.5 * sy - 0.5)  # (the two scales differ by under a pixel's share)
    if (cw, ch) == (w, h):
        return patch.copy(), place
    if not patch.flags.c_contiguous:
        flat = _workspace().get("patch", patch.shape)
        flat[:] = patch
        patch = flat
    # Area averaging only where it shrinks a lot: near 1:1 OpenCV's area resize is several times slower.
    out = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA if ch > 1.5 * h else cv2.INTER_LINEAR)
    return out, place


def _moving_box(scene: Scene, drawing: Drawing | None, place: tuple[float, float, float],
                size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The call pixels (u0, v0, u1, v1) where anything moves and the person can be: the renderer's moving box
    through the crop, within the person's box at rest grown by the farthest the renderer moves anything this
    frame; None when nothing moves in the picture."""
    if drawing is None or drawing.box is None:
        return None
    s, sx0, sy0 = place  # in source px without the pad
    w, h = size
    k = scene.k
    ww, wh = scene.working_size
    iw, ih = scene.portrait_size
    far = drawing.far * max(iw / ww, ih / wh)  # portrait px
    mx0, my0, mx1, my1 = drawing.box
    # working px -> portrait px -> source px
    bx0, by0, bx1, by1 = scene.person_box
    lo_x = max(mx0 * iw / ww, bx0 - far) * k
    hi_x = min(mx1 * iw / ww, bx1 + far) * k
    lo_y = max(my0 * ih / wh, by0 - far) * k
    hi_y = min(my1 * ih / wh, by1 + far) * k
    u0, u1 = int(np.floor((lo_x - sx0) / s)) - 2, int(np.ceil((hi_x - sx0) / s)) + 3
    v0, v1 = int(np.floor((lo_y - sy0) / s)) - 2, int(np.ceil((hi_y - sy0) / s)) + 3
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, w), min(v1, h)
    return None if u1 <= u0 or v1 <= v0 else (u0, v0, u1, v1)


def _draw_person(out: np.ndarray, scene: Scene, drawing: Drawing, place: tuple[float, float, float],
                 box: tuple[int, int, int, int], ws: _Workspace, cut_at) -> None:
    """Inside ``box`` (call px) of ``out``: the person drawn through the renderer's map, over what lies behind."""
    s, sx0, sy0 = place
    px, py = scene.pad
    u0, v0, u1, v1 = box
    bw, bh = u1 - u0, v1 - v0
    step = MAP_STEP
    # Call pixel (u, v) -> source pixel: the placement, exactly, plus how far the renderer moves that point,
    # resampled from its working map at every step-th pixel and upsampled (a linear ramp upsamples exactly).
    # One cell more on each side, so the box's edges are interpolated too, not clamped.
    nu, nv = -(-bw // step) + 2, -(-bh // step) + 2
    us = u0 + (np.arange(nu) - 1) * step + (step - 1) / 2  # call px of each small cell's centre
    vs = v0 + (np.arange(nv) - 1) * step + (step - 1) / 2
    gx = (sx0 - px + s * us).astype(np.float32)  # source px, unpadded (the person's own image)
    gy = (sy0 - py + s * vs).astype(np.float32)
    to_working = _call_to_working(scene, place).astype(np.float64)
    to_working[:, :2] *= step
    to_working[:, 2] += to_working[:, :2].diagonal() / step * (us[0], vs[0])
    k = scene.k
    ww, wh = scene.working_size
    iw, ih = scene.portrait_size
    # Past the renderer's picture (the portrait's continuation) nothing moves: no person is drawn out there.
    moved = cv2.warpAffine(drawing.displacement(), to_working.astype(np.float32), (nu, nv),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                           borderValue=(0, 0, 0, 0))
    small_x = moved[..., 0] * np.float32(k * iw / ww) + gx[None, :]
    small_y = moved[..., 1] * np.float32(k * ih / wh) + gy[:, None]
    big = ws.get("big", (nv * step, nu * step), np.float32)
    map_x, map_y = ws.get("map_x", (bh, bw), np.float32), ws.get("map_y", (bh, bw), np.float32)
    cv2.resize(small_x, (nu * step, nv * step), dst=big, interpolation=cv2.INTER_LINEAR)
    map_x[:] = big[step : step + bh, step : step + bw]
    cv2.resize(small_y, (nu * step, nv * step), dst=big, interpolation=cv2.INTER_LINEAR)
    map_y[:] = big[step : step + bh, step : step + bw]
    person = ws.get("person", (bh, bw, 4))
    cv2.remap(scene.source, map_x, map_y, dst=person, interpolation=cv2.INTER_LINEAR,
              borderMode=cv2.BORDER_REPLICATE)
    # What lies behind, exactly where the plate's pixels lie: cut the same way (both layers have one size), the
    # box taken from it (a resize of the whole picture costs less than a warp of the box).
    behind = ws.get("behind", (bh, bw, 3))
    behind[:] = _cut(scene.behind, *cut_at, (out.shape[1], out.shape[0]))[0][v0:v1, u0:u1]
    # out = person * alpha + behind * (1 - alpha), in 8 bits (OpenCV's saturating multiplies)
    colour, alpha, alpha1 = ws.get("colour", (bh, bw, 3)), ws.get("alpha", (bh, bw, 3)), ws.get("alpha1", (bh, bw))
    cv2.cvtColor(person, cv2.COLOR_BGRA2BGR, dst=colour)
    cv2.extractChannel(person, 3, dst=alpha1)
    cv2.cvtColor(alpha1, cv2.COLOR_GRAY2BGR, dst=alpha)
    cv2.multiply(colour, alpha, dst=colour, scale=1 / 255)
    cv2.bitwise_not(alpha, dst=alpha)
    cv2.multiply(behind, alpha, dst=behind, scale=1 / 255)
    cv2.add(colour, behind, dst=behind)
    # Where the map hardly moves anything, the plate (the portrait itself) stays: the composite comes in as the
    # move grows to MOVED_PX, so nothing changes where nothing moves (the soft edge of the person mask over the
    # filled-in background is never quite the portrait's own), and nothing steps where the move begins.
    step_px = np.float32(k * iw / ww)
    beta_small = np.clip(np.sqrt(moved[..., 0] ** 2 + moved[..., 1] ** 2) * step_px / MOVED_PX, 0, 1)
    beta_big = cv2.resize(beta_small, (nu * step, nv * step), interpolation=cv2.INTER_LINEAR)
    beta = ws.get("beta", (bh, bw))
    beta[:] = np.rint(beta_big[step : step + bh, step : step + bw] * 255)
    cv2.cvtColor(beta, cv2.COLOR_GRAY2BGR, dst=alpha)
    region = ws.get("region", (bh, bw, 3))
    region[:] = out[v0:v1, u0:u1]
    cv2.multiply(behind, alpha, dst=behind, scale=1 / 255)
    cv2.bitwise_not(alpha, dst=alpha)
    cv2.multiply(region, alpha, dst=region, scale=1 / 255)
    out[v0:v1, u0:u1] = cv2.add(behind, region)


class CallPicture:
    """The call-picture stage: fills ``frame.call_image`` from ``frame.drawing`` (the renderer's map and
    overlays for this frame), the framing's crop and the avatar's layers. Runs on the renderer's thread."""

    name = "call"

    def __init__(self, settings: CallSettings = CallSettings(), framer: Framer | None = None):
        self.settings = settings
        self.framer = framer if framer is not None and framer.settings == settings.framing else Framer(settings.framing)
        self._lock = threading.Lock()
        self._scenes: dict[int, Scene] = {}  # by animation (generation): the newest two

    def with_settings(self, settings: CallSettings) -> CallPicture:
        """A stage for other settings that keeps this one's camera position (when the framing is unchanged)."""
        return CallPicture(settings, self.framer)

    def open(self) -> None:
        pass

    def prepare(self, animator: Animator) -> None:
        """Per-animation work (the layers; the first time an avatar is seen, its segmentation): off the
        renderer's thread, before this animation's first frame. Without it, that first frame does it (once)."""
        self._scene(animator)

    def process(self, frame: Frame) -> None:
        animator = frame.animator
        if animator is None:
            return
        scene = self._scene(animator)
        crop = self.framer.crop(frame.target, scene.rest, scene.crown, scene.portrait_size, frame.time)
        frame.call_image = draw_call_picture(scene, frame.drawing, crop, self.settings.framing.size,
                                             bars=self.settings.framing.mode == "fit")

    def close(self) -> None:
        with self._lock:
            self._scenes = {}

    def _scene(self, animator: Animator) -> Scene:
        with self._lock:
            scene = self._scenes.get(animator.generation)
        if scene is not None:
            return scene
        scene = make_scene(animator.avatar, animator.output_size, self.settings)
        reach = getattr(animator.renderer, "set_head_reach", None)
        if reach is not None:  # the hair moves with the head up to the top of the head, not a fixed radius
            reach(head_reach(scene))
        with self._lock:
            newest = sorted(self._scenes)[-1:]  # frames of the previous animation may still be on their way
            self._scenes = {g: self._scenes[g] for g in newest}
            self._scenes[animator.generation] = scene
        return scene
