"""`avatar-app evaluate`: the paper's self-reenactment protocol on the user's videos, beside a do-nothing baseline.

Only the parser lives here; the work is in avatar_app.evaluate, imported when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score self-reenactment on videos (first T frames make the avatar, later frames drive it)",
        description="The first T frames of each video make the avatar; later frames of the same video drive it "
        "with their own landmarks and each output is scored against the real frame (SSIM, PSNR, L1, landmark "
        "error, CSIM, faces found), beside the static baseline (output = source frame).",
    )
    p.add_argument("--videos", nargs="+", type=Path, required=True, metavar="DIR|FILE",
                   help="video files, or folders whose videos are all used")
    p.add_argument("--shots", nargs="+", type=int, default=[1, 8, 32], metavar="T",
                   help="how many first frames make the avatar (default: 1 8 32)")
    p.add_argument("--backend", default="mesh", choices=("mesh", "neural"), help="renderer to score (default: mesh)")
    p.add_argument("--model", type=Path, metavar="DIR",
                   help="model folder made by 'avatar-app export' (neural backend; default: the shipped model)")
    p.add_argument("--finetune-steps", type=int, default=0, metavar="N",
                   help="neural: also score the model fine-tuned for N steps on the T frames (the paper's FT; needs --checkpoint)")
    p.add_argument("--checkpoint", type=Path, metavar="FILE.pt", help="the model's training checkpoint, for --finetune-steps")
    p.add_argument("--size", type=int, default=256, help="side of the square face crop and output (default 256)")
    p.add_argument("--frames", type=int, default=32, help="driven frames per video (default 32)")
    p.add_argument("--json", type=Path, required=True, metavar="OUT", help="every per-video and per-frame figure")
    p.add_argument("--markdown", type=Path, metavar="OUT", help="the tables as markdown (also printed)")
    p.add_argument("--sheets", type=Path, metavar="DIR",
                   help="per video a contact sheet PNG (source | driver | output) and a sheet of each method's six "
                        "worst frames (driver | output); with --cross, a sheet per portrait and clip")
    p.add_argument("--cross", nargs="+", type=Path, metavar="PORTRAIT",
                   help="cross-reenactment instead: each portrait image driven by each video; "
                        "reports the Pearson r of head pose, position, mouth, eyes and brows between driver and "
                        "avatar, faces found, identity distance and jitter")
    p.set_defaults(handler=run)


def _check_output(path: Path, what: str) -> None:
    from avatar_app.errors import OutputPathError

    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder - give a file name for the {what}")
    if not path.parent.is_dir():
        raise OutputPathError(f"{path}: folder '{path.parent}' does not exist - create it first")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from avatar_app.errors import AvatarAppError, NoFaceError, OutputPathError
    from avatar_app.measure.evaluate import EvaluationSettings, evaluate, find_videos
    from avatar_app.measure.report import markdown

    model = args.model
    if args.backend == "neural" and model is None:
        from avatar_app.pipeline.render.neural import default_model

        model = default_model()
    if args.finetune_steps < 0:
        raise AvatarAppError(f"--finetune-steps must be 0 or more, got {args.finetune_steps}")
    settings = EvaluationSettings(shots=tuple(args.shots), backend=args.backend, size=args.size, frames=args.frames,
                                  model=None if model is None else str(model), finetune_steps=args.finetune_steps,
                                  checkpoint=None if args.checkpoint is None else str(args.checkpoint))
    _check_output(args.json, "JSON report")
    if args.markdown is not None:
        _check_output(args.markdown, "markdown report")
    if args.sheets is not None:
        if args.sheets.exists() and not args.sheets.is_dir():
            raise OutputPathError(f"{args.sheets}: is a file - give a folder for the contact sheets")
        if not args.sheets.parent.is_dir():
            raise OutputPathError(f"{args.sheets}: folder '{args.sheets.parent}' does not exist - create it first")
    videos = find_videos(args.videos)
    if args.cross:
        return _run_cross(args, settings, videos)

    report = evaluate(videos, settings, progress=True, on_skip=lambda why: tqdm.write(f"skipped: {why}"))
    if not report.videos:
        reasons = "; ".join(why for _, why in report.skipped)
        raise NoFaceError(f"no video could be scored ({reasons}) - give videos whose first frames show a face")

    text = markdown(report)
    _write_reports(args, report.to_json(), text,
                   {**report.sheets, **{f"{k}_worst": v for k, v in report.worst_sheets.items()}})
    print(text)
    if report.csim_model is None:
        tqdm.write(f"CSIM unavailable: {report.csim_reason}")
    return 0


def _write_reports(args: argparse.Namespace, data: dict, text: str, sheets: dict) -> None:
    """The JSON, the markdown and the sheets, each written atomically; a failed write is one line."""
    import json

    import cv2

    from avatar_app.atomic import atomic_path
    from avatar_app.errors import OutputPathError

    try:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(data, indent=2, allow_nan=False))
        if args.markdown is not None:
            with atomic_path(args.markdown) as tmp:
                tmp.write_text(text + "\n", encoding="utf-8")
        if args.sheets is not None:
            args.sheets.mkdir(exist_ok=True)
            for stem, sheet in sheets.items():
                out = args.sheets / f"{stem}.png"
                with atomic_path(out) as tmp:
                    if not cv2.imwrite(str(tmp), sheet):
                        raise OutputPathError(f"{out}: could not write the contact sheet")
    except OSError as err:
        raise OutputPathError(f"{err.filename or args.json}: cannot write ({err.strerror or err})") from None


def _run_cross(args: argparse.Namespace, settings, videos) -> int:
    from avatar_app.errors import InputFileError, NoFaceError
    from avatar_app.measure.evaluate_cross import cross_markdown, evaluate_cross
    from avatar_app.images import load_image

    for p in args.cross:
        if not p.is_file():
            raise InputFileError(f"{p}: no such portrait - check the paths given to --cross")
        load_image(p)  # not an image: one line naming it, before any work
    report = evaluate_cross(args.cross, videos, settings, progress=True)
    if not report.results:
        reasons = "; ".join(f"{w}: {why}" for w, why in report.skipped)
        raise NoFaceError(f"nothing could be scored ({reasons}) - give portraits and videos with a clear face")
    text = cross_markdown(report)
    _write_reports(args, report.to_json(), text, report.sheets)
    print(text)
    return 0
