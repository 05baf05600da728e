"""What the call's picture costs per frame (follow, at 1280x720) with each background (keep, blur, colour), beside
the renderer's drawing it is made from.

    python benchmarks/background.py [--portrait IMG] [--size 512] [--frames 200]

The head turns and rolls back and forth, so the renderer's map covers what it covers in a call. Prints the
median and p95 milliseconds of the call stage alone (wall and this thread's CPU), once what cutting the person
out costs (per avatar), and what making the still layers costs (per avatar and choice).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

PORTRAITS = Path(__file__).resolve().parents[1] / "assets" / "portraits"


def turned(points: np.ndarray, yaw: float, roll: float) -> np.ndarray:
    """The portrait's landmarks with the head turned and rolled about its own centre (degrees)."""
    from avatar_app.face import landmarks as L
    from avatar_app.face.geometry import rotation_from_angles

    c = points[L.RIGID].mean(0)
    return ((points - c) @ rotation_from_angles(yaw, 0.0, roll).T + c).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--portrait", type=Path, default=PORTRAITS / "mona_lisa.jpg")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args()
    from avatar_app.images import load_image
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.call.background import BackgroundSettings, avatar_mask
    from avatar_app.call.picture import CallPicture, CallSettings
    from avatar_app.pipeline.frame import Frame
    from avatar_app.pipeline.render.base import RenderSettings

    avatar = create_avatar(load_image(args.portrait), args.portrait.stem)
    t = time.perf_counter()
    avatar_mask(avatar)
    print(f"{args.portrait.name}: cutting the person out (once per avatar) {1000 * (time.perf_counter() - t):.0f} ms")
    animator = Animator(avatar, RenderSettings(size=args.size))
    w, h = animator.output_size
    rest = avatar.landmarks.astype(np.float64)
    targets = [turned(rest, 15 * np.sin(i / 9), 10 * np.sin(i / 13)) for i in range(args.frames)]
    render_ms = []
    for mode in ("keep", "blur", "colour"):
        stage = CallPicture(CallSettings(background=BackgroundSettings(mode=mode)))
        t = time.perf_counter()
        stage.prepare(animator)
        prepared = 1000 * (time.perf_counter() - t)
        spent, cpu = [], []
        for i, target in enumerate(targets):
            frame = Frame(image=np.zeros((2, 2, 3), np.uint8), index=i, t_capture=i / 30, target=target,
                          animator=animator)
            t = time.perf_counter()
            frame.drawing = animator.draw(target)
            t1, c1 = time.perf_counter(), time.thread_time()
            stage.process(frame)
            spent.append(time.perf_counter() - t1)
            cpu.append(time.thread_time() - c1)
            render_ms.append(t1 - t)
        ms = 1000 * np.array(spent)
        print(f"{mode:>6} at 1280x720: median {np.median(ms):.2f} ms, p95 {np.percentile(ms, 95):.2f} ms, this thread's"
              f" CPU median {1000 * np.median(cpu):.2f} ms over {len(ms)} frames (once per avatar and choice:"
              f" {prepared:.0f} ms)")
    print(f"(the mesh renderer's drawing itself: median {1000 * np.median(render_ms):.2f} ms at {w}x{h})")
    animator.close()


if __name__ == "__main__":
    main()
