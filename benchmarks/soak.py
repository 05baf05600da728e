"""Soak: 10,000 frames through the real threaded runner, watching memory, queues, drops and latency over time.

    python benchmarks/soak.py [--frames 10000] [--every 500] [--driver VIDEO] [--portrait IMG] [--size 512]
                              [--unpaced] [--out out/soak]

A looping driver video (played at its own rate, as a camera delivers frames; --unpaced: as fast as the machine
goes, every frame processed) animates the portrait with the mesh renderer into a recording (a fragmented MP4,
as the desktop app records) and a counting sink standing in for the virtual camera. Every --every frames it
samples resident memory, queue lengths and their high-water marks, drops, and per-stage latency over the
last window (the app's own Profiler), and prints a row. At the end it checks the targets -- memory growth
< 50 MB after warm-up (the first window), queues never above their bound, p95 latency in the last window
within 10 % of the first after warm-up -- that the recording plays with every frame written, and writes
soak.csv and soak.png
(memory and latency over time) to --out. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"
DEFAULT_DRIVER = SHARED / "driving_man_talking_vox.mp4"
MB = 1024 * 1024


class CountingSink:
    """Stands in for the virtual camera: takes every frame, keeps none."""

    name = "virtual camera"

    def __init__(self) -> None:
        self.count = 0

    def process(self, frame) -> None:
        self.count += 1

    def close(self) -> None:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10_000, help="frames to deliver to the sinks")
    p.add_argument("--every", type=int, default=500, help="frames per sample")
    p.add_argument("--driver", type=Path, default=DEFAULT_DRIVER)
    p.add_argument("--portrait", type=Path, default=ROOT / "assets" / "portraits" / "mona_lisa.jpg")
    p.add_argument("--size", type=int, default=512, help="avatar size (the app's default)")
    p.add_argument("--unpaced", action="store_true", help="as fast as it goes, every frame processed")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "soak")
    args = p.parse_args(argv)
    if not args.driver.is_file():
        print(f"soak.py: driver video {args.driver} not found - pass --driver VIDEO", file=sys.stderr)
        return 2
    if args.frames < 3 * args.every:
        print("soak.py: --frames must cover at least three samples (3 x --every)", file=sys.stderr)
        return 2
    try:
        import psutil
    except ImportError:
        print("soak.py: needs psutil - pip install -e .[dev]", file=sys.stderr)
        return 2

    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import load_portrait_or_avatar
    from avatar_app.measure.profiler import Profiler, ProfilerSettings
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.runner import Runner, RunnerSettings
    from avatar_app.pipeline.sinks import VideoFileSink
    from avatar_app.pipeline.sources import SourceSettings, open_source

    args.out.mkdir(parents=True, exist_ok=True)
    process = psutil.Process()
    source = open_source(SourceSettings(str(args.driver), loop=True, paced=not args.unpaced))
    animator = Animator(load_portrait_or_avatar(args.portrait), RenderSettings(size=args.size))
    settings = RunnerSettings(drop_stale=not args.unpaced)
    profiler = Profiler(ProfilerSettings(window=args.every, keep_record=False))
    scratch = Path(tempfile.mkdtemp(prefix="soak-", dir=args.out))
    recording = VideoFileSink(scratch / "recording.mp4", fps=source.fps, size=animator.output_size, fragmented=True)
    recording.open()
    vcam = CountingSink()
    problems: list[str] = []
    runner = Runner(source, animator, [recording, vcam], settings, on_problem=problems.append, observer=profiler)
    w, h = animator.output_size
    mode = "unpaced" if args.unpaced else f"paced at {source.fps:g} fps"
    print(f"machine: {os.cpu_count()} CPUs; driver {args.driver.name} ({mode}, looping); portrait "
          f"{args.portrait.name} -> {w}x{h}; sinks: recording (fragmented MP4) + counting sink; "
          f"queue bound {settings.slot_size}")
    print(f"{'frames':>7} {'time s':>7} {'fps':>6} {'RSS MB':>7} {'queues':>7} {'high':>5} {'dropped':>8} "
          f"{'track ms':>9} {'render ms':>10} {'record ms':>10} {'lat p50':>8} {'lat p95':>8}")

    rows = []
    t0 = time.perf_counter()
    runner.start()
    try:
        target = args.every
        while target <= args.frames:
            while profiler.frames_seen < target and runner.running:
                threading.Event().wait(0.02)
            if not runner.running:
                print(f"soak.py: the runner stopped early: {problems[-1] if problems else 'no reason given'}",
                      file=sys.stderr)
                return 1
            snap = profiler.snapshot()
            queues, high, drops = runner.queue_lengths(), runner.queue_high_water(), runner.queue_drops()
            row = {
                "frames": profiler.frames_seen,
                "seconds": time.perf_counter() - t0,
                "fps": snap.fps,
                "rss_mb": process.memory_info().rss / MB,
                "queued": sum(queues.values()),
                "high_water": max(high.values()),
                "dropped": sum(drops.values()),
                "tracker_ms": snap.stage_ms.get("tracker", float("nan")),
                "renderer_ms": snap.stage_ms.get("renderer", float("nan")),
                "record_ms": snap.stage_ms.get("sink:video", float("nan")),
                "latency_p50_ms": snap.latency_ms,
                "latency_p95_ms": snap.latency_p95_ms,
            }
            rows.append(row)
            print(f"{row['frames']:>7} {row['seconds']:>7.0f} {row['fps']:>6.1f} {row['rss_mb']:>7.1f} "
                  f"{row['queued']:>7} {row['high_water']:>5} {row['dropped']:>8} {row['tracker_ms']:>9.2f} "
                  f"{row['renderer_ms']:>10.2f} {row['record_ms']:>10.2f} {row['latency_p50_ms']:>8.1f} "
                  f"{row['latency_p95_ms']:>8.1f}", flush=True)
            target += args.every
    finally:
        runner.stop()
    written = recording.frames_written
    played = sum(1 for _ in open_source(str(recording.path)))
    recording.path.unlink(missing_ok=True)
    scratch.rmdir()

    # The first window is warm-up (compilation, caches, the first frames' drops): memory is measured from its
    # end, latency from the window after it.
    warm, start, last = rows[0], rows[1], rows[-1]
    growth = last["rss_mb"] - warm["rss_mb"]
    peak_growth = max(r["rss_mb"] for r in rows) - warm["rss_mb"]
    p95_change = last["latency_p95_ms"] / start["latency_p95_ms"] - 1.0
    bound_ok = all(r["high_water"] <= settings.slot_size for r in rows)
    print(f"\nfaults: source outages {runner.stats.source_outages}, render errors {runner.stats.render_errors}, "
          f"sinks switched off {sorted(runner.stats.sink_errors) or 'none'}; problems: {problems or 'none'}")
    print(f"recording: {written} frames written, {played} play back")
    _verdict("memory growth after warm-up (first window to last)", f"{growth:+.1f} MB (peak {peak_growth:+.1f} MB)",
             growth < 50 and peak_growth < 50, "< 50 MB")
    _verdict("queues within their bound", f"high-water {max(r['high_water'] for r in rows)}", bound_ok,
             f"<= {settings.slot_size}")
    _verdict("p95 latency, last window vs the first after warm-up",
             f"{start['latency_p95_ms']:.1f} -> {last['latency_p95_ms']:.1f} ms"
             f" ({p95_change:+.1%})", p95_change <= 0.10, "within +10 %")
    _verdict("recording plays every frame written", f"{played}/{written}", played == written, "all")

    csv_path, png_path = args.out / "soak.csv", args.out / "soak.png"
    _write_csv(csv_path, rows)
    _plot(png_path, rows, f"soak: {args.frames} frames, {w}x{h} mesh, {mode}")
    print(f"\nwrote {csv_path} and {png_path}")
    return 0


def _verdict(what: str, value: str, ok: bool, target: str) -> None:
    print(f"  {'PASS' if ok else 'MISS'}  {what}: {value} (target {target})")


def _write_csv(path: Path, rows: list[dict]) -> None:
    from avatar_app.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _plot(path: Path, rows: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avatar_app.atomic import atomic_path

    frames = [r["frames"] for r in rows]
    fig, (mem, lat) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    mem.plot(frames, [r["rss_mb"] for r in rows], marker="o")
    mem.axhline(rows[0]["rss_mb"] + 50, color="grey", linestyle="--", label="warm-up + 50 MB")
    mem.set_ylabel("resident memory (MB)")
    mem.legend(loc="lower right")
    lat.plot(frames, [r["latency_p50_ms"] for r in rows], marker="o", label="capture -> sink p50")
    lat.plot(frames, [r["latency_p95_ms"] for r in rows], marker="o", label="capture -> sink p95")
    lat.plot(frames, [r["renderer_ms"] for r in rows], label="renderer (median)")
    lat.plot(frames, [r["tracker_ms"] for r in rows], label="tracker (median)")
    lat.set_ylabel("ms (window of frames)")
    lat.set_xlabel("frames delivered")
    lat.set_ylim(bottom=0)
    lat.legend(loc="upper right", fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
