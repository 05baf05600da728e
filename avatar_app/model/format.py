"""The model folder's contract without torch: its format name and versions, the manifest's checks, and the
identity (ê, ψ) an avatar keeps for one model. The exporter writes what this reads; the app reads it alone."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_app.errors import InputFileError, shown

MODEL_FORMAT = "avatar_app.model"
MODEL_VERSION = 2  # 2: the manifest names G's conditioning; a warp-conditioned G takes the warp too
READABLE_VERSIONS = (1, 2)
# What G is conditioned on: the landmark image (the paper's face), the mesh warp too (a correction of it), or the
# mouth crop's landmarks and the driver's own mouth (the inside of the mouth alone).
CONDITIONINGS = ("landmarks", "warp", "mouth")  # 1: landmark-conditioned only, before the manifest named its conditioning


@dataclass
class NeuralIdentity:
    """What an avatar keeps for one model: ê and ψ = P·ê, tagged with the model they were made with."""

    model_id: str
    embedding: np.ndarray  # (embed_dim,) float32
    psi: np.ndarray  # (n_psi,) float32


def read_manifest(directory: Path) -> dict:
    """A model folder's manifest.json, checked; anything wrong ends in one line that names the file."""
    if not directory.is_dir():
        raise InputFileError(f"{directory}: no such model folder - export one with 'avatar-app export'")
    path = directory / "manifest.json"
    if not path.is_file():
        raise InputFileError(f"{directory}: not a model folder (no manifest.json) - export one with 'avatar-app export'")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InputFileError(f"{path}: not valid JSON - export the model again") from None
    except OSError as err:
        raise InputFileError(f"{path}: cannot read ({err.strerror or err}) - check you can read the model folder") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MODEL_FORMAT:
        raise InputFileError(f"{path}: not an avatar_app model manifest - export the model again")
    if manifest.get("version") not in READABLE_VERSIONS:
        raise InputFileError(
            f"{path}: model format version {shown(manifest.get('version'))}, this app reads {' and '.join(map(str, READABLE_VERSIONS))} - export it again with this version"
        )
    for key in ("model_id", "files", "landmark_image", "crop"):
        if key not in manifest:
            raise InputFileError(f"{path}: manifest has no '{key}' - export the model again")
    problem = _manifest_problem(manifest)
    if problem:
        raise InputFileError(f"{path}: {problem} - export the model again")
    return manifest


def _manifest_problem(manifest: dict) -> str | None:
    """What is malformed in a manifest's values, or None. The files must be plain names inside the folder."""
    def whole(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    if not isinstance(manifest["model_id"], str) or not manifest["model_id"].isprintable():
        return "'model_id' is not a text id"
    files = manifest["files"]
    if not isinstance(files, dict):
        return "'files' is malformed"
    for names in files.values():
        if not isinstance(names, dict) or set(names) != {"generator", "identity"}:
            return "'files' is malformed"
        for name in names.values():
            if not isinstance(name, str) or name in ("", ".", "..") or Path(name).name != name or not name.isprintable():
                return "'files' names a file outside the model folder"
    image = manifest["landmark_image"]
    if not isinstance(image, dict) or not whole(image.get("size"), 16, 2048) or not whole(image.get("thickness"), 1, 64):
        return "'landmark_image' needs a size of 16 to 2048 and a thickness of 1 to 64"
    if manifest.get("conditioning", "landmarks") not in CONDITIONINGS:
        return "'conditioning' must be landmarks, warp or mouth"
    scale = manifest["crop"].get("scale") if isinstance(manifest["crop"], dict) else None
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and 0 < scale <= 10):
        return "'crop' needs a scale above 0 and at most 10"
    return None
