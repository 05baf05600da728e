"""The neural backend: an exported generator (onnxruntime, CUDA when present, else CPU; or TorchScript) with the
avatar's precomputed ψ. The mesh renderer animates the portrait first. A warp-conditioned model (the `realtime`
configuration) then takes that warp at the face crop with the landmark image and returns a correction and a
mask, blended over the full-resolution warp; a landmark-conditioned one (the paper's) draws the face from the
landmarks alone, blended inside the face's outline.

The avatar's ê and ψ are made the first time it meets a model (from its portrait, K = 1).

The app needs no torch for this with the ONNX runtime; see export/README.md for the model folder's contract.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.face.crop import box_affine, crop_box, face_crop
from avatar_app.face.landmark_image import draw_landmarks
from avatar_app.pipeline.render.base import IDENTITY, Drawing, PatchOverlay, RenderSettings, compose
# The model folder and the shipped models live in exported.py; named here too, where callers have found them.
from avatar_app.pipeline.render.exported import (  # noqa: F401
    RUNTIMES,
    ExportedModel,
    default_model,
    default_mouth_model,
    is_mouth_model,
    make_identity,
    shipped_models,
    shipped_models_dir,
)
from avatar_app.pipeline.render.mesh import MeshRenderer


class NeuralRenderer:
    name = "neural"

    def __init__(self, model_dir: str | Path | None = None, runtime: str = "onnx", provider: str | None = None,
                 trust_code: bool = False, model=None):
        """``model``: an object with ExportedModel's interface instead of a folder (evaluation's fine-tuned G)."""
        self.model = model if model is not None else ExportedModel(model_dir, runtime, provider, trust_code)
        self.mesh = MeshRenderer()
        self.identity_made = False  # prepare() gave the avatar its ê and ψ (the caller may save the avatar)
        self._working: np.ndarray | None = None
        self._drawn_by_mesh = 0

    def prepare(self, avatar, settings: RenderSettings = RenderSettings()) -> None:
        neural = getattr(avatar, "neural", None)
        self.identity_made = neural is None or neural.model_id != self.model.model_id
        if self.identity_made:  # first use with this model: ê and ψ from the portrait itself (K = 1)
            avatar.neural = make_identity(self.model, [avatar.image], [avatar.landmarks])
        self.mesh.prepare(avatar, settings)
        self._psi = avatar.neural.psi[None].astype(np.float32)
        w, h = self.mesh.output_size
        scale = np.array([w, h]) / np.array(avatar.size)
        # The face crop is fixed per avatar (the portrait's own, in output pixels), so a head that moves stays
        # in the model's view, as the face moved inside each clip's fixed crop in training.
        x0, y0, side = crop_box(avatar.landmarks, self.model.crop_scale)
        self._box = (x0, y0, side)
        self._scale = scale
        s = self.model.size
        bx, by, bs = x0 * scale[0], y0 * scale[1], side * scale[0]  # the box in output pixels
        self._to_crop = box_affine((bx, by, bs), s)
        self._from_crop = cv2.invertAffineTransform(self._to_crop)
        # The correction fades out over the crop's outer eighth: no seam where the crop ends.
        ramp = np.clip(np.minimum(np.arange(s), np.arange(s)[::-1]) / (s / 8), 0, 1).astype(np.float32)
        self._taper = np.minimum.outer(ramp, ramp)

    @property
    def output_size(self) -> tuple[int, int]:
        return self.mesh.output_size

    def render(self, target: np.ndarray, driver=None) -> np.ndarray:
        drawing = self.draw(target, driver, keep_working=True)
        out = self._working
        for overlay in drawing.overlays[self._drawn_by_mesh:]:  # the mesh's own are in the working picture
            overlay.draw(out, IDENTITY)
        return out

    def draw(self, target: np.ndarray, driver=None, keep_working: bool = False) -> Drawing:
        """The mesh warp's drawing, with the generator's face as one more overlay on top."""
        drawing = self.mesh.draw(target, driver)
        self._drawn_by_mesh = len(drawing.overlays)
        s = self.model.size
        lm = draw_landmarks(target, self._box, s, self.model.thickness).transpose(2, 0, 1)[None]
        lm = np.ascontiguousarray(lm, dtype=np.float32)
        if self.model.conditioning == "warp":
            # The generator corrects the warp as it was trained to: it sees the mesh's picture of the crop.
            out = compose(self.mesh.image, drawing)
            self._working = out if keep_working else None
            crop = face_crop(out, self._to_crop, s)
            warp = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
            rgb, mask = self.model.correct(np.ascontiguousarray(warp), lm, self._psi)
            face = cv2.cvtColor(((rgb[0].transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
            drawing.overlays.append(PatchOverlay(face, (mask[0, 0] * self._taper).astype(np.float32), self._from_crop))
            return drawing
        if keep_working:
            self._working = compose(self.mesh.image, drawing)
        face = self.model.generate(lm, self._psi)[0]
        face = cv2.cvtColor(((face.transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        # The generated crop goes over the output inside the target face's outline (feathered).
        outline = (np.asarray(target)[L.FACE_OVAL, :2] * self._scale) @ self._to_crop[:, :2].T + self._to_crop[:, 2]
        alpha = np.zeros((s, s), np.float32)
        cv2.fillPoly(alpha, [np.round(outline).astype(np.int32)], 1.0)
        feather = max(3, int(s / 40) | 1)
        drawing.overlays.append(PatchOverlay(face, cv2.GaussianBlur(alpha, (feather, feather), 0), self._from_crop))
        return drawing

    def set_head_reach(self, radii: float) -> None:
        self.mesh.set_head_reach(radii)

    def close(self) -> None:
        self.mesh.close()
