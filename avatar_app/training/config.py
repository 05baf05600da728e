"""Settings of the training room, one frozen dataclass per job; network sizes stay in avatar_app.model.config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class PrepareConfig:
    """How clips become training data: crop side in pixels, frame format, and which clips are long enough."""

    size: int = 256
    image_format: str = "jpg"  # "jpg" (quality 95) or "png"
    min_frames: int = 16  # clips with fewer usable frames are skipped (an episode needs K + 1)
    max_frames: int = 0  # keep at most this many frames per clip, evenly spaced (0: all)
    warp_sources: int = 4  # frames per clip warped to every other frame (the warp-conditioned G's input; 0: none)
    # "face": one stable square face crop per clip (face/crop.py crop_box); "mouth": the mouth crop of every
    # frame, turned and scaled with the lips (face/crop.py mouth_affine), for the mouth model.
    task: str = "face"

    TASKS = ("face", "mouth")

    def __post_init__(self) -> None:
        if self.task not in self.TASKS:
            raise ValueError(f"--task must be one of {', '.join(self.TASKS)}, got {self.task!r}")
        if self.task == "mouth" and self.warp_sources:
            raise ValueError("--warp-sources is for face data: mouth data has no warps (give --warp-sources 0)")
        if not 32 <= self.size <= 1024:
            raise ValueError(f"--size must be from 32 to 1024 pixels, got {self.size}")
        if self.image_format not in ("jpg", "png"):
            raise ValueError(f"frame format must be jpg or png, got {self.image_format!r}")
        if self.min_frames < 2:
            raise ValueError(f"--min-frames must be at least 2, got {self.min_frames}")
        if not 0 <= self.warp_sources <= 64:
            raise ValueError(f"--warp-sources must be from 0 to 64, got {self.warp_sources}")
        if self.max_frames and self.max_frames < self.min_frames:
            raise ValueError(f"--max-frames ({self.max_frames}) must be 0 or at least --min-frames ({self.min_frames})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainingConfig:
    """Meta-learning: episode shape, optimiser (TTUR), loss weights (the paper's), and how often to write things.

    ``batch_size`` is per process; with N processes (torchrun) an update sees N x batch_size episodes.
    """

    steps: int = 100_000
    batch_size: int = 2
    shots: int = 8  # K frames per episode, plus one target frame
    seed: int = 0
    lr_generator: float = 5e-5  # embedder and generator
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    vgg19_weight: float = 1.5e-1
    vggface_weight: float = 2.5e-2
    l1_weight: float = 10.0  # pixel L1, the content loss when no perceptual weights are given
    feature_matching_weight: float = 10.0
    match_weight: float = 80.0
    # The match term is ramped from 0 to match_weight over this many steps: at initialisation E gives nearly the
    # same ê for every face, so the only way to pull all of them towards D's rows is to shrink ê, and at full
    # weight that gradient is ~10x the content one (ê collapsed towards 0 in 20 steps).
    match_ramp_steps: int = 2000
    ssim_weight: float = 0.0  # 1 - SSIM (pytorch-msssim) added to the content loss
    mouth_weight: float = 0.0  # extra pixel L1 inside the target's mouth (warp- or mouth-conditioned G)
    # The mouth model's driver input, its target's own mouth or another frame's of the clip (this share), degraded
    # (training/dataset.py degrade_driver), and missing altogether in driver_drop of the episodes.
    driver_drop: float = 0.2
    driver_other_frame: float = 0.5
    hold_out: tuple[str, ...] = ()  # clip ids (or fnmatch patterns) kept out of training, for validation
    checkpoint_every: int = 1000
    sample_every: int = 500
    log_every: int = 10
    amp: bool = True  # mixed precision, on CUDA only
    loader_workers: int = -1  # -1: 0 on CPU, 4 on CUDA

    # What may change when a run is resumed without changing where it goes next.
    RESUMABLE_CHANGES = ("steps", "checkpoint_every", "sample_every", "log_every", "loader_workers")

    def __post_init__(self) -> None:
        for name in ("match_ramp_steps",):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        for name in ("driver_drop", "driver_other_frame"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} must be from 0 to 1, got {getattr(self, name)}")
        for name in ("steps", "batch_size", "shots", "checkpoint_every", "sample_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["hold_out"] = list(self.hold_out)
        return d

    def match_weight_at(self, step: int) -> float:
        """The match term's weight at ``step`` (counted from 1): ramped up linearly, then match_weight."""
        if self.match_ramp_steps == 0:
            return self.match_weight
        return self.match_weight * min(1.0, step / self.match_ramp_steps)

    @classmethod
    def from_dict(cls, data: dict) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if k in ("betas", "hold_out") else v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class FinetuneConfig:
    """The paper's fine-tuning (FT): steps on the K images, learning rates as in meta-learning."""

    steps: int = 100
    lr_generator: float = 5e-5
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    vgg19_weight: float = 1.5e-1
    vggface_weight: float = 2.5e-2
    l1_weight: float = 10.0
    feature_matching_weight: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"--steps must be 0 or more, got {self.steps}")
