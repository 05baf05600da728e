"""The face tracker alone: milliseconds per driver frame in stream mode, as the live pipeline runs it.

    python benchmarks/tracker.py [--driver VIDEO] [--repeat 2] [--max-faces 3 1]

Decodes the driver first (decoding is not timed), then tracks every frame with the region tracker (the
default backend), then with MediaPipe's FaceMesh graph once per ``--max-faces`` value: with more than one face
allowed, the graph runs its face detector on frames where fewer faces are tracked. benchmarks/tracker_speed.py
compares them over all the clips, with their agreement.
Prints p50 / p95 / p99 / max ms and the frames per second the tracker alone could sustain.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--driver", type=Path, default=SHARED / "driving_man_talking_vox.mp4")
    p.add_argument("--repeat", type=int, default=2, help="passes over the clip (the first 10 frames are warm-up)")
    p.add_argument("--max-faces", type=int, nargs="+", default=[3, 1], help="tracker max_faces values to compare")
    args = p.parse_args(argv)
    if not args.driver.is_file():
        print(f"tracker.py: driver video {args.driver} not found - pass --driver", file=sys.stderr)
        return 2

    from avatar_app.measure.profiler import percentiles
    from avatar_app.pipeline.sources import open_source
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    with open_source(str(args.driver)) as src:
        images = [f.image for f in src]
        fps = src.fps
    h, w = images[0].shape[:2]
    print(f"tracker alone: {args.driver.name} ({w}x{h}, {len(images)} frames x {args.repeat}); "
          f"{os.cpu_count()} CPUs")
    print(f"{'backend':>7} {'max_faces':>9} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}   {'frames/s':>8} {'found':>6}   (ms)")
    for backend, max_faces in [("region", 1)] + [("graph", m) for m in args.max_faces]:
        tracker = FaceTracker(TrackerSettings(max_faces=max_faces, backend=backend))
        times, found, k = [], 0, 0
        for _ in range(args.repeat):
            for image in images:
                t0 = time.perf_counter()
                face = tracker.process(image, k / fps)
                times.append(time.perf_counter() - t0)
                found += face is not None
                k += 1
        tracker.close()
        s = percentiles([t * 1000 for t in times[10:]])
        print(f"{tracker.backend:>7} {'-' if backend == 'region' else max_faces:>9} {s['p50']:7.2f} {s['p95']:7.2f} {s['p99']:7.2f} {s['max']:7.2f}   "
              f"{1000 / s['mean']:8.1f} {found / k:6.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
