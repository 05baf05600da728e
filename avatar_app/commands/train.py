"""The launcher: `avatar-app prepare-data`, `avatar-app train` (also under torchrun) and `avatar-app finetune`.

Parsers only; torch and the training room are imported when a command runs, so the rest of the command line
works without the [train] extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_app.errors import AvatarAppError

_TRAIN_FLAGS = {  # option -> TrainingConfig field; left out (None) means the default, or the resumed run's own
    "steps": "steps", "batch_size": "batch_size", "shots": "shots", "seed": "seed",
    "checkpoint_every": "checkpoint_every", "sample_every": "sample_every", "log_every": "log_every",
    "loader_workers": "loader_workers", "lr_generator": "lr_generator", "lr_discriminator": "lr_discriminator",
    "match_ramp_steps": "match_ramp_steps", "ssim_weight": "ssim_weight", "mouth_weight": "mouth_weight",
    "driver_drop": "driver_drop", "driver_other_frame": "driver_other_frame",
}


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise AvatarAppError("this command needs torch - pip install -e .[train]") from None


def register(sub) -> None:
    p = sub.add_parser("prepare-data", help="turn a folder of talking-face videos into training data",
                       description="Finds videos in VIDEOS_DIR and its sub-folders (VoxCeleb2's id/video/clip layout "
                       "too), tracks the face, and writes one stable square crop per clip: frames, landmarks and an "
                       "index. Clips with no face or too few frames are skipped and listed in DATA_DIR/report.json. "
                       "Running it again resumes: finished clips are kept.")
    p.add_argument("videos", type=Path, metavar="VIDEOS_DIR")
    p.add_argument("--out", type=Path, required=True, metavar="DATA_DIR")
    p.add_argument("--task", default="face", choices=["face", "mouth"],
                   help="face: one stable face crop per clip (default); mouth: the mouth crop of every frame, turned "
                   "and scaled with the lips, for the mouth model (train --config mouth)")
    p.add_argument("--size", type=int, default=None,
                   help="side of the crops in pixels (default 256 for faces, 64 for mouths)")
    p.add_argument("--workers", type=int, default=1, help="clips prepared at once, one process each (default 1)")
    p.add_argument("--format", default="jpg", choices=["jpg", "png"], help="frame files (default jpg, quality 95)")
    p.add_argument("--min-frames", type=int, default=16, help="skip clips with fewer usable frames (default 16)")
    p.add_argument("--max-frames", type=int, default=0,
                   help="keep at most this many frames per clip, evenly spaced (default 0: all)")
    p.add_argument("--warp-sources", type=int, default=None,
                   help="frames per clip that the mesh renderer warps to every other frame, the input of the "
                   "warp-conditioned (realtime) generator (default 4 for faces; 0: none, for the paper "
                   "configuration; mouths have none)")
    p.set_defaults(handler=run_prepare)

    t = sub.add_parser("train", help="meta-learn the neural model from prepared data (one GPU, or many with torchrun)",
                       description="Meta-learning (Zakharov et al. 2019). Many GPUs: torchrun --nproc_per_node N -m "
                       "avatar_app train ... (--batch-size is per process). Writes RUN_DIR/checkpoint.pt every "
                       "--checkpoint-every steps and at the end, losses.csv, losses.png, samples/*.png and "
                       "TensorBoard scalars in RUN_DIR/tensorboard.")
    t.add_argument("--data", type=Path, required=True, metavar="DATA_DIR", help="folder made by 'avatar-app prepare-data'")
    t.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="folder for the run")
    t.add_argument("--config", default=None, metavar="NAME|FILE.json",
                   help="network sizes: realtime (default; mouth on mouth data), paper, mouth, or a JSON file of "
                   "ModelConfig fields")
    t.add_argument("--steps", type=int, default=None, help="stop after this many steps in all (default 100000)")
    t.add_argument("--batch-size", type=int, default=None, help="episodes per step and process (default 2)")
    t.add_argument("--shots", type=int, default=None, help="K frames per episode (default 8)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    t.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its checkpoint")
    t.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default 1000)")
    t.add_argument("--sample-every", type=int, default=None, help="steps between sample grids (default 500)")
    t.add_argument("--log-every", type=int, default=None, help="steps between logged losses (default 10)")
    t.add_argument("--vgg19-weights", type=Path, default=None, metavar="FILE",
                   help="torchvision's vgg19-dcbb9e9d.pth, for the perceptual content loss")
    t.add_argument("--vggface-weights", type=Path, default=None, metavar="FILE",
                   help="vgg_face_dag.pth (VGG-Face in PyTorch), for the perceptual content loss")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: CUDA when present")
    t.add_argument("--loader-workers", type=int, default=None, help="data loading processes (default 0 on CPU, 4 on CUDA)")
    t.add_argument("--no-amp", action="store_true", help="full precision on CUDA too")
    t.add_argument("--threads", type=int, default=None,
                   help="CPU threads torch may use (default: torch's own choice, all cores)")
    t.add_argument("--hold-out", nargs="+", default=None, metavar="CLIP",
                   help="clip ids (or patterns like 'train_0*') kept out of training, for validation")
    t.add_argument("--lr-generator", type=float, default=None, help="E and G's learning rate (default 5e-5, the paper's)")
    t.add_argument("--lr-discriminator", type=float, default=None, help="D's learning rate (default 2e-4, the paper's)")
    t.add_argument("--match-ramp-steps", type=int, default=None,
                   help="steps over which the embedding-match weight rises from 0 to 80 (default 2000)")
    t.add_argument("--ssim-weight", type=float, default=None, help="weight of 1 - SSIM in the content loss (default 0)")
    t.add_argument("--mouth-weight", type=float, default=None,
                   help="extra pixel L1 weight inside the target's mouth (the warp-conditioned G: inside the outer "
                   "lips; the mouth G: inside the inner lips) (default 0)")
    t.add_argument("--driver-drop", type=float, default=None,
                   help="mouth model: share of episodes with no driver mouth at all (default 0.2)")
    t.add_argument("--driver-other-frame", type=float, default=None,
                   help="mouth model: share of driver mouths taken from another frame of the clip (default 0.5)")
    t.set_defaults(handler=run_train)

    s = sub.add_parser("strip-checkpoint", help="a training checkpoint's networks without optimiser state",
                       description="Writes OUT with E, G and D (and the run's settings) but no optimiser or RNG "
                       "state: what a model folder ships; 'train --resume' goes on from it with fresh optimisers.")
    s.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    s.add_argument("--out", type=Path, required=True, metavar="FILE.pt")
    s.set_defaults(handler=run_strip)

    f = sub.add_parser("finetune", help="fine-tune a trained model on a few images of one person -> model + avatar",
                       description="The paper's fine-tuning: psi' from P e_hat and D's row from w0 + e_hat, then G and D "
                       "train on the images. Writes OUT/model (an exported model folder), OUT/NAME.avatar (its "
                       "identity) and OUT/finetune.png (landmarks | image | before | after).")
    f.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint (.pt) from 'avatar-app train' (default: the shipped model's own networks)")
    f.add_argument("--images", type=Path, nargs="+", required=True, metavar="IMG", help="photos of one person")
    f.add_argument("--out", type=Path, required=True, metavar="DIR")
    f.add_argument("--steps", type=int, default=100, help="fine-tuning steps (default 100)")
    f.add_argument("--name", default=None, help="avatar name (default: the first image's file name)")
    f.add_argument("--format", nargs="+", default=["onnx", "torchscript"], choices=["onnx", "torchscript"])
    f.add_argument("--vgg19-weights", type=Path, default=None, metavar="FILE")
    f.add_argument("--vggface-weights", type=Path, default=None, metavar="FILE")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    f.add_argument("--seed", type=int, default=0)
    f.set_defaults(handler=run_finetune)


def model_config(spec: str | None):
    """--config: a configuration name, or a JSON file of ModelConfig fields (for your own sizes)."""
    import json

    from avatar_app.errors import InputFileError, first_line
    from avatar_app.model.config import CONFIGS, ModelConfig

    if spec is None:
        return None
    if spec in CONFIGS:
        return CONFIGS[spec]
    path = Path(spec)
    if not path.is_file():
        raise AvatarAppError(f"unknown configuration '{spec}' - choose {', '.join(CONFIGS)} or give a JSON file")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, RecursionError) as err:  # RecursionError: JSON nested too deep
        reason = first_line(err, 120)
        raise InputFileError(
            f"{path}: not a model configuration ({reason}) - give a JSON object of ModelConfig fields, e.g. "
            f"those under 'config' in a model folder's manifest.json"
        ) from None


def run_prepare(args: argparse.Namespace) -> int:
    from avatar_app.training.config import PrepareConfig
    from avatar_app.training.prepare import prepare_data

    mouth = args.task == "mouth"
    config = PrepareConfig(size=args.size or (64 if mouth else 256), image_format=args.format,
                           min_frames=args.min_frames, max_frames=args.max_frames, task=args.task,
                           warp_sources=args.warp_sources if args.warp_sources is not None else (0 if mouth else 4))
    report = prepare_data(args.videos, args.out, config, workers=args.workers)
    reused = sum(c.reused for c in report.prepared + report.skipped)
    print(f"{args.out}: {len(report.prepared)} clips prepared ({report.frames} frames at {config.size}x{config.size}), "
          f"{len(report.skipped)} skipped{f', {reused} kept from an earlier run' if reused else ''}")
    for c in sorted(report.skipped, key=lambda c: c.id)[:20]:
        print(f"  skipped {c.source}: {c.reason}")
    if len(report.skipped) > 20:
        print(f"  ... and {len(report.skipped) - 20} more in {args.out / 'report.json'}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    _need_torch()
    from avatar_app.training import distributed
    from avatar_app.training.config import TrainingConfig
    from avatar_app.training.loop import train

    given = {field: getattr(args, opt) for opt, field in _TRAIN_FLAGS.items() if getattr(args, opt) is not None}
    if args.no_amp:
        given["amp"] = False
    if args.hold_out is not None:
        given["hold_out"] = tuple(args.hold_out)
    config = TrainingConfig(**given)
    model = model_config(args.config)
    if args.threads is not None:
        if args.threads < 1:
            raise AvatarAppError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    ctx = distributed.start(args.device)
    try:
        result = train(args.data, args.out, config, model, resume=args.resume, explicit=set(given),
                       vgg19=args.vgg19_weights, vggface=args.vggface_weights, ctx=ctx)
    finally:
        distributed.stop(ctx)
    if ctx.is_main:
        then = (f"keep its networks with: avatar-app strip-checkpoint {result.checkpoint} --out FILE.pt"
                if result.conditioning == "mouth" else
                f"export it with: avatar-app export --checkpoint {result.checkpoint} --out export/NAME")
        print(f"{result.checkpoint}: step {result.step}, {result.seconds_per_step:.2f} s/step on {ctx.world_size} "
              f"process(es) ({ctx.device.type}); {then}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    _need_torch()
    from avatar_app.training.config import FinetuneConfig
    from avatar_app.training.finetune import finetune

    checkpoint = args.checkpoint
    if checkpoint is None:
        from avatar_app.pipeline.render.neural import default_model

        checkpoint = default_model() / "checkpoint.pt"
        if not checkpoint.is_file():
            raise AvatarAppError(f"{checkpoint.parent}: the shipped model has no checkpoint.pt to fine-tune - "
                                 "pass --checkpoint FILE.pt from 'avatar-app train'")
    result = finetune(checkpoint, args.images, args.out, FinetuneConfig(steps=args.steps, seed=args.seed),
                      name=args.name, formats=tuple(args.format), vgg19=args.vgg19_weights,
                      vggface=args.vggface_weights, device=args.device)
    print(f"{result.model_dir}: fine-tuned model {result.model_id} ({result.steps} steps, {result.seconds:.0f} s; "
          f"L1 on the images {result.l1_before:.3f} -> {result.l1_after:.3f})")
    print(f"{result.avatar}: its avatar; {result.sheet}: landmarks | image | before | after")
    print(f"render with: avatar-app render --driver VIDEO --avatar {result.avatar} --backend neural "
          f"--model {result.model_dir} --out OUT.mp4")
    return 0


def run_strip(args: argparse.Namespace) -> int:
    _need_torch()
    from avatar_app.model.checkpoint import save_networks_only

    if args.out.resolve() == args.checkpoint.resolve():
        raise AvatarAppError(f"{args.out}: is the checkpoint itself - write the networks to another file")
    path, step = save_networks_only(args.checkpoint, args.out)
    print(f"{path}: the networks of step {step} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
