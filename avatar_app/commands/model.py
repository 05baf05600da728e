"""`avatar-app export` and `avatar-app checkpoint init`: from weights to a model folder the app runs.

torch is imported inside the handlers only, so the rest of the command line works without the [train] extra.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_app.errors import AvatarAppError


def _need_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise AvatarAppError("this command needs torch - pip install -e .[train]") from None


def register(sub) -> None:
    e = sub.add_parser("export", help="export a checkpoint to ONNX / TorchScript with a manifest.json")
    e.add_argument("--checkpoint", type=Path, required=True, help="checkpoint (.pt) from 'avatar-app train'")
    e.add_argument("--out", type=Path, required=True, help="model folder to write, e.g. export/my_model")
    e.add_argument("--format", nargs="+", default=["onnx", "torchscript"], choices=["onnx", "torchscript"])
    e.add_argument("--with-networks", action="store_true",
                   help="also write checkpoint.pt: E, G and D without optimiser state (what fine-tuning needs)")
    e.set_defaults(handler=run_export)

    c = sub.add_parser("checkpoint", help="checkpoint utilities")
    csub = c.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    ci = csub.add_parser("init", help="write an UNTRAINED checkpoint (random weights) to try export and the neural backend")
    ci.add_argument("--config", default="realtime", choices=["realtime", "paper"])
    ci.add_argument("--out", type=Path, required=True)
    ci.add_argument("--seed", type=int, default=0)
    ci.set_defaults(handler=run_init)


def run_export(args: argparse.Namespace) -> int:
    _need_torch()
    from avatar_app.model.export import export_checkpoint

    reports = export_checkpoint(args.checkpoint, args.out, args.format, with_networks=args.with_networks)
    print(f"{args.out}: exported")
    print(f"{'format':<12} {'seconds':>8} {'MB':>8} {'max |diff| vs eager':>20}")
    for r in reports:
        print(f"{r.format:<12} {r.seconds:>8.1f} {r.bytes / 1e6:>8.2f} {r.max_difference:>20.2e}")
    return 0


def run_init(args: argparse.Namespace) -> int:
    _need_torch()
    from avatar_app.model.checkpoint import build_networks, model_id, save_checkpoint
    from avatar_app.model.config import get_config

    if not args.out.parent.is_dir():
        raise AvatarAppError(f"{args.out}: folder '{args.out.parent}' does not exist - create it first")
    nets = build_networks(get_config(args.config), seed=args.seed)
    save_checkpoint(args.out, nets)
    print(f"{args.out}: untrained '{args.config}' checkpoint (model {model_id(nets)}) - its faces are noise until trained")
    return 0
