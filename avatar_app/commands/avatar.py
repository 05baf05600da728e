"""`avatar-app avatar create | info`: make an .avatar file from a portrait (and, with a model, its identity)."""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_app.commands.options import add_trust_model


def register(sub) -> None:
    a = sub.add_parser("avatar", help="make and inspect avatar files")
    asub = a.add_subparsers(dest="avatar_command", metavar="ACTION")
    ac = asub.add_parser("create", help="find the face in a portrait and save an .avatar file")
    ac.add_argument("portrait", type=Path, nargs="+",
                    help="portrait image; with --model, more images of the same person make a few-shot identity")
    ac.add_argument("--out", type=Path, required=True, help="NAME.avatar")
    ac.add_argument("--name", default=None, help="display name (default: the file name)")
    ac.add_argument("--model", default=None, help="also store the identity (ê, ψ) for this exported model")
    ac.add_argument("--runtime", default="onnx", choices=["onnx", "torchscript"], help="how to run the model")
    add_trust_model(ac)
    ai = asub.add_parser("info", help="print what an avatar file holds")
    ai.add_argument("avatar", type=Path)
    ac.set_defaults(handler=_avatar_create)
    ai.set_defaults(handler=_avatar_info)


def _avatar_create(args: argparse.Namespace) -> int:
    from avatar_app.errors import AvatarAppError, OutputPathError
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
            points.append(detect_portrait(img, name=extra.stem).points)
        avatar.neural = make_identity(model, images, points)
    save_avatar(avatar, out)
    h, w = image.shape[:2]
    neural = f", identity for model {avatar.neural.model_id} from {len(args.portrait)} image(s)" if avatar.neural else ""
    print(f"{out}: avatar '{avatar.name}' ({w}x{h}, {len(avatar.mesh.triangles)} mesh triangles{neural})")
    return 0


def _avatar_info(args: argparse.Namespace) -> int:
    from avatar_app.pipeline.avatar import load_avatar
    from avatar_app.pipeline.render.mouth import mouth_opening

    av = load_avatar(args.avatar)
    w, h = av.size
    print(f"name: {av.name}\nimage: {w}x{h}\nfaces found: {av.faces_found}\n"
          f"mesh: {av.mesh.n_points} points, {len(av.mesh.triangles)} triangles\n"
          f"mouth opening: {mouth_opening(av.landmarks):.3f}")
    return 0
