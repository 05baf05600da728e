"""The `avatar-app` command line: one sub-command per job; user errors end in one line and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from avatar_app import __version__
from avatar_app.errors import AvatarAppError

EXIT_USER_ERROR = 2

# Sub-commands that live in their own modules. Each module has register(subparsers), which adds its parser
# and sets `handler` (a function of the parsed args returning the exit code) with set_defaults(). Modules are
# imported when the parser is built, so they must import heavy packages inside their handler, not at the top.
COMMAND_MODULES: list[str] = [
    "avatar_app.commands.render", "avatar_app.commands.record", "avatar_app.commands.avatar", "avatar_app.commands.bench",
    "avatar_app.commands.evaluate", "avatar_app.commands.model", "avatar_app.commands.train", "avatar_app.commands.gui",
    "avatar_app.commands.doctor",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-app",
        description="Animate a portrait (a photo or a painting) with your own face, on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"avatar-app {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
