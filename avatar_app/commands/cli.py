"""The `avatar-app` command line: one sub-command per job; user errors end in one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from avatar_app import __version__
from avatar_app.errors import AvatarAppError, InputFileError, OutputPathError

EXIT_USER_ERROR = 2

# Sub-commands that live in their own modules. Each module has register(subparsers), which adds its parser
# and sets `handler` (a function of the parsed args returning the exit code) with set_defaults(). Modules are
# imported when the parser is built, so they must import heavy packages inside their handler, not at the top.
COMMAND_MODULES: list[str] = ["avatar_app.commands.evaluate", "avatar_app.commands.model", "avatar_app.commands.bench", "avatar_app.commands.gui", "avatar_app.commands.train"]


def _add_avatar_choice(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--portrait", type=Path, help="portrait image (JPEG/PNG); an .avatar file works too")
    g.add_argument("--avatar", type=Path, help="avatar file made by 'avatar-app avatar create'")


def _add_motion_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pose-strength", type=float, default=1.0, help="0 keeps the head still, 1 follows (default), up to 2")
    p.add_argument("--expression-strength", type=float, default=1.0, help="0 keeps the face neutral, 1 follows (default), up to 2")
    p.add_argument("--no-gaze", action="store_true", help="keep the portrait's own gaze")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder made by 'avatar-app export' (neural backend; default: the shipped model)")
    p.add_argument("--runtime", default="onnx", choices=["onnx", "torchscript"], help="how to run the model (default onnx)")
    _add_trust_model(p)
    p.add_argument("--provider", default=None, choices=["auto", "cpu", "cuda"],
                   help="onnxruntime device: auto (CUDA when present, else CPU; the default), cpu or cuda")


def _add_trust_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-model", action="store_true",
                   help="allow --runtime torchscript, whose model files run code: only for models you exported yourself")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-app",
        description="Animate a portrait (a photo or a painting) with your own face, on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"avatar-app {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("render", help="animate a portrait with a driving video and write an MP4")
    r.add_argument("--driver", type=Path, required=True, help="video of a face (its audio is kept)")
    _add_avatar_choice(r)
    r.add_argument("--out", type=Path, required=True, help="output video (.mp4, .mov or .mkv)")
    r.add_argument("--size", type=int, default=512, help="longer side of the output in pixels (default 512)")
    r.add_argument("--backend", default="mesh", help="renderer: mesh (default, needs no weights) or neural (the shipped model, or --model DIR)")
    _add_model_options(r)
    r.add_argument("--reference-frame", type=int, default=None, metavar="N",
                   help="driver frame whose pose is the portrait's own (default: the first with a face)")
    r.add_argument("--side-by-side", action="store_true", help="write driver | avatar next to each other")
    _add_motion_options(r)

    a = sub.add_parser("avatar", help="make and inspect avatar files")
    asub = a.add_subparsers(dest="avatar_command", metavar="ACTION")
    ac = asub.add_parser("create", help="find the face in a portrait and save an .avatar file")
    ac.add_argument("portrait", type=Path, nargs="+",
                    help="portrait image; with --model, more images of the same person make a few-shot identity")
    ac.add_argument("--out", type=Path, required=True, help="NAME.avatar")
    ac.add_argument("--name", default=None, help="display name (default: the file name)")
    ac.add_argument("--model", default=None, help="also store the identity (ê, ψ) for this exported model")
    ac.add_argument("--runtime", default="onnx", choices=["onnx", "torchscript"], help="how to run the model")
    _add_trust_model(ac)
    ai = asub.add_parser("info", help="print what an avatar file holds")
    ai.add_argument("avatar", type=Path)

    r.set_defaults(handler=_render)
    ac.set_defaults(handler=_avatar_create)
    ai.set_defaults(handler=_avatar_info)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no arguments: open the desktop app
        args = parser.parse_args(["gui"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _one_line_warning
            handler = getattr(args, "handler", None)
            if handler is None:  # e.g. `avatar` without an action
                parser.parse_args([args.command, "--help"])
                return 0
            return int(handler(args) or 0)
    except AvatarAppError as err:
        print(f"avatar-app: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValueError as err:  # settings out of range (e.g. --size 5)
        print(f"avatar-app: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("avatar-app: interrupted - nothing half-written was kept", file=sys.stderr)
        return 130


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"avatar-app: warning: {message}", file=sys.stderr)


def _load_avatar(args):
    from avatar_app.pipeline.avatar import load_avatar, load_portrait_or_avatar

    if args.avatar is not None:
        return load_avatar(args.avatar)
    return load_portrait_or_avatar(args.portrait)


def _avatar_create(args) -> int:
    from avatar_app.pipeline.avatar import create_avatar, save_avatar
    from avatar_app.images import load_image

    out = args.out
    if out.suffix.lower() != ".avatar":
        raise OutputPathError(f"{out}: avatar files end in .avatar - use e.g. {out.with_suffix('.avatar')}")
    if not out.parent.is_dir():
        raise OutputPathError(f"{out}: folder '{out.parent}' does not exist - create it first")
    first = args.portrait[0]
    if len(args.portrait) > 1 and args.model is None:
        raise AvatarAppError("several portrait images make a few-shot identity for a neural model - add --model export/NAME")
    image = load_image(first)
    avatar = create_avatar(image, name=args.name or first.stem)
    if args.model is not None:
        from avatar_app.pipeline.render.neural import ExportedModel, make_identity
        from avatar_app.pipeline.tracker import detect_portrait

        model = ExportedModel(args.model, args.runtime, trust_code=args.trust_model)
        images, points = [image], [avatar.landmarks]
        for extra in args.portrait[1:]:
            img = load_image(extra)
            images.append(img)
            points.append(detect_portrait(img, name=str(extra)).points)
        avatar.neural = make_identity(model, images, points)
    save_avatar(avatar, out)
    h, w = image.shape[:2]
    neural = f", identity for model {avatar.neural.model_id} from {len(args.portrait)} image(s)" if avatar.neural else ""
    print(f"{out}: avatar '{avatar.name}' ({w}x{h}, {len(avatar.mesh.triangles)} mesh triangles{neural})")
    return 0


def _avatar_info(args) -> int:
    from avatar_app.pipeline.avatar import load_avatar
    from avatar_app.pipeline.render.mouth import mouth_opening

    av = load_avatar(args.avatar)
    w, h = av.size
    print(f"name: {av.name}\nimage: {w}x{h}\nfaces found: {av.faces_found}\n"
          f"mesh: {av.mesh.n_points} points, {len(av.mesh.triangles)} triangles\n"
          f"mouth opening: {mouth_opening(av.landmarks):.3f}")
    return 0


def _render(args) -> int:
    from avatar_app.commands.render import render_video
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.retarget import RetargetSettings
    from avatar_app.pipeline.sinks import check_output_path

    check_output_path(args.out)  # before any work
    if not args.driver.is_file():
        raise InputFileError(f"{args.driver}: no such driver video - check the path")
    render = RenderSettings(size=args.size, backend=args.backend, model=args.model, runtime=args.runtime,
                            provider=args.provider, trust_code=args.trust_model)
    motion = RetargetSettings(
        pose_strength=args.pose_strength,
        expression_strength=args.expression_strength,
        follow_gaze=not args.no_gaze,
    )
    avatar = _load_avatar(args)
    report = render_video(
        args.driver, avatar, args.out, render=render, motion=motion,
        reference_frame=args.reference_frame, side_by_side=args.side_by_side, progress=True,
    )
    print(
        f"{args.out}: {report.frames} frames at {report.fps:g} fps, {report.size[0]}x{report.size[1]}"
        f"{', audio kept' if report.audio else ''}; face found in {report.frames_with_face}/{report.frames} frames"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
