"""Self-describing checkpoints: format, version, configuration and weights in one file, read without pickle.

A checkpoint holds E, G and D's state dicts plus whatever training adds (optimiser state, step, RNG state) as
plain tensors and containers, so `torch.load(weights_only=True)` reads it and a pickled file is refused.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from avatar_app.atomic import atomic_path
from avatar_app.errors import InputFileError, OutputPathError, first_line, shown
from avatar_app.model.config import ModelConfig
from avatar_app.model.discriminator import Discriminator
from avatar_app.model.embedder import Embedder
from avatar_app.model.generator import Generator
from avatar_app.model.mouth_generator import MouthGenerator
from avatar_app.model.warp_generator import WarpGenerator

CHECKPOINT_FORMAT = "avatar_app.checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Networks:
    config: ModelConfig
    embedder: Embedder
    generator: Generator | WarpGenerator | MouthGenerator
    discriminator: Discriminator

    @property
    def num_videos(self) -> int:
        return self.discriminator.W.num_embeddings


def build_networks(config: ModelConfig, num_videos: int = 1, seed: int | None = 0) -> Networks:
    if seed is not None:
        torch.manual_seed(seed)
    generator = {"warp": WarpGenerator, "mouth": MouthGenerator}.get(config.conditioning, Generator)(config)
    return Networks(config, Embedder(config), generator, Discriminator(config, num_videos))


def model_id(nets: Networks) -> str:
    """A short fingerprint of E and G's weights: avatars made with one model are refused by another."""
    h = hashlib.sha256()
    for module in (nets.embedder, nets.generator):
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_checkpoint(path: str | Path, nets: Networks, step: int = 0, extra: dict | None = None) -> Path:
    path = Path(path)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": nets.config.to_dict(),
        "num_videos": nets.num_videos,
        "step": int(step),
        "embedder": nets.embedder.state_dict(),
        "generator": nets.generator.state_dict(),
        "discriminator": nets.discriminator.state_dict(),
        **(extra or {}),
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write the checkpoint ({err.strerror or err})") from None
    return path


def read_weights_file(path: Path):
    """torch.load without pickle; a file that cannot be read so raises ValueError with a one-line reason."""
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the refusal below is the message
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses pickled objects; torch raises many kinds for junk
        text = str(err)
        if "weights_only" in text or "Unsupported global" in text:
            raise ValueError("it holds pickled objects, which are never loaded") from None
        raise ValueError(first_line(err, 120)) from None


def load_checkpoint(path: str | Path) -> tuple[Networks, dict]:
    """The networks of a checkpoint (on the CPU) and the raw dictionary (for training state)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such checkpoint - check the path (checkpoints come from 'avatar-app train')")

    def bad(why: str) -> InputFileError:
        return InputFileError(f"{path}: not a usable checkpoint ({why}) - give a .pt file written by avatar-app")

    try:
        raw = read_weights_file(path)
    except ValueError as err:
        raise bad(str(err)) from None
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise bad("wrong format name")
    if raw.get("version") != CHECKPOINT_VERSION:
        raise bad(f"format version {shown(raw.get('version'))}, this app reads {CHECKPOINT_VERSION}")
    try:
        config = ModelConfig.from_dict(raw["config"])
        # The discriminator's rows are allocated before its weights are read: take their number from the weights
        # themselves, so a damaged count cannot ask for more memory than the file holds.
        num_videos = raw.get("num_videos", 1)
        rows = raw["discriminator"]["W.weight"].shape[0]
        if not isinstance(num_videos, int) or num_videos != rows:
            raise ValueError(f"num_videos {shown(num_videos)} does not match the discriminator's {rows} rows")
        nets = build_networks(config, num_videos, seed=None)
        nets.embedder.load_state_dict(raw["embedder"])
        nets.generator.load_state_dict(raw["generator"])
        nets.discriminator.load_state_dict(raw["discriminator"])
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RuntimeError) as err:
        raise bad(first_line(err, 160)) from None
    return nets, raw


def save_networks_only(source: str | Path, out: str | Path) -> tuple[Path, int]:
    """The networks of a training checkpoint without its optimiser and RNG state (a third of the size): what a
    model folder ships, and what a later `train --resume` can go on from (with fresh optimisers)."""
    nets, raw = load_checkpoint(source)
    keep = {k: raw[k] for k in ("training", "videos", "perceptual") if k in raw}
    return save_checkpoint(out, nets, step=int(raw.get("step", 0)), extra=keep), int(raw.get("step", 0))

