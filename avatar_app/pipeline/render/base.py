"""The renderer interface every backend shares: prepared once per avatar, then one image per target pose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from avatar_app.errors import AvatarAppError

if TYPE_CHECKING:
    from avatar_app.pipeline.avatar import Avatar


@dataclass(frozen=True)
class RenderSettings:
    """size: the output's longer side in pixels (the whole portrait is rendered, aspect kept, even sides)."""

    size: int = 512
    backend: str = "mesh"
    model: str | None = None  # the neural backend's model folder (from `avatar-app export`; None: the shipped one)
    runtime: str = "onnx"  # neural: onnx (onnxruntime) or torchscript
    provider: str | None = None  # neural with onnx: auto (CUDA when present, else CPU), cpu or cuda
    trust_code: bool = False  # neural with torchscript: the user vouches for the model folder (it runs code)

    def __post_init__(self) -> None:
        if not 32 <= self.size <= 4096:
            raise ValueError(f"size must be between 32 and 4096 pixels, got {self.size}")
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

    def render(self, target: np.ndarray) -> np.ndarray:
        """The avatar at these landmarks: H x W x 3 uint8 BGR. At the avatar's own landmarks, the portrait."""

    def close(self) -> None:
        """Free what prepare() took."""


BACKENDS = ("mesh", "neural")
