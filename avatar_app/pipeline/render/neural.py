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

import json
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.errors import AvatarAppError, InputFileError, first_line
from avatar_app.face.crop import box_affine, crop_box, face_crop
from avatar_app.face.landmark_image import draw_landmarks
from avatar_app.model.format import NeuralIdentity, read_manifest
from avatar_app.pipeline.render.base import IDENTITY, Drawing, PatchOverlay, RenderSettings, compose, untrusted_torchscript
from avatar_app.pipeline.render.mesh import MeshRenderer
from avatar_app.pipeline.render.pacing import CARRY, PROBE, RUN, GeneratorPace, PacingSettings

RUNTIMES = ("onnx", "torchscript")


class ExportedModel:
    """A model folder made by `avatar-app export`: manifest checked, one runtime session per network."""

    def __init__(self, directory: str | Path, runtime: str = "onnx", provider: str | None = None,
                 trust_code: bool = False):
        self.directory = Path(directory)
        if runtime not in RUNTIMES:
            raise AvatarAppError(f"unknown runtime '{runtime}' - choose one of: {', '.join(RUNTIMES)}")
        if runtime == "torchscript" and not trust_code:
            raise untrusted_torchscript(self.directory)
        self.manifest = read_manifest(self.directory)
        files = self.manifest["files"].get(runtime)
        if files is None:
            raise InputFileError(f"{self.directory}: this model was not exported for {runtime} - export it with --format {runtime}")
        self.runtime = runtime
        self.size = int(self.manifest["landmark_image"]["size"])
        self.thickness = int(self.manifest["landmark_image"]["thickness"])
        self.crop_scale = float(self.manifest["crop"]["scale"])
        self.model_id = str(self.manifest["model_id"])
        self.conditioning = str(self.manifest.get("conditioning", "landmarks"))
        self._files = {k: self.directory / v for k, v in files.items()}
        for path in self._files.values():
            if not path.is_file():
                raise InputFileError(f"{path}: model file missing - export the model again")
        self._sessions: dict[str, object] = {}
        self.provider = "cpu"
        if runtime == "onnx":
            self._providers = _onnx_providers(provider)
            self.provider = "cuda" if self._providers[0].startswith("CUDA") else "cpu"
        elif provider not in (None, "cpu"):
            raise AvatarAppError(f"--provider {provider} applies to the onnx runtime only - use --runtime onnx")

    def _session(self, name: str):
        if name not in self._sessions:
            path = self._files[name]
            try:
                if self.runtime == "onnx":
                    import onnxruntime as ort

                    opts = ort.SessionOptions()
                    opts.intra_op_num_threads = min(os.cpu_count() or 1, 4)
                    # Spinning worker threads steal the cores the tracker and mesh stages run on.
                    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    opts.log_severity_level = 3
                    self._sessions[name] = ort.InferenceSession(str(path), opts, providers=self._providers)
                else:
                    torch = _import_torch()
                    self._sessions[name] = torch.jit.load(str(path), map_location="cpu").eval()
            except AvatarAppError:
                raise
            except Exception as err:  # a corrupt file: ORT and torch raise many kinds
                raise InputFileError(f"{path}: cannot load the model ({first_line(err, 150)}) - export it again") from None
        return self._sessions[name]

    def generate(self, landmarks: np.ndarray, psi: np.ndarray) -> np.ndarray:
        """(1, 3, S, S) landmark image in [0, 1], (1, n_psi) -> (1, 3, S, S) RGB in [-1, 1]."""
        s = self._session("generator")
        with self._running("generator"):
            if self.runtime == "onnx":
                return s.run(None, {"landmarks": landmarks, "psi": psi})[0]
            torch = _import_torch()
            with torch.no_grad():
                return s(torch.from_numpy(landmarks), torch.from_numpy(psi)).numpy()

    def mouth(self, landmarks: np.ndarray, driver: np.ndarray, psi: np.ndarray) -> np.ndarray:
        """A mouth model: (1, 3, S, S) mouth landmark image in [0, 1], the driver's mouth (1, 4, S, S: RGB in
        [-1, 1] and its presence), ψ -> the mouth crop (1, 3, S, S) RGB in [-1, 1]."""
        s = self._session("generator")
        with self._running("generator"):
            if self.runtime == "onnx":
                return s.run(None, {"landmarks": landmarks, "driver": driver, "psi": psi})[0]
            torch = _import_torch()
            with torch.no_grad():
                return s(torch.from_numpy(landmarks), torch.from_numpy(driver), torch.from_numpy(psi)).numpy()

    def correct(self, warp: np.ndarray, landmarks: np.ndarray, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A warp-conditioned model: (1, 3, S, S) warp in [-1, 1], landmark image, ψ -> rgb (1, 3, S, S) in
        [-1, 1] and mask (1, 1, S, S) in [0, 1]."""
        s = self._session("generator")
        with self._running("generator"):
            if self.runtime == "onnx":
                rgb, mask = s.run(None, {"warp": warp, "landmarks": landmarks, "psi": psi})
                return rgb, mask
            torch = _import_torch()
            with torch.no_grad():
                rgb, mask = s(torch.from_numpy(warp), torch.from_numpy(landmarks), torch.from_numpy(psi))
            return rgb.numpy(), mask.numpy()

    def identity(self, frames: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """K frames (K, 3, S, S) RGB in [-1, 1] and their landmark images -> ê (1, E), ψ (1, n_psi)."""
        s = self._session("identity")
        with self._running("identity"):
            if self.runtime == "onnx":
                e, psi = s.run(None, {"frames": frames, "landmarks": landmarks})
                return e, psi
            torch = _import_torch()
            with torch.no_grad():
                e, psi = s(torch.from_numpy(frames), torch.from_numpy(landmarks))
            return e.numpy(), psi.numpy()

    @contextmanager
    def _running(self, name: str):
        """A network that loads but cannot run on the inputs its own manifest describes is a broken export."""
        try:
            yield
        except AvatarAppError:
            raise
        except Exception as err:  # noqa: BLE001 - ORT and torch raise many kinds
            reason = first_line(err, 150)
            raise InputFileError(f"{self._files[name]}: the model does not run ({reason}) - export it again") from None

    def crop(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's view of a face: (RGB crop in [-1, 1] as 3 x S x S, its landmark image as 3 x S x S)."""
        box = crop_box(points, self.crop_scale)
        patch = face_crop(image, box_affine(box, self.size), self.size)
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0
        lm = draw_landmarks(points, box, self.size, self.thickness)
        return rgb.transpose(2, 0, 1), lm.transpose(2, 0, 1)


def shipped_models_dir() -> Path:
    """Where the app's own trained models are installed: avatar_app.assets/models (package data), one folder each."""
    from importlib.resources import files

    return Path(str(files("avatar_app.assets") / "models"))


def shipped_models(conditioning: str = "face") -> list[Path]:
    """The model folders shipped with the app (each with a manifest.json), in name order: the face models
    (``conditioning="face"``: landmarks or warp) or the mouth models ("mouth")."""
    root = shipped_models_dir()
    if not root.is_dir():
        return []
    return [m.parent for m in sorted(root.glob("*/manifest.json"))
            if not m.parent.name.startswith(".") and is_mouth_model(m.parent) == (conditioning == "mouth")]


def is_mouth_model(folder: Path) -> bool:
    """Does this model folder hold a mouth model (the inside of the mouth alone) rather than a face model? A
    manifest that cannot be read counts as a face model: read_manifest says what is wrong when it is used."""
    try:
        return json.loads((Path(folder) / "manifest.json").read_text()).get("conditioning") == "mouth"
    except (OSError, ValueError, AttributeError):
        return False


def default_model() -> Path:
    """The model `--backend neural` uses when no --model is given: the shipped one (the first by name)."""
    models = shipped_models()
    if not models:
        raise AvatarAppError(f"no model is shipped in {shipped_models_dir()} - pass --model export/NAME "
                             "(made by 'avatar-app export'), or reinstall the app")
    return models[0]


def default_mouth_model() -> Path:
    """The model `--mouth neural` uses when no --mouth-model is given: the shipped mouth model."""
    models = shipped_models("mouth")
    if not models:
        raise AvatarAppError(f"no mouth model is shipped in {shipped_models_dir()} - pass --mouth-model FOLDER "
                             "(made by 'avatar-app export' from a mouth checkpoint), or use --mouth painted")
    return models[0]


def _import_torch():
    try:
        import torch
    except ImportError:
        raise AvatarAppError("the torchscript runtime needs torch - pip install -e .[train], or use --runtime onnx") from None
    return torch


def _onnx_providers(provider: str | None) -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise AvatarAppError("the neural backend needs onnxruntime - pip install -e .[cpu] (or .[gpu] with CUDA)") from None
    available = ort.get_available_providers()
    if provider in (None, "auto"):
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise AvatarAppError(
                f"CUDA was asked for but onnxruntime offers only {', '.join(available)} - install the [gpu] extra "
                "(onnxruntime-gpu, not beside onnxruntime) on a machine with CUDA, or use --provider cpu"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise AvatarAppError(f"unknown provider '{provider}' - choose auto, cpu or cuda")


def make_identity(model: ExportedModel, images: list[np.ndarray], points: list[np.ndarray]) -> NeuralIdentity:
    """ê and ψ from K portrait images (one-shot: K = 1) and their landmarks."""
    crops = [model.crop(img, pts) for img, pts in zip(images, points)]
    frames = np.stack([c[0] for c in crops]).astype(np.float32)
    lms = np.stack([c[1] for c in crops]).astype(np.float32)
    e, psi = model.identity(frames, lms)
    return NeuralIdentity(model.model_id, e[0].astype(np.float32), psi[0].astype(np.float32))


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
