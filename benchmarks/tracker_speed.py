"""Tracker candidates side by side: ms per 512-px frame and how far their landmarks are from today's tracker's.

    python benchmarks/tracker_speed.py [--clips N | --clips NAME ...] [--frames 120] [--size 512]

Every frame of every clip (../shared/media/*.mp4 and train/*.mp4, 38 clips; the first N, or those named)
is resized to ``--size`` px on its longer side and given to each candidate in turn, the order rotating per
frame so load from other processes falls on all alike:

- ``graph3``: MediaPipe's FaceMesh graph with max_faces=3, the tracker before issue 23 (the reference);
- ``graph1``: the same graph with max_faces=1 (its detector then runs only when the face is lost);
- ``region``: TrackerSettings(backend="region"), the landmark subgraph on the previous face's region;
- ``region+smooth``: the same with the One-Euro smoothing on, as the app runs it (timed only).

Agreement is unsmoothed landmarks against ``graph3`` on the same frames: per frame the mean distance in x, y
over the 478 points (and mean |dz|), per clip the mean and the worst frame, plus frames where only one of
the two found a face. Also probes the two other routes asked about in issue 23 and says why they fail:
the shipped .tflite models in a plain TFLite interpreter, and MediaPipe Tasks' FaceLandmarker from a .task
bundle assembled from the wheel's files. Not a test: wall timings depend on the machine and what else runs
(the CPU figures, this process's CPU time over the call, much less so).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CANDIDATES = ("graph3", "graph1", "region", "region+smooth")
COMPARED = ("graph1", "region")


def clips(selection: list[str]) -> list[Path]:
    every = sorted(MEDIA.glob("*.mp4")) + sorted((MEDIA / "train").glob("*.mp4"))
    if not selection:
        return every
    if len(selection) == 1 and selection[0].isdigit():
        return every[: int(selection[0])]
    return [c for c in every if c.name in selection or c.stem in selection]


def frames(path: Path, count: int, size: int):
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    for k in range(count):
        ok, image = cap.read()
        if not ok:
            break
        s = size / max(image.shape[:2])
        yield k / fps, cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    cap.release()


def trackers():
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    made = {
        "graph3": FaceTracker(TrackerSettings(backend="graph", max_faces=3, smoothing=False)),
        "graph1": FaceTracker(TrackerSettings(backend="graph", max_faces=1, smoothing=False)),
        "region": FaceTracker(TrackerSettings(backend="region", smoothing=False)),
        "region+smooth": FaceTracker(TrackerSettings(backend="region")),
    }
    for name in ("region", "region+smooth"):
        if made[name].backend != "region":
            print(f"tracker_speed.py: the region tracker did not start, {name} is the FaceMesh graph", file=sys.stderr)
    return made


def wheel_file(*parts: str) -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent.joinpath("modules", *parts)


def probe_tflite() -> str:
    """Whether a plain TFLite interpreter runs the shipped attention landmark model."""
    model = wheel_file("face_landmark", "face_landmark_with_attention.tflite")
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            interpreter = __import__(module, fromlist=["Interpreter"]).Interpreter
        except ImportError:
            continue
        try:
            interpreter(model_path=str(model)).allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            return f"{module}: {str(exc).splitlines()[0][:160]}"
        return f"{module}: loads (not timed here)"
    names = [n.decode() for n in (b"TransformTensorBilinear", b"Landmarks2TransformMatrix", b"TransformLandmarks")
             if n in model.read_bytes()]
    return (f"no TFLite interpreter installed; the model needs MediaPipe's custom ops {', '.join(names) or '?'},"
            " which no plain interpreter has")


def probe_tasks(image) -> str:
    """Whether MediaPipe Tasks' FaceLandmarker runs from a bundle of the wheel's own models."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from avatar_app.pipeline.mediapipe_native import quiet_native_logs

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "face_landmarker.task"
        with zipfile.ZipFile(bundle, "w") as z:
            z.write(wheel_file("face_detection", "face_detection_short_range.tflite"), "face_detector.tflite")
            z.write(wheel_file("face_landmark", "face_landmark_with_attention.tflite"), "face_landmarks_detector.tflite")
        try:
            with quiet_native_logs():
                options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(bundle)),
                                                       running_mode=vision.RunningMode.VIDEO, num_faces=1)
                with vision.FaceLandmarker.create_from_options(options) as landmarker:
                    rgb = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
                    faces = landmarker.detect_for_video(rgb, 0).face_landmarks
        except Exception as exc:  # noqa: BLE001 - the failure is the finding
            text = " ".join(str(exc).split())
            cause = text[text.find("RET_CHECK"):] if "RET_CHECK" in text else text[-200:]
            return (f"{type(exc).__name__}: ... {cause[:160]} - Tasks' landmark graph wants a model with two outputs"
                    " (478 x 3 landmarks, presence); the wheel's attention model has seven (mesh, lips, eyes, irises,"
                    " presence), refined by the legacy graph's own calculators")
    if not faces:
        return "starts, but found no face in the probe frame, so its landmark model did not run"
    return f"runs: {len(faces[0])} landmarks (not timed here)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="*", default=[], help="how many clips (a number) or which (names); default all 38")
    p.add_argument("--frames", type=int, default=120, help="frames per clip")
    p.add_argument("--size", type=int, default=512, help="longer side of the frames given to the trackers")
    args = p.parse_args(argv)
    chosen = clips(args.clips)
    if not chosen:
        print(f"tracker_speed.py: no clips found under {MEDIA} - pass --clips names that exist", file=sys.stderr)
        return 2

    from avatar_app.measure.profiler import percentiles

    made = trackers()
    times = {name: [] for name in CANDIDATES}
    cpu = {name: [] for name in CANDIDATES}
    per_clip = []
    first_image = None
    for clip in chosen:
        for tracker in made.values():
            tracker.reset()
        # The graph holds its face across reset(); new ones per clip would cost start-ups, so it is reset
        # by a blank frame instead, as a cut to another video would.
        blank = None
        errors = {name: [] for name in COMPARED}
        z_errors = {name: [] for name in COMPARED}
        mismatched = {name: 0 for name in COMPARED}
        count = 0
        for k, (t, image) in enumerate(frames(clip, args.frames, args.size)):
            if blank is None:
                blank = np.zeros_like(image)
                for tracker in made.values():
                    tracker.process(blank, t - 1.0)
            first_image = image if first_image is None else first_image
            order = CANDIDATES[k % len(CANDIDATES):] + CANDIDATES[: k % len(CANDIDATES)]
            found = {}
            for name in order:
                c0, t0 = time.process_time(), time.perf_counter()
                found[name] = made[name].process(image, t)
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
            reference = found["graph3"]
            for name in COMPARED:
                if (reference is None) != (found[name] is None):
                    mismatched[name] += 1
                elif reference is not None:
                    d = found[name].points - reference.points
                    errors[name].append(float(np.linalg.norm(d[:, :2], axis=1).mean()))
                    z_errors[name].append(float(np.abs(d[:, 2]).mean()))
            count += 1
        per_clip.append((clip.name, count, errors, z_errors, mismatched))

    print(f"{len(chosen)} clips, up to {args.frames} frames each at {args.size} px; {os.cpu_count()} CPUs")
    load = f"load average {os.getloadavg()[0]:.1f} at the end" if hasattr(os, "getloadavg") else ""
    print(f"\n{'candidate':<14} {'p50':>6} {'p95':>6}   {'cpu p50':>7} {'cpu p95':>7}  (ms per frame, "
          f"FaceTracker.process; cpu: this process, all threads; {load})")
    for name in CANDIDATES:
        s = percentiles([x * 1000 for x in times[name][10:]])
        c = percentiles([x * 1000 for x in cpu[name][10:]])
        print(f"{name:<14} {s['p50']:6.2f} {s['p95']:6.2f}   {c['p50']:7.2f} {c['p95']:7.2f}")

    for name in COMPARED:
        print(f"\n{name} against graph3 (px): per clip mean / worst frame of the mean xy distance, mean |dz|,"
              " frames where only one found a face")
        for clip_name, count, errors, z_errors, mismatched in per_clip:
            e = errors[name]
            if e:
                print(f"  {clip_name:<52} {count:4d} fr  mean {np.mean(e):6.3f}  worst {max(e):7.3f}  "
                      f"|dz| {np.mean(z_errors[name]):6.3f}  one-sided {mismatched[name]}")
            else:
                print(f"  {clip_name:<52} {count:4d} fr  no frame with a face in both  one-sided {mismatched[name]}")
        means = [np.mean(c[2][name]) for c in per_clip if c[2][name]]
        worst = [max(c[2][name]) for c in per_clip if c[2][name]]
        if means:
            print(f"  all clips: mean of clip means {np.mean(means):.3f}, worst clip mean {max(means):.3f}, "
                  f"worst frame {max(worst):.3f}, clips with clip mean > 0.5 px: {sum(m > 0.5 for m in means)}")

    print("\nother routes (issue 23):")
    print(f"  plain TFLite interpreter: {probe_tflite()}")
    if first_image is not None:
        print(f"  Tasks FaceLandmarker from the wheel's models: {probe_tasks(first_image)}")
    for tracker in made.values():
        tracker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
