"""The `gui` sub-command (also what `avatar-app` with no arguments runs): opens the desktop app.

Registered by the CLI on every run, so it imports Qt only inside its handler.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_app.errors import AvatarAppError, InputFileError

INSTALL_HINT = "pip install -e .[gui]"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open the desktop app (what `avatar-app` alone does)")
    p.add_argument("--source", default=None, metavar="INDEX|VIDEO|demo",
                   help="camera index (0, 1, ...), a video file played in a loop, or demo: a face that moves by"
                        " itself (default: as last time)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--avatar", type=Path, default=None, help="avatar file made by 'avatar-app avatar create'")
    g.add_argument("--portrait", type=Path, default=None, help="portrait image to animate")
    p.add_argument("--virtual-camera", action="store_true", help="switch the virtual camera on at start")
    p.add_argument("--size", type=int, default=None, help="the avatar's longer side in pixels (default: as last time)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    source = getattr(args, "source", None)
    if source is not None and not str(source).isdigit() and str(source) != "demo":
        path = Path(source)
        if not path.is_file():
            raise InputFileError(f"{path}: no such video - give a camera index (0, 1, ...) or a video file")
    picture = getattr(args, "avatar", None) or getattr(args, "portrait", None)
    if picture is not None and not Path(picture).is_file():
        raise InputFileError(f"{picture}: no such file - check the path")
    size = getattr(args, "size", None)
    if size is not None and not 32 <= size <= 4096:
        raise ValueError(f"size must be between 32 and 4096 pixels, got {size}")
    from avatar_app.ui.qt import qt_missing

    if qt_missing():
        raise AvatarAppError(f"the desktop app needs PySide6, which is not installed - run: {INSTALL_HINT}")
    from avatar_app.ui.app import display_problem, run_app
    from avatar_app.ui.main_window import StartOptions

    problem = display_problem()
    if problem is not None:
        raise AvatarAppError(problem)
    virtual_camera = bool(getattr(args, "virtual_camera", False))
    return run_app(StartOptions(source=source, avatar=picture, virtual_camera=virtual_camera, size=size))
