"""What each source of the opened mouth's inside costs per frame (render/mouth_sources.py): making its picture
(``interior``) and laying it between the lips at the call's size (1280x720 framing), against the budget of 2 ms
for "mine" on this CPU; the painted mouth for comparison.

    python benchmarks/mouth_sources.py [--driver VIDEO] [--portrait IMAGE] [--frames 200] [--mouth-model DIR]

Times only frames whose mouth is open (where a source draws). Not a test: figures depend on the machine and
what else runs on it; say which when you quote them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUDGET_MINE_MS = 2.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--driver", type=Path, default=REPO.parent / "shared/media/train/train_20_man_beard_shouting_movie.mp4")
    p.add_argument("--portrait", type=Path, default=REPO / "assets/portraits/mona_lisa.jpg")
    p.add_argument("--frames", type=int, default=200, help="timed frames (the clip's open-mouth frames, looped)")
    p.add_argument("--mouth-model", default=None, help="mouth model folder for the neural source (default: shipped)")
    args = p.parse_args(argv)

    from avatar_app.call.picture import CallPicture, CallSettings
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import load_portrait_or_avatar
    from avatar_app.pipeline.frame import Frame
    from avatar_app.pipeline.reference import choose_reference
    from avatar_app.pipeline.render import mouth as painted
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mouth_sources import DriverView, InteriorOverlay
    from avatar_app.pipeline.stages import StageLoop, track_frames

    images: dict[int, np.ndarray] = {}
    frames = track_frames(args.driver, keep=lambda f: images.__setitem__(f.index, f.image.copy()))
    points = [f.driver for f in frames]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        avatar = load_portrait_or_avatar(args.portrait)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; driver {args.driver.name}, "
          f"portrait {args.portrait.name}, call 1280x720 (follow framing), working size 512")
    for source in ("painted", "mine", "neural"):
        animator = Animator(avatar, RenderSettings(size=512, mouth=source, mouth_model=args.mouth_model))
        renderer = animator.renderer
        call = CallPicture(CallSettings())
        loop = StageLoop(animator, call=call, media_time=True)
        animator.calibrate(points[choose_reference(points).index])
        make, lay, n, i = [], [], 0, 0
        timing = {"draw": 0.0}

        def timed(cls):
            original = cls.draw

            def draw(self, canvas, to_canvas):
                t = time.perf_counter()
                original(self, canvas, to_canvas)
                timing["draw"] += time.perf_counter() - t
            return original, draw

        originals = [(cls, *timed(cls)) for cls in (painted.MouthOverlay, InteriorOverlay)]
        for cls, _, wrapped in originals:
            cls.draw = wrapped
        interior = getattr(renderer, "_interior", None)
        try:
            while n < args.frames and i < 20 * len(points):
                k = i % len(points)
                d = points[k]
                i += 1
                if d is None:
                    continue
                fr = Frame(images[k], i, i / 30, t_media=i / 30)
                fr.driver = d
                fr.target, fr.animator = np.asarray(animator.target(d, i / 30), np.float32), animator
                opened = painted.central_gap(fr.target[:, :2]) > 0.12
                timing["draw"] = 0.0
                if interior is not None and opened:
                    face = renderer.target_mesh(fr.target)[: len(fr.target)]
                    t = time.perf_counter()
                    interior.interior(DriverView(images[k], d), face)
                    make.append(time.perf_counter() - t)
                loop.render(fr)
                if opened:
                    lay.append(timing["draw"])
                    n += 1
        finally:
            for cls, original, _ in originals:
                cls.draw = original
            animator.close()
        ms = lambda v: (1e3 * np.median(v), 1e3 * np.percentile(v, 95)) if v else (0.0, 0.0)  # noqa: E731
        (m50, m95), (l50, l95) = ms(make), ms(lay)
        verdict = ""
        if source == "mine":
            verdict = f"  budget <= {BUDGET_MINE_MS} ms p50 (both): {'PASS' if m50 + l50 <= BUDGET_MINE_MS else 'MISS'}"
        print(f"{source:8s} interior {m50:5.2f} ms p50 {m95:5.2f} p95 | between the lips at call size {l50:5.2f} ms p50"
              f" {l95:5.2f} p95 | {n} open-mouth frames{verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
