"""Speed of the headless core on this machine: each stage alone, then end to end through the threaded runner.

    python benchmarks/speed.py [--driver VIDEO] [--portrait IMG] [--sizes 256 512] [--frames 600]

Prints milliseconds per frame (median and p95) for the tracker, retarget and the mesh renderer at each size,
then frames per second and capture->sink latency through the real runner, unpaced (as fast as it goes; the
file source waits for the tracker instead of decoding frames that would be dropped).
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"


def _ms(values) -> str:
    v = np.asarray(values) * 1000
    return f"{np.median(v):6.2f} / {np.percentile(v, 95):6.2f}"


class _CountingSink:
    name = "null"

    def __init__(self):
        self.count = 0

    def process(self, frame):
        self.count += 1

    def close(self):
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--driver", type=Path, default=SHARED / "driving_man_talking_vox.mp4")
    p.add_argument("--portrait", type=Path, default=ROOT / "assets" / "portraits" / "mona_lisa.jpg")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--frames", type=int, default=600, help="frames through the runner per size")
    p.add_argument("--max-faces", type=int, default=None, help="tracker max_faces (default: the app's)")
    args = p.parse_args(argv)
    if not args.driver.is_file():
        print(f"speed.py: driver video {args.driver} not found - pass --driver", file=sys.stderr)
        return 2

    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import load_portrait_or_avatar
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.runner import Runner, RunnerSettings
    from avatar_app.pipeline.sources import SourceSettings, open_source
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    tracker_settings = TrackerSettings() if args.max_faces is None else TrackerSettings(max_faces=args.max_faces)
    print(f"machine: {os.cpu_count()} CPUs; driver {args.driver.name}; portrait {args.portrait.name}; "
          f"tracker max_faces={tracker_settings.max_faces}")
    frames = []
    with open_source(str(args.driver)) as src:
        for f in src:
            frames.append(f.image)
    h, w = frames[0].shape[:2]

    tracker = FaceTracker(tracker_settings)
    points, t_track = [], []
    for i, img in enumerate(frames):
        t0 = time.perf_counter()
        face = tracker.process(img, i / 25)
        t_track.append(time.perf_counter() - t0)
        points.append(None if face is None else face.points)
    tracker.close()
    points = [q for q in points if q is not None]
    print(f"\ntracker ({w}x{h} frames, stream mode): {_ms(t_track[5:])} ms (median / p95)")

    avatar = load_portrait_or_avatar(args.portrait)
    print(f"\n{'size':>5} {'output':>9} {'retarget ms':>15} {'render ms':>15} {'runner FPS':>11} {'latency ms':>15} {'dropped':>8}")
    for size in args.sizes:
        animator = Animator(avatar, RenderSettings(size=size))
        animator.calibrate(points[0])
        animator.render(animator.target(points[1], 0.0))  # compile / warm up
        t_ret, t_ren = [], []
        for i, q in enumerate(points[1:]):
            t0 = time.perf_counter()
            target = animator.target(q, i / 25)
            t1 = time.perf_counter()
            animator.render(target)
            t2 = time.perf_counter()
            t_ret.append(t1 - t0)
            t_ren.append(t2 - t1)

        sink = _CountingSink()
        latencies = []

        def on_frame(out, latencies=latencies):
            latencies.append(out.stamps["sink:null"] - out.t_capture)

        source = open_source(SourceSettings(str(args.driver), loop=True))
        animator = Animator(avatar, RenderSettings(size=size))
        runner = Runner(source, animator, [sink], RunnerSettings(tracker=tracker_settings, drop_stale=False),
                        on_frame=on_frame)
        runner.start()
        while sink.count < 30:  # warm-up
            time.sleep(0.01)
        start_count, t0 = sink.count, time.perf_counter()
        while sink.count - start_count < args.frames and runner.running:
            time.sleep(0.01)
        fps = (sink.count - start_count) / (time.perf_counter() - t0)
        runner.stop()
        dropped = sum(runner.stats.dropped.values())
        ow, oh = animator.output_size
        print(f"{size:>5} {ow:>4}x{oh:<4} {_ms(t_ret):>15} {_ms(t_ren):>15} {fps:>11.1f} {_ms(latencies[30:]):>15} {dropped:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
