"""The renderer interface every backend shares: prepared once per avatar, then one image per target pose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from avatar_app.errors import AvatarAppError

if TYPE_CHECKING:
    from avatar_app.pipeline.avatar import Avatar


MOUTHS = ("painted", "mine", "neural")


@dataclass(frozen=True)
class RenderSettings:
    """size: the output's longer side in pixels (the whole portrait is rendered, aspect kept, even sides)."""

    size: int = 512
    backend: str = "mesh"
    model: str | None = None  # the neural backend's model folder (from `avatar-app export`; None: the shipped one)
    runtime: str = "onnx"  # neural: onnx (onnxruntime) or torchscript
    provider: str | None = None  # neural with onnx: auto (CUDA when present, else CPU), cpu or cuda
    trust_code: bool = False  # neural with torchscript: the user vouches for the model folder (it runs code)
    # The inside of an opened mouth (render/mouth_sources.py): painted, mine (the driver's own) or neural (a mouth
    # model: mouth_model's folder, None: the shipped one).
    mouth: str = "painted"
    mouth_model: str | None = None
    # Live: the frame rate to hold; a renderer that misses it lowers its own rate (neural: the generator every
    # other frame, then the mesh alone; render/pacing.py). None: every frame drawn in full (a file, evaluation).
    live_fps: float | None = None

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 4096:
            raise ValueError(f"size must be between 32 and 4096 pixels, got {self.size}")
        if self.live_fps is not None and not 1 <= self.live_fps <= 240:
            raise ValueError(f"the live frame rate must be between 1 and 240 fps, got {self.live_fps:g}")
        if self.mouth not in MOUTHS:
            raise AvatarAppError(f"unknown mouth '{self.mouth}' - choose one of: {', '.join(MOUTHS)}")
        if self.backend == "neural" and self.runtime == "torchscript" and not self.trust_code:
            raise untrusted_torchscript(self.model)  # refused before any work starts


def untrusted_torchscript(model_dir) -> AvatarAppError:
    """A .ts file is a program: loading and running it can read and overwrite the user's files. ONNX graphs have
    no such operators, so they are the way to use a model someone else made."""
    return AvatarAppError(f"{model_dir}: TorchScript models run code from their files - use --runtime onnx, or add"
                          " --trust-model for a model folder you exported yourself")


def output_size(image_size: tuple[int, int], size: int) -> tuple[int, int]:
    """(w, h) of the output for an image of (w, h): longer side = size, both sides even (video encoders)."""
    w, h = image_size
    scale = size / max(w, h)
    return max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)


class Renderer(Protocol):
    """Turns target landmarks of the portrait (478 x 3, in the portrait's own pixels) into an output image."""

    name: str

    def prepare(self, avatar: Avatar, settings: RenderSettings) -> None:
        """Per-avatar work (resizing, meshes, embeddings): done once, never per frame."""

    @property
    def output_size(self) -> tuple[int, int]:
        """(w, h) of every image render() returns."""

    def render(self, target: np.ndarray, driver=None) -> np.ndarray:
        """The avatar at these landmarks: H x W x 3 uint8 BGR. At the avatar's own landmarks, the portrait.
        ``driver`` (render/mouth_sources.py DriverView): the camera picture and the driver's landmarks, for a mouth
        drawn from the driver's own."""

    def draw(self, target: np.ndarray, driver=None) -> Drawing:
        """The same as render(), before any pixel is drawn (the call's picture draws it at its own size). One call
        per frame, in order (a renderer may carry state from frame to frame: the mouth's strength)."""

    def close(self) -> None:
        """Free what prepare() took."""


class Overlay(Protocol):
    """Something a renderer draws over the warped portrait (the inside of a mouth, a generated face), at whatever
    resolution the picture is made: ``to_canvas`` (2 x 3) takes the renderer's working pixels to the canvas's."""

    def draw(self, canvas: np.ndarray, to_canvas: np.ndarray) -> None: ...


@dataclass
class Drawing:
    """What a renderer made of one target pose, before any pixel is drawn: how far each pixel of its working
    picture reaches into the portrait, and what is drawn over that. The call's picture evaluates it once at the
    call's size, straight from the full-resolution portrait (avatar_app/call/); ``compose()`` at working size."""

    size: tuple[int, int]  # (w, h) of the working picture
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) working px: all that moves lies inside; None: nothing
    reach: np.ndarray | None  # h x w x 2 float32: the portrait position of each pixel less its own (0 outside box)
    overlays: list = field(default_factory=list)
    far: float = 0.0  # the longest reach (working px)

    @property
    def moved(self) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """(box, the absolute map inside it: portrait positions, working px), or None when nothing moves."""
        if self.box is None:
            return None
        x0, y0, x1, y1 = self.box
        return self.box, self.reach[y0:y1, x0:x1] + _pixel_grid(self.size)[y0:y1, x0:x1]

    def displacement(self) -> np.ndarray:
        """The reach over the whole working picture (h x w x 2 float32; zero where nothing moves)."""
        if self.reach is not None:
            return self.reach
        w, h = self.size
        return np.zeros((h, w, 2), np.float32)


_grids: dict[tuple[int, int], np.ndarray] = {}


def _pixel_grid(size: tuple[int, int]) -> np.ndarray:
    """Each pixel's own position (h x w x 2 float32), kept per size (read-only)."""
    grid = _grids.get(size)
    if grid is None:
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        grid = np.dstack([xx, yy])
        grid.flags.writeable = False
        _grids[size] = grid
    return grid


IDENTITY = np.array([[1, 0, 0], [0, 1, 0]], np.float32)


def compose(image: np.ndarray, drawing: Drawing) -> np.ndarray:
    """The drawing at working size: ``image`` (the portrait at working size) warped by its map, overlays on top."""
    out = image.copy()
    if drawing.moved is not None:
        (x0, y0, x1, y1), m = drawing.moved
        out[y0:y1, x0:x1] = cv2.remap(image, m, None, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    for overlay in drawing.overlays:
        overlay.draw(out, IDENTITY)
    return out


def then(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The 2 x 3 affine that applies ``first`` and then ``second``."""
    a = np.vstack([first, [0, 0, 1]]).astype(np.float64)
    b = np.vstack([second, [0, 0, 1]]).astype(np.float64)
    return (b @ a)[:2].astype(np.float32)


@dataclass
class PatchOverlay:
    """A picture (BGR uint8) and its opacity (float32 0..1, same size) placed by ``to_working`` (2 x 3: patch
    pixels -> working pixels): the neural generator's face."""

    image: np.ndarray
    alpha: np.ndarray
    to_working: np.ndarray

    def draw(self, canvas: np.ndarray, to_canvas: np.ndarray) -> None:
        a = then(self.to_working, to_canvas)
        ph, pw = self.alpha.shape
        corners = np.array([[0, 0], [pw, 0], [0, ph], [pw, ph]], np.float32) @ a[:, :2].T + a[:, 2]
        h, w = canvas.shape[:2]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int), [w, h])
        if x1 <= x0 or y1 <= y0:
            return
        a = a.copy()
        a[:, 2] -= (x0, y0)
        size = (int(x1 - x0), int(y1 - y0))
        placed = cv2.warpAffine(self.image, a, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(self.alpha, a, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        region = canvas[y0:y1, x0:x1].astype(np.float32)
        canvas[y0:y1, x0:x1] = (region + alpha * (placed.astype(np.float32) - region) + 0.5).astype(np.uint8)


BACKENDS = ("mesh", "neural")
