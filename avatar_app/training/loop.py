"""The meta-learning loop: episodes in, E/G and D updated in turn (TTUR), checkpoints that resume exactly.

One step (steps.py): E embeds the K frames of each episode and averages them (e_hat); G renders the target frame
from its landmarks (and, warp-conditioned, the warp of the first frame; the mouth G, a degraded driver mouth) with
psi = P e_hat; E and G take one Adam step on content + adversarial + feature matching + match; then D takes one
on the hinge loss (+ the match term for its row W_i). Under torchrun, E+G and D are each wrapped in
DistributedDataParallel, so every process computes its share of the batch and gradients are averaged across
processes; only the main process logs and writes checkpoints.

A checkpoint holds the networks, both optimisers, the step, the RNG states and the run's settings; episodes are
drawn from (seed, step) alone, so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from avatar_app.atomic import atomic_path
from avatar_app.errors import AvatarAppError, InputFileError, OutputPathError
from avatar_app.model.checkpoint import build_networks, load_checkpoint, save_checkpoint
from avatar_app.model.config import ModelConfig
from avatar_app.training import distributed
from avatar_app.training.config import TrainingConfig
from avatar_app.training.dataset import EpisodeDataset, EpisodePlan, MouthEpisodeDataset, read_index
from avatar_app.training.losses import ContentLoss
from avatar_app.training.monitor import Monitor
from avatar_app.training.perceptual import VGG19, VGGFACE, load_perceptual
from avatar_app.training.steps import discriminator_step, generator_step

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    seconds_per_step: float  # mean over the steps of this session after the first (warm-up) one
    unreadable_frames: int
    perceptual: bool
    conditioning: str = "landmarks"  # the model's (ModelConfig.conditioning)


class MetaLearner(nn.Module):
    """E and G as one module (one DDP wrapper): K frames per episode and the target's landmarks (and, for the
    warp-conditioned G, the warp of the first frame to them; for the mouth G, the degraded driver mouth)
    -> output, e_hat."""

    def __init__(self, embedder: nn.Module, generator: nn.Module):
        super().__init__()
        self.embedder, self.generator = embedder, generator

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor, target_landmarks: torch.Tensor,
                warp: torch.Tensor | None = None, driver: torch.Tensor | None = None):
        b, k = frames.shape[:2]
        e = self.embedder(frames.flatten(0, 1), landmarks.flatten(0, 1)).view(b, k, -1)  # (B, K, E)
        e_hat = e.mean(dim=1)  # (B, E)
        psi = self.generator.project(e_hat)
        if driver is not None:
            return self.generator(target_landmarks, driver, psi), e_hat
        if warp is None:
            return self.generator(target_landmarks, psi), e_hat  # (B, 3, S, S), (B, E)
        return self.generator(warp, target_landmarks, psi)[0], e_hat


def rng_state() -> dict:
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": random.getstate(),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _check_run_dir(run_dir: Path, resume: bool) -> Path:
    ckpt = run_dir / CHECKPOINT_NAME
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputPathError(f"{run_dir}: is a file - give a folder for the run")
    if not run_dir.parent.is_dir():
        raise OutputPathError(f"{run_dir}: folder '{run_dir.parent}' does not exist - create it first")
    if resume and not ckpt.is_file():
        raise InputFileError(f"{ckpt}: nothing to resume - start the run without --resume")
    if not resume and ckpt.is_file():
        raise OutputPathError(f"{run_dir}: already holds a run ({CHECKPOINT_NAME}) - add --resume to continue it, "
                              "or choose another --out")
    return ckpt


def _resumed_settings(raw: dict, config: TrainingConfig, explicit: set[str], ckpt: Path) -> TrainingConfig:
    saved = TrainingConfig.from_dict(raw.get("training", {}))
    for name in sorted(explicit - set(TrainingConfig.RESUMABLE_CHANGES)):
        if getattr(config, name) != getattr(saved, name):
            flag = "--" + name.replace("_", "-")
            raise AvatarAppError(f"{ckpt}: this run was started with {flag} {getattr(saved, name)} - resume it with the "
                                 f"same value, or start a new run with --out")
    return dataclasses.replace(saved, **{k: getattr(config, k) for k in explicit & set(TrainingConfig.RESUMABLE_CHANGES)})


def train(data_dir: str | Path, run_dir: str | Path, config: TrainingConfig, model: ModelConfig | None = None, *,
          resume: bool = False, explicit: set[str] | None = None, vgg19: str | Path | None = None,
          vggface: str | Path | None = None, ctx: distributed.Context | None = None,
          progress: bool = True) -> TrainResult:
    """Meta-learn from a prepared data folder into ``run_dir`` until ``config.steps`` steps are done.

    ``model`` None means realtime (mouth, on mouth data) for a new run and the checkpoint's own for a resumed
    one; ``explicit`` names the settings the user gave (a resumed run keeps its own unless they are ones that may
    change).
    """
    from avatar_app.model.config import get_config

    ctx = ctx or distributed.Context(0, 1, 0, torch.device("cpu"))
    run_dir = Path(run_dir)
    explicit = set(explicit if explicit is not None else [f.name for f in dataclasses.fields(TrainingConfig)])
    ckpt_path = _check_run_dir(run_dir, resume)
    data = read_index(data_dir)

    raw: dict = {}
    if resume:
        nets, raw = load_checkpoint(ckpt_path)
        # The run's own hold-out, before the data is compared with the run's.
        saved = (raw.get("training") or {}).get("hold_out")
        data = hold_out(data, tuple(saved) if saved is not None else config.hold_out)
        if model is not None and model.to_dict() != nets.config.to_dict():
            raise AvatarAppError(f"{ckpt_path}: made with the '{nets.config.name}' configuration, not '{model.name}' - "
                                 f"resume without --config (or with --config {nets.config.name}), or start a new run")
        if raw.get("videos") != data.videos:
            raise AvatarAppError(f"{ckpt_path}: the data's clips changed since this run began ({len(raw.get('videos') or [])} "
                                 f"videos then, {len(data.videos)} now) - resume on the data it started with, or start a new run")
        config = _resumed_settings(raw, config, explicit, ckpt_path)
        if "optimizers" in raw and "rng" in raw:
            restore_rng_state(raw["rng"])
        elif ctx.is_main:  # a networks-only checkpoint (strip-checkpoint): the step count goes on, Adam starts afresh
            warnings.warn(f"{ckpt_path}: holds the networks only - the optimisers start afresh, so the next steps "
                          "differ from the uninterrupted run's", stacklevel=2)
        if raw.get("world_size", 1) != ctx.world_size and ctx.is_main:
            warnings.warn(f"this run was trained by {raw.get('world_size')} process(es), now {ctx.world_size}: "
                          "episodes from here on differ from an uninterrupted run", stacklevel=2)
        vgg19 = vgg19 or (raw.get("perceptual") or {}).get("vgg19")
        vggface = vggface or (raw.get("perceptual") or {}).get("vggface")
    else:
        data = hold_out(data, config.hold_out)
        default = get_config("mouth" if data.task == "mouth" else "realtime")
        nets = build_networks(model or default, num_videos=len(data.videos), seed=config.seed)
    start_step = int(raw.get("step", 0))
    if start_step >= config.steps:
        raise AvatarAppError(f"{ckpt_path}: the run is already at step {start_step} - give a larger --steps to go on")

    if ctx.is_main:
        run_dir.mkdir(exist_ok=True)
        _write_run_info(run_dir, nets.config, config, data, ctx)
    distributed.barrier(ctx)

    device = ctx.device
    content_loss = ContentLoss(
        load_perceptual(VGG19, vgg19) if vgg19 else None, load_perceptual(VGGFACE, vggface) if vggface else None,
        config.vgg19_weight, config.vggface_weight, config.l1_weight, config.ssim_weight, config.mouth_weight).to(device)
    if not content_loss.perceptual and ctx.is_main:
        warnings.warn("no --vgg19-weights / --vggface-weights: the content loss is pixel L1 (with feature matching) "
                      "instead of the paper's perceptual loss; faces come out blurrier", stacklevel=2)

    eg = MetaLearner(nets.embedder, nets.generator).to(device)
    disc = nets.discriminator.to(device)
    opt_g = torch.optim.Adam(eg.parameters(), lr=config.lr_generator, betas=config.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=config.lr_discriminator, betas=config.betas)
    amp_dtype = None
    if device.type == "cuda" and config.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scalers = {k: torch.amp.GradScaler("cuda", enabled=amp_dtype is torch.float16) for k in ("generator", "discriminator")}
    if resume and "optimizers" in raw:
        opt_g.load_state_dict(raw["optimizers"]["generator"])
        opt_d.load_state_dict(raw["optimizers"]["discriminator"])
        for k, s in scalers.items():
            if raw.get("scalers", {}).get(k) and s.is_enabled():
                s.load_state_dict(raw["scalers"][k])
    if ctx.distributed:
        ids = [device.index] if device.type == "cuda" else None
        eg_run, d_run = DistributedDataParallel(eg, device_ids=ids), DistributedDataParallel(disc, device_ids=ids)
    else:
        eg_run, d_run = eg, disc

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp_dtype)

    warped, mouth = nets.config.conditioning == "warp", nets.config.conditioning == "mouth"
    if mouth:
        dataset = MouthEpisodeDataset(data, nets.config.image_size, config.shots, nets.config.landmark_thickness,
                                      config.driver_drop, config.driver_other_frame)
    elif data.task != "face":
        raise InputFileError(f"{data.root}: holds {data.task} crops, which only the mouth model trains on - "
                             "train with --config mouth, or prepare face data without --task")
    else:
        dataset = EpisodeDataset(data, nets.config.image_size, config.shots, nets.config.landmark_thickness,
                                 warps=warped)
    plan = EpisodePlan(dataset, config.batch_size, ctx.rank, ctx.world_size, config.seed, start_step + 1, config.steps)
    workers = config.loader_workers if config.loader_workers >= 0 else (4 if device.type == "cuda" else 0)
    loader = DataLoader(dataset, batch_sampler=plan, num_workers=workers, pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(config.seed), persistent_workers=False)

    monitor = Monitor(run_dir, start_step, config.steps, ctx.is_main, progress)
    unreadable = int(raw.get("unreadable", 0))
    perceptual = {"vgg19": str(vgg19) if vgg19 else None, "vggface": str(vggface) if vggface else None}
    step, saved_step, times = start_step, start_step, []

    def save() -> None:
        nonlocal saved_step
        ok = True
        if ctx.is_main:
            extra = {
                "training": config.to_dict(),
                "optimizers": {"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
                "scalers": {k: s.state_dict() for k, s in scalers.items() if s.is_enabled()},
                "rng": rng_state(),
                "videos": data.videos,
                "world_size": ctx.world_size,
                "perceptual": perceptual,
                "unreadable": unreadable,
            }
            try:
                save_checkpoint(ckpt_path, nets, step=step, extra=extra)
                monitor.plot()
            except OSError as err:  # the plot only: save_checkpoint reports its own as OutputPathError
                warnings.warn(f"{run_dir / 'losses.png'}: not written ({err.strerror or err})", stacklevel=2)
            except OutputPathError as err:
                ok = False
                error = OutputPathError(f"{err} - the checkpoint of step {saved_step} is kept; free space and --resume")
        if not distributed.all_ok(ctx, ok):
            raise error if not ok else AvatarAppError("the main training process could not write the checkpoint - see its message")
        saved_step = step

    try:
        for batch in loader:
            t0 = time.perf_counter()
            problems = [p for p in batch.pop("problem") if p]
            if not distributed.all_ok(ctx, not problems):
                if step > saved_step:
                    save()  # everything up to the last finished step is kept
                raise InputFileError(problems[0]) if problems else AvatarAppError("another training process stopped - see its message")
            unreadable += int(batch.pop("unreadable").sum())
            b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}

            g = generator_step(eg_run, disc, content_loss, opt_g, b, config, step + 1,
                               scaler=scalers["generator"], autocast=autocast)
            d = discriminator_step(disc, opt_d, b, g, disc_run=d_run, scaler=scalers["discriminator"], autocast=autocast)
            step += 1

            if not (torch.isfinite(g.loss) and torch.isfinite(d.pop("loss"))):
                raise AvatarAppError(f"losses became NaN or infinite at step {step} - resume from {ckpt_path} "
                                     f"(step {saved_step}) with a lower learning rate or a new --seed")
            seconds = time.perf_counter() - t0
            times.append(seconds)
            log = step % config.log_every == 0 or step == config.steps
            scalars = {**g.scalars, **d, "seconds": seconds, "unreadable": float(unreadable)}
            monitor.step(step, scalars, log)
            if step % config.sample_every == 0 or step == config.steps:
                given = b["driver"][:, :3] if mouth else b.get("warp")
                monitor.samples(step, b["target_landmarks"], b["target"], g.fake, warp=given)
            if step % config.checkpoint_every == 0 or step == config.steps:
                save()
    except KeyboardInterrupt:
        if ctx.is_main:
            print(f"\n{run_dir}: stopped at step {step}; {CHECKPOINT_NAME} (step {saved_step}) is kept - continue with --resume")
        raise
    finally:
        monitor.close()
    distributed.barrier(ctx)
    if unreadable and ctx.is_main:
        warnings.warn(f"{unreadable} unreadable frame(s) were skipped (replaced by others of their clip)", stacklevel=2)
    warm = times[1:] or times
    return TrainResult(step, ckpt_path, float(np.mean(warm)) if warm else 0.0, unreadable, content_loss.perceptual,
                       nets.config.conditioning)


def hold_out(data, patterns: tuple[str, ...]):
    """The data without the clips that ``patterns`` (clip ids or fnmatch patterns) name; each must name one."""
    import fnmatch

    if not patterns:
        return data
    for p in patterns:
        if not any(fnmatch.fnmatchcase(c.id, p) for c in data.clips):
            raise InputFileError(f"{data.root}: --hold-out {p} names no clip of this data - see its index.json")
    kept = [c for c in data.clips if not any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if not kept:
        raise InputFileError(f"{data.root}: --hold-out leaves no clip to train on")
    videos = sorted({data.videos[c.video] for c in kept})
    row = {v: i for i, v in enumerate(videos)}
    clips = [dataclasses.replace(c, video=row[data.videos[c.video]]) for c in kept]
    return dataclasses.replace(data, clips=clips, videos=videos)


def _write_run_info(run_dir: Path, model: ModelConfig, config: TrainingConfig, data, ctx) -> None:
    info = {"model": model.to_dict(), "training": config.to_dict(), "data": str(data.root), "clips": len(data.clips),
            "clip_ids": [c.id for c in data.clips],
            "videos": len(data.videos), "processes": ctx.world_size, "device": str(ctx.device)}
    with atomic_path(run_dir / "run.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1))

