"""Command-line options that several commands share (which avatar, how it moves, which model)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_avatar_choice(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--portrait", type=Path, help="portrait image (JPEG/PNG); an .avatar file works too")
    g.add_argument("--avatar", type=Path, help="avatar file made by 'avatar-app avatar create'")


def add_motion_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pose-strength", type=float, default=1.0, help="0 keeps the head still, 1 follows (default), up to 2")
    p.add_argument("--expression-strength", type=float, default=1.0, help="0 keeps the face neutral, 1 follows (default), up to 2")
    p.add_argument("--no-gaze", action="store_true", help="keep the portrait's own gaze")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder made by 'avatar-app export' (neural backend; default: the shipped model)")
    p.add_argument("--runtime", default="onnx", choices=["onnx", "torchscript"], help="how to run the model (default onnx)")
    add_trust_model(p)
    p.add_argument("--provider", default=None, choices=["auto", "cpu", "cuda"],
                   help="onnxruntime device: auto (CUDA when present, else CPU; the default), cpu or cuda")
    p.add_argument("--mouth", default="mine", choices=["mine", "neural", "painted"],
                   help="the inside of an opened mouth: mine (the default: the driver's own mouth from the video or "
                        "camera, in the portrait's colours), neural (the mouth model) or painted (shaded from the "
                        "portrait's palette; also what shows where the driver's mouth is not seen)")
    p.add_argument("--mouth-model", default=None,
                   help="mouth model folder for --mouth neural (default: the shipped mouth-1)")


def add_trust_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model", action="store_true",
                   help="allow --runtime torchscript, whose model files run code: only for models you exported yourself")


def is_demo_driver(driver: Path) -> bool:
    """``--driver demo``: the app's own moving face (pipeline/demo.py); a file named "demo" is still that file."""
    from avatar_app.pipeline.sources import DEMO_SPEC

    return str(driver) == DEMO_SPEC and not driver.exists()


def load_avatar(args):
    """The avatar named by --avatar or --portrait."""
    from avatar_app.pipeline.avatar import load_avatar as load_file, load_portrait_or_avatar

    if args.avatar is not None:
        return load_file(args.avatar)
    return load_portrait_or_avatar(args.portrait)
