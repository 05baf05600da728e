"""An exported model folder and the app's own shipped models, without any renderer: the generator and identity
networks run with onnxruntime (CUDA when present, else CPU) or TorchScript, the manifest checked first. The neural
face backend (neural.py) and the neural mouth (mouth_sources.py) both run models through it.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from avatar_app.errors import AvatarAppError, InputFileError, first_line
from avatar_app.face.crop import box_affine, crop_box, face_crop
from avatar_app.face.landmark_image import draw_landmarks
from avatar_app.model.format import NeuralIdentity, read_manifest
from avatar_app.pipeline.render.base import untrusted_torchscript

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
