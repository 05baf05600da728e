"""`avatar-app bench`: frame latency and CPU use through the live pipeline, as a table, JSON, CSV and a plot.

Only argparse here; the pipeline is imported when the command runs (avatar_app/measure/bench.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from avatar_app.commands.options import add_avatar_choice, add_model_options

    p = subparsers.add_parser(
        "bench",
        help="measure frame latency and CPU use through the live pipeline (per stage, capture->sink, audio delay)",
        description="Run the threaded pipeline from a looping driver video and report where frame time and CPU go. "
                    "Paced (a camera's rate) measures latency and the audio delay; unpaced measures throughput.",
    )
    p.add_argument("--driver", type=Path, required=True,
                   help="video of a face, or 'demo': the app's own moving face; it loops as long as needed")
    add_avatar_choice(p)
    p.add_argument("--backend", default="mesh", help="renderer: mesh (default) or neural (the shipped model, or --model DIR)")
    add_model_options(p)
    p.add_argument("--size", type=int, default=512, help="longer side of the output in pixels (default 512)")
    p.add_argument("--framing", default="none", choices=["none", "follow", "fill", "fit"],
                   help="also make the call's 1280x720 picture as the window does for the virtual camera "
                        "(default none: the avatar image only)")
    p.add_argument("--tracker", default="region", choices=["region", "graph"],
                   help="face tracker: region (the landmark model on the face's last region, the default) or graph"
                        " (MediaPipe's FaceMesh graph, which detects on every frame)")
    p.add_argument("--frames", type=int, default=300, help="frames to measure (default 300)")
    p.add_argument("--warmup", type=int, default=30, help="frames run first and not measured (default 30)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--paced", type=float, default=30.0, metavar="FPS",
                      help="deliver driver frames at this rate, as a camera would (default 30)")
    pace.add_argument("--unpaced", action="store_true", help="as fast as the pipeline goes (throughput)")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="run N busy processes beside the pipeline, one CPU each, as a video-call program loads the "
                        "machine (default 0); they end with the bench")
    p.add_argument("--json", type=Path, required=True, metavar="OUT.json", help="versioned report (see benchmarks/README.md)")
    p.add_argument("--csv", type=Path, default=None, metavar="OUT.csv", help="one row per frame")
    p.add_argument("--plot", type=Path, default=None, metavar="OUT.png", help="latency distributions and over time")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from avatar_app.commands.options import is_demo_driver, load_avatar
    from avatar_app.errors import InputFileError
    from avatar_app.measure import bench
    from avatar_app.pipeline.sinks import check_output_path

    # Every output is checked before the run, so minutes of measuring never end in an unwritable path.
    check_output_path(args.json, (".json",))
    if args.csv is not None:
        check_output_path(args.csv, (".csv",))
    if args.plot is not None:
        check_output_path(args.plot, (".png",))
        bench.require_matplotlib()
    if not args.driver.is_file() and not is_demo_driver(args.driver):  # the demo is opened as a source
        raise InputFileError(f"{args.driver}: no such driver video - check the path (or use --driver demo)")
    settings = bench.BenchSettings(
        driver=args.driver, size=args.size, backend=args.backend, model=args.model, runtime=args.runtime,
        provider=args.provider, trust_code=args.trust_model, mouth=args.mouth, mouth_model=args.mouth_model, frames=args.frames, warmup=args.warmup,
        paced_fps=None if args.unpaced else args.paced, framing=None if args.framing == "none" else args.framing, load=args.load,
        tracker=args.tracker,
    )
    avatar = load_avatar(args)
    result = bench.run_bench(avatar, settings, on_start=lambda: print(
        f"bench: running {settings.warmup} warm-up + {settings.frames} frames ...", file=sys.stderr, flush=True))
    print(bench.format_table(result))
    bench.write_json(result, args.json)
    written = [str(args.json)]
    if args.csv is not None:
        bench.write_csv(result, args.csv)
        written.append(str(args.csv))
    if args.plot is not None:
        bench.write_plot(result, args.plot)
        written.append(str(args.plot))
    print(f"wrote {', '.join(written)}")
    if not result.ok:
        print(f"avatar-app: error: bench failed: {result.failure}", file=sys.stderr)
        return 1
    return 0
