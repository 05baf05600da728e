"""`avatar-app doctor`: checks this computer's set-up, one line per thing the app relies on, with what to do.

Exit code 0 when everything the app needs works (the face tracker, the mesh renderer and the window, plus the
virtual camera with --virtual-camera and onnxruntime with --neural), 1 when one of those fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_NOT_READY = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check this computer's set-up (cameras, virtual camera, models, Qt, disk)",
                              description="Check the set-up: one line per check, what was found and what to do. "
                                          "Exit code 1 when something the app needs does not work.")
    p.add_argument("--virtual-camera", action="store_true",
                   help="the virtual camera is needed too (for calls): its failure makes the exit code 1")
    p.add_argument("--neural", action="store_true",
                   help="the neural renderer is needed too: onnxruntime's failure makes the exit code 1")
    p.add_argument("--recordings", type=Path, default=None, metavar="DIR",
                   help="the folder recordings go to (default: your Videos folder's avatar_app)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of lines")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from avatar_app.pipeline.checks import DoctorOptions, all_needed_ok, as_json, output_marks, report_lines, run_checks
    from avatar_app.ui.qt import window_check

    options = DoctorOptions(recordings_dir=args.recordings, virtual_camera_needed=args.virtual_camera,
                            neural_needed=args.neural)
    checks = run_checks(options, window_check)
    if args.json:
        print(json.dumps(as_json(checks), indent=2, ensure_ascii=False))
    else:
        try:
            sys.stdout.reconfigure(errors="replace")  # a console that cannot show some letter still gets the line
        except (AttributeError, ValueError):
            pass
        print("\n".join(report_lines(checks, output_marks())))
    return 0 if all_needed_ok(checks) else EXIT_NOT_READY
