"""Export a checkpoint into what the app runs: a folder with the generator and the identity network in one or
more runtime formats, and a manifest.json describing them (the contract documented in export/README.md).

A table of formats, one function each; every export reports its time and size and verifies itself against
eager torch on a sample input (max abs difference <= 1e-4).
"""

from __future__ import annotations

import copy
import contextlib
import io
import json
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avatar_app.atomic import exchange_paths
from avatar_app.errors import AvatarAppError, OutputPathError
from avatar_app.face.crop import CROP_SCALE, MOUTH_CROP_SCALE
from avatar_app.face.landmark_image import GROUPS, LAYOUT, MOUTH_COLOURS, MOUTH_LAYOUT
from avatar_app.model.checkpoint import Networks, load_checkpoint, model_id
from avatar_app.model.format import MODEL_FORMAT, MODEL_VERSION
from avatar_app.model.layers import bake_spectral_norm

PARITY_TOLERANCE = 1e-4


class GeneratorRuntime(nn.Module):
    """Per frame: landmark image and the avatar's ψ -> the face."""

    def __init__(self, nets: Networks):
        super().__init__()
        self.generator = nets.generator

    def forward(self, landmarks: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.generator(landmarks, psi)


class WarpGeneratorRuntime(nn.Module):
    """Per frame: the app's warp at the face crop, the landmark image and ψ -> correction RGB and blend mask."""

    def __init__(self, nets: Networks):
        super().__init__()
        self.generator = nets.generator

    def forward(self, warp: torch.Tensor, landmarks: torch.Tensor, psi: torch.Tensor):
        return self.generator.correction(warp, landmarks, psi)


class MouthGeneratorRuntime(nn.Module):
    """Per frame: the mouth crop's landmark image, the driver's mouth (RGB + presence) and ψ -> the mouth crop."""

    def __init__(self, nets: Networks):
        super().__init__()
        self.generator = nets.generator

    def forward(self, landmarks: torch.Tensor, driver: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        return self.generator(landmarks, driver, psi)


def generator_runtime(nets: Networks) -> nn.Module:
    runtime = {"warp": WarpGeneratorRuntime, "mouth": MouthGeneratorRuntime}.get(nets.config.conditioning, GeneratorRuntime)
    return runtime(nets)


# Names of the exported generator's inputs and outputs, per conditioning.
GENERATOR_IO = {
    "landmarks": (["landmarks", "psi"], ["image"]),
    "warp": (["warp", "landmarks", "psi"], ["rgb", "mask"]),
    "mouth": (["landmarks", "driver", "psi"], ["image"]),
}


def _generator_sample(nets: Networks, frames: torch.Tensor, landmarks: torch.Tensor, psi: torch.Tensor) -> tuple:
    """The exported generator's sample inputs, in GENERATOR_IO order."""
    if nets.config.conditioning == "warp":
        return frames[:1], landmarks[:1], psi
    if nets.config.conditioning == "mouth":  # the driver's mouth: the first frame, present
        return landmarks[:1], torch.cat([frames[:1], torch.ones_like(frames[:1, :1])], dim=1), psi
    return landmarks[:1], psi


def _run_generator(gen: nn.Module, args: tuple) -> dict:
    out = gen(*args)
    out = out if isinstance(out, tuple) else (out,)
    return {f"generator_{i}": o.detach().numpy() for i, o in enumerate(out)}


class IdentityRuntime(nn.Module):
    """Once per avatar: K frames and their landmark images -> ê (the mean embedding) and ψ = P·ê."""

    def __init__(self, nets: Networks):
        super().__init__()
        self.embedder = nets.embedder
        self.project = nets.generator.project

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor):
        e_hat = self.embedder(frames, landmarks).mean(dim=0, keepdim=True)
        return e_hat, self.project(e_hat)


@dataclass(frozen=True)
class ExportReport:
    format: str
    seconds: float
    bytes: int
    max_difference: float
    error: str | None = None


def _samples(nets: Networks, k: int = 2):
    s = nets.config.image_size
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(k, 3, s, s, generator=g) * 2 - 1
    landmarks = torch.rand(k, 3, s, s, generator=g)
    psi = torch.randn(1, nets.generator.n_psi, generator=g)
    return frames, landmarks, psi


def _export_onnx(gen: nn.Module, ident: nn.Module, nets: Networks, out: Path) -> dict:
    import onnxruntime as ort

    frames, landmarks, psi = _samples(nets)
    k = torch.export.Dim("K", min=1, max=64)
    args = _generator_sample(nets, frames, landmarks, psi)
    inputs, outputs = GENERATOR_IO[nets.config.conditioning]
    torch.onnx.export(gen, args, out / "generator.onnx", input_names=inputs, output_names=outputs, dynamo=True,
                      verbose=False)
    torch.onnx.export(ident, (frames, landmarks), out / "identity.onnx", input_names=["frames", "landmarks"],
                      output_names=["embedding", "psi"], dynamo=True, verbose=False,
                      dynamic_shapes={"frames": {0: k}, "landmarks": {0: k}})
    g = ort.InferenceSession(str(out / "generator.onnx"), providers=["CPUExecutionProvider"])
    i = ort.InferenceSession(str(out / "identity.onnx"), providers=["CPUExecutionProvider"])
    got_g = g.run(None, {name: a.numpy() for name, a in zip(inputs, args)})
    got_i = i.run(None, {"frames": frames.numpy(), "landmarks": landmarks.numpy()})
    return {**{f"generator_{n}": o for n, o in enumerate(got_g)}, "embedding": got_i[0], "psi": got_i[1]}


def _export_torchscript(gen: nn.Module, ident: nn.Module, nets: Networks, out: Path) -> dict:
    frames, landmarks, psi = _samples(nets)
    args = _generator_sample(nets, frames, landmarks, psi)
    tg = torch.jit.trace(gen, args)
    ti = torch.jit.trace(ident, (frames, landmarks))
    tg.save(str(out / "generator.ts"))
    ti.save(str(out / "identity.ts"))
    lg, li = torch.jit.load(str(out / "generator.ts")), torch.jit.load(str(out / "identity.ts"))
    with torch.no_grad():
        e, p = li(frames, landmarks)
        return {**_run_generator(lg, args), "embedding": e.numpy(), "psi": p.numpy()}


FORMATS = {
    "onnx": (_export_onnx, {"generator": "generator.onnx", "identity": "identity.onnx"}),
    "torchscript": (_export_torchscript, {"generator": "generator.ts", "identity": "identity.ts"}),
}


def build_manifest(nets: Networks, formats: list[str], reports: list[ExportReport]) -> dict:
    cfg, s, n_psi, e = nets.config, nets.config.image_size, nets.generator.n_psi, nets.config.embed_dim
    return {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model_id": model_id(nets),
        "config": cfg.to_dict(),
        "files": {f: FORMATS[f][1] for f in formats},
        "landmark_image": _landmark_image_contract(cfg.conditioning, s, cfg.landmark_thickness),
        "crop": ({"scale": MOUTH_CROP_SCALE, "description": "face/crop.py mouth_affine: a square turned with the mouth, "
                  "centred on the outer lips, scale x the corner-to-corner width"} if cfg.conditioning == "mouth" else
                 {"scale": CROP_SCALE, "description": "square around the 478 landmarks, scale x their larger extent"}),
        "conditioning": cfg.conditioning,
        "generator": _generator_contract(cfg.conditioning, s, n_psi),
        "identity": {
            "inputs": [
                {"name": "frames", "shape": ["K", 3, s, s], "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB"},
                {"name": "landmarks", "shape": ["K", 3, s, s], "dtype": "float32", "range": [0.0, 1.0]},
            ],
            "outputs": [
                {"name": "embedding", "shape": [1, e], "dtype": "float32"},
                {"name": "psi", "shape": [1, n_psi], "dtype": "float32"},
            ],
        },
        "exports": [r.__dict__ for r in reports],
    }


def _landmark_image_contract(conditioning: str, s: int, thickness: int) -> dict:
    if conditioning == "mouth":
        return {"layout": MOUTH_LAYOUT, "size": s, "thickness": thickness, "channels": "RGB", "range": [0.0, 1.0],
                "colours": {n: list(rgb) for n, rgb in MOUTH_COLOURS.items()}}
    return {"layout": LAYOUT, "size": s, "thickness": thickness, "channels": "RGB", "range": [0.0, 1.0],
            "groups": [{"name": n, "points": [a, b], "closed": c, "rgb": list(rgb)} for n, a, b, c, rgb in GROUPS]}


def _generator_contract(conditioning: str, s: int, n_psi: int) -> dict:
    landmarks = {"name": "landmarks", "shape": [1, 3, s, s], "dtype": "float32", "range": [0.0, 1.0]}
    psi = {"name": "psi", "shape": [1, n_psi], "dtype": "float32"}
    if conditioning == "mouth":
        return {
            "inputs": [landmarks, {"name": "driver", "shape": [1, 4, s, s], "dtype": "float32", "range": [-1.0, 1.0],
                                   "description": "the driver's mouth crop (RGB, blurred) and its presence (1, or all "
                                                  "zeros without a driver)"}, psi],
            "outputs": [{"name": "image", "shape": [1, 3, s, s], "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB"}],
        }
    if conditioning == "warp":
        return {
            "inputs": [{"name": "warp", "shape": [1, 3, s, s], "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB",
                        "description": "the mesh renderer's output at the face crop"}, landmarks, psi],
            "outputs": [
                {"name": "rgb", "shape": [1, 3, s, s], "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB"},
                {"name": "mask", "shape": [1, 1, s, s], "dtype": "float32", "range": [0.0, 1.0],
                 "description": "output = mask * rgb + (1 - mask) * warp"},
            ],
        }
    return {"inputs": [landmarks, psi],
            "outputs": [{"name": "image", "shape": [1, 3, s, s], "dtype": "float32", "range": [-1.0, 1.0], "channels": "RGB"}]}


def export_checkpoint(checkpoint: str | Path, out: str | Path, formats: list[str],
                      with_networks: bool = False) -> list[ExportReport]:
    """Write `out/` (replacing it only once every format has exported and verified) and its manifest; with
    ``with_networks`` also checkpoint.pt, the networks without optimiser state, so the folder can be fine-tuned."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise AvatarAppError(f"unknown export format {', '.join(unknown) or '(none)'} - choose from: {', '.join(FORMATS)}")
    out = Path(out)
    if not out.parent.is_dir():
        raise OutputPathError(f"{out}: folder '{out.parent}' does not exist - create it first")
    nets, raw = load_checkpoint(checkpoint)
    if nets.config.conditioning not in GENERATOR_IO:
        raise AvatarAppError(f"{checkpoint}: a {nets.config.conditioning} model, which the app's model format does "
                             "not describe - nothing exported")
    eager = copy.deepcopy(nets)
    for m in (eager.embedder, eager.generator):
        bake_spectral_norm(m).eval()
    gen, ident = generator_runtime(eager).eval(), IdentityRuntime(eager).eval()
    frames, landmarks, psi = _samples(eager)
    with torch.no_grad():
        want_e, want_p = ident(frames, landmarks)
        want = {**_run_generator(gen, _generator_sample(eager, frames, landmarks, psi)), "embedding": want_e.numpy(),
                "psi": want_p.numpy()}

    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            # torch's exporters print progress and warn about their own deprecations (and about torchvision
            # ops this project never uses): not the user's business.
            warnings.simplefilter("ignore")
            quiet.setLevel(logging.ERROR)
            if with_networks:
                from avatar_app.model.checkpoint import save_checkpoint

                try:
                    save_checkpoint(tmp / "checkpoint.pt", nets, step=int(raw.get("step", 0)),
                                    extra={"training": raw.get("training") or {}})
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            return _export_all(gen, ident, eager, nets, tmp, out, formats, want)
    finally:
        quiet.setLevel(level)


def _export_all(gen, ident, eager, nets, tmp: Path, out: Path, formats: list[str], want: dict) -> list[ExportReport]:
    reports = []
    try:
        for fmt in formats:
            start = time.perf_counter()
            got = FORMATS[fmt][0](gen, ident, eager, tmp)
            seconds = time.perf_counter() - start
            diff = max(float(np.abs(got[k] - want[k]).max()) for k in want)
            # ONNX keeps large weights beside the graph (NAME.onnx.data): count every file of the format.
            size = sum(p.stat().st_size for f in FORMATS[fmt][1].values() for p in tmp.glob(f + "*"))
            reports.append(ExportReport(fmt, round(seconds, 2), size, diff))
            if diff > PARITY_TOLERANCE:
                raise AvatarAppError(f"{fmt} export does not match eager torch (max difference {diff:.2e} > {PARITY_TOLERANCE})")
        manifest = build_manifest(nets, formats, reports)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if not out.exists():
            tmp.rename(out)
        elif exchange_paths(tmp, out):
            # tmp now holds the previous export. Its manifest goes first, so that nothing listing model folders
            # takes the remains for a model while they are removed.
            (tmp / "manifest.json").unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # No atomic swap here (Windows, some file systems): for a moment `out` is missing, and a crash in
            # that moment leaves the previous export in .NAME.old.
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reports
