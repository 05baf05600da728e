"""The neural backend: an exported generator (onnxruntime, CUDA when present, else CPU; or TorchScript) with the
avatar's precomputed ψ. The mesh renderer animates the portrait first. A warp-conditioned model (the `realtime`
configuration) then takes that warp at the face crop with the landmark image and returns a correction and a
mask, blended over the full-resolution warp; a landmark-conditioned one (the paper's) draws the face from the
landmarks alone, blended inside the face's outline.

The avatar's ê and ψ are made the first time it meets a model (from its portrait, K = 1).

Live (``RenderSettings.live_fps``), the generator's own time per run is held against its share of the frame
budget: a busy machine makes it run every other frame (its last face carried between), then not at all (the mesh
warp alone), and back step by step once it fits again (render/pacing.py); ``degraded`` names the mode.

The app needs no torch for this with the ONNX runtime; see export/README.md for the model folder's contract.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
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
from avatar_app.pipeline.render.pacing import CARRY, PROBE, RUN, GeneratorPace, PacingSettings


class NeuralRenderer:
    name = "neural"

    def __init__(self, model_dir: str | Path | None = None, runtime: str = "onnx", provider: str | None = None,
                 trust_code: bool = False, model=None, pacing: PacingSettings = PacingSettings(),
                 clock=time.perf_counter):
        """``model``: an object with ExportedModel's interface instead of a folder (evaluation's fine-tuned G).
        ``pacing``: how the generator gives way under load when ``prepare`` is given a ``live_fps`` (its fps is
        taken from there); ``clock``: what times the generator (tests give a fake one)."""
        self.model = model if model is not None else ExportedModel(model_dir, runtime, provider, trust_code)
        self.mesh = MeshRenderer()
        self.identity_made = False  # prepare() gave the avatar its ê and ψ (the caller may save the avatar)
        self._working: np.ndarray | None = None
        self._drawn_by_mesh = 0
        self._pacing, self._clock = pacing, clock
        self.pace = GeneratorPace(pacing, clock)
        self._live = False
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # the last generated face and its opacity

    def prepare(self, avatar, settings: RenderSettings = RenderSettings()) -> None:
        neural = getattr(avatar, "neural", None)
        self.identity_made = neural is None or neural.model_id != self.model.model_id
        if self.identity_made:  # first use with this model: ê and ψ from the portrait itself (K = 1)
            avatar.neural = make_identity(self.model, [avatar.image], [avatar.landmarks])
        self.mesh.prepare(avatar, settings)
        self._psi = avatar.neural.psi[None].astype(np.float32)
        self._live = settings.live_fps is not None
        self.pace = GeneratorPace(replace(self._pacing, fps=settings.live_fps) if self._live else self._pacing,
                                  self._clock)
        self._last = None
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

    @property
    def degraded(self) -> str:
        """What the generator does now, in the user's words: "full", "every other frame" or "mesh only"."""
        return self.pace.mode

    @property
    def mode_frames(self) -> dict[str, int]:
        """Frames drawn in each mode since prepare()."""
        return dict(self.pace.mode_frames)

    def render(self, target: np.ndarray, driver=None) -> np.ndarray:
        drawing = self.draw(target, driver, keep_working=True)
        out = self._working
        for overlay in drawing.overlays[self._drawn_by_mesh:]:  # the mesh's own are in the working picture
            overlay.draw(out, IDENTITY)
        return out

    def draw(self, target: np.ndarray, driver=None, keep_working: bool = False) -> Drawing:
        """The mesh warp's drawing, with the generator's face as one more overlay on top (under load: the last
        face carried, or none; see ``degraded``)."""
        drawing = self.mesh.draw(target, driver)
        self._drawn_by_mesh = len(drawing.overlays)
        todo = self.pace.next_frame()
        generate = todo in (RUN, PROBE)
        warp_model = self.model.conditioning == "warp"
        self._working = None
        if keep_working or (generate and warp_model):
            out = compose(self.mesh.image, drawing)
            self._working = out if keep_working else None
        if generate:
            # A probe (the mesh alone shows) checks whether the load has gone; its face is kept for the next carry.
            self._last = self._correction(out, target) if warp_model else self._generated(target)
        if todo in (RUN, CARRY) and self._last is not None:
            # A carried face is one frame old; the crop is fixed per avatar, so it goes where this frame's would.
            drawing.overlays.append(PatchOverlay(*self._last, self._from_crop))
        return drawing

    def _timed(self):
        return self.pace.timed() if self._live else nullcontext()

    def _landmark_image(self, target: np.ndarray) -> np.ndarray:
        lm = draw_landmarks(target, self._box, self.model.size, self.model.thickness).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(lm, dtype=np.float32)

    def _correction(self, out: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A warp-conditioned model corrects the warp as it was trained to: it sees the mesh's picture of the crop."""
        lm = self._landmark_image(target)
        crop = face_crop(out, self._to_crop, self.model.size)
        warp = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1.0
        with self._timed():
            rgb, mask = self.model.correct(np.ascontiguousarray(warp), lm, self._psi)
        face = cv2.cvtColor(((rgb[0].transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        return face, (mask[0, 0] * self._taper).astype(np.float32)

    def _generated(self, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A landmark-conditioned model draws the face; it goes over the output inside the target face's outline
        (feathered)."""
        s = self.model.size
        lm = self._landmark_image(target)
        with self._timed():
            face = self.model.generate(lm, self._psi)[0]
        face = cv2.cvtColor(((face.transpose(1, 2, 0) + 1.0) * 127.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
        outline = (np.asarray(target)[L.FACE_OVAL, :2] * self._scale) @ self._to_crop[:, :2].T + self._to_crop[:, 2]
        alpha = np.zeros((s, s), np.float32)
        cv2.fillPoly(alpha, [np.round(outline).astype(np.int32)], 1.0)
        feather = max(3, int(s / 40) | 1)
        return face, cv2.GaussianBlur(alpha, (feather, feather), 0)

    def set_head_reach(self, radii: float) -> None:
        self.mesh.set_head_reach(radii)

    def close(self) -> None:
        self.mesh.close()
