"""The renderer alone (and retarget, which feeds it): milliseconds per frame at 256, 512 and 1024 pixels.

    python benchmarks/renderer.py [--driver VIDEO] [--portrait IMG] [--sizes 256 512 1024]
                                  [--backend mesh | --backend neural --model DIR --runtime onnx|torchscript]

The driver is tracked once up front; then, per size, every frame's landmarks are retargeted onto the portrait
and rendered, timed separately, single-threaded (no other stage competes for the CPU, unlike in
`avatar-app bench`). Prints p50 / p95 / p99 / max ms and the frames per second the renderer alone could
sustain. Not a test: figures depend on the machine.

NOT done yet: the neural generator's own micro-benchmark (eager PyTorch vs TorchScript vs onnxruntime on the
bare networks). `--backend neural --model DIR` times an exported model through the renderer interface, one
runtime per run, but nothing here compares the three side by side.
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
    p.add_argument("--portrait", type=Path, default=ROOT / "assets" / "portraits" / "mona_lisa.jpg")
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--backend", default="mesh")
    p.add_argument("--model", default=None, help="neural: model folder made by 'avatar-app export'")
    p.add_argument("--runtime", default="onnx", choices=["onnx", "torchscript"])
    p.add_argument("--repeat", type=int, default=1, help="passes over the clip's landmarks per size")
    args = p.parse_args(argv)
    if not args.driver.is_file():
        print(f"renderer.py: driver video {args.driver} not found - pass --driver", file=sys.stderr)
        return 2

    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import load_portrait_or_avatar
    from avatar_app.measure.profiler import percentiles
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.stages import track_video

    tracked, times = track_video(args.driver)
    poses = [(q, t) for q, t in zip(tracked, times) if q is not None]
    if not poses:
        print(f"renderer.py: no face found in {args.driver} - pass another --driver", file=sys.stderr)
        return 2
    points = [q for q, _ in poses]
    clip_s = times[-1] + (times[-1] - times[0]) / max(1, len(times) - 1)  # one pass, for a growing clock
    avatar = load_portrait_or_avatar(args.portrait)
    print(f"renderer alone: backend {args.backend}, portrait {args.portrait.name} {avatar.size[0]}x{avatar.size[1]}, "
          f"{len(points)} driver poses from {args.driver.name}; {os.cpu_count()} CPUs")
    print(f"{'size':>5} {'output':>9}  {'retarget p50':>12}  {'render p50':>10} {'p95':>7} {'p99':>7} {'max':>7}"
          f"   {'frames/s':>8}   (ms)")
    for size in args.sizes:
        animator = Animator(avatar, RenderSettings(size=size, backend=args.backend, model=args.model,
                                                   runtime=args.runtime))
        animator.calibrate(points[0])
        animator.render(animator.target(points[0], 0.0))  # JIT compilation, caches
        t_ret, t_ren = [], []
        for rep in range(args.repeat):
            for q, t in poses:
                t0 = time.perf_counter()
                target = animator.target(q, rep * clip_s + t)
                t1 = time.perf_counter()
                animator.render(target)
                t2 = time.perf_counter()
                t_ret.append((t1 - t0) * 1000)
                t_ren.append((t2 - t1) * 1000)
        animator.close()
        r, s = percentiles(t_ret), percentiles(t_ren)
        w, h = animator.output_size
        print(f"{size:>5} {w:>4}x{h:<4}  {r['p50']:12.2f}  {s['p50']:10.2f} {s['p95']:7.2f} {s['p99']:7.2f}"
              f" {s['max']:7.2f}   {1000 / s['mean']:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
