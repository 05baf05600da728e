"""One-shot self-reenactment: how close does the renderer bring a clip's first frame to each later frame?

For each driving clip, frame 0 (cropped around the face) becomes the portrait, and every later frame of the
same clip drives it with its own landmarks, so the real frame is the answer the output should match. The
renderer is scored against a "static" baseline (the portrait itself, never moving) with the same code:
SSIM of output vs. real frame, and the 68-point landmark error of faces re-detected in both, in units of the
real frame's inter-ocular distance. Prints a table; it is a benchmark, not a test.

    python benchmarks/quality.py [--videos a.mp4 b.mp4] [--size 256] [--json out.json] [--sheet sheets/]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from avatar_app.animator import Animator
from avatar_app.avatar import create_avatar
from avatar_app.errors import AvatarAppError
from avatar_app.landmarks import to_dlib68
from avatar_app.metrics import l1, landmark_error, psnr, ssim
from avatar_app.render.base import RenderSettings
from avatar_app.render_video import track_video
from avatar_app.retarget import RetargetSettings
from avatar_app.sources import SourceSettings, VideoFileSource
from avatar_app.tracker import FaceTracker, TrackerSettings

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
BOX_SCALE = 1.8  # crop side, in face-box sides: head, hair and some background, as in VoxCeleb-style crops
SHEET_FRAMES = 6

# Targets the renderer should meet on average over the clips.
TARGET_LM_RATIO = 0.15  # renderer landmark error at most this fraction of the static baseline's
TARGET_SSIM_GAIN = 0.04  # renderer SSIM at least this much above the static baseline's


@dataclass
class FrameScore:
    index: int
    ssim: float
    ssim_static: float
    psnr: float
    psnr_static: float
    l1: float
    l1_static: float
    lm: float | None  # None: no face re-detected in the output
    lm_static: float


@dataclass
class ClipResult:
    clip: str
    frames: int
    box: tuple[int, int, int]  # x0, y0, side in the clip's pixels (may reach outside the frame: padded)
    driver_lost: int = 0  # later crops where the stream tracker found no face (rendered, not scored)
    reference_lost: int = 0  # later crops where the static detector found no face (not scored)
    faces_lost: int = 0  # scored frames whose output shows no detectable face
    scores: list[FrameScore] = field(default_factory=list)

    def mean(self, name: str) -> float:
        values = [getattr(s, name) for s in self.scores if getattr(s, name) is not None]
        return float(np.mean(values)) if values else math.nan

    def summary(self) -> dict[str, float]:
        ssim_r, ssim_s = self.mean("ssim"), self.mean("ssim_static")
        # Landmark errors over the frames where the output has a face, so both columns see the same frames.
        with_face = [s for s in self.scores if s.lm is not None]
        lm_r = float(np.mean([s.lm for s in with_face])) if with_face else math.nan
        lm_s = float(np.mean([s.lm_static for s in with_face])) if with_face else math.nan
        return {
            "ssim": ssim_r,
            "ssim_static": ssim_s,
            "ssim_gain": ssim_r - ssim_s,
            "psnr": self.mean("psnr"),
            "psnr_static": self.mean("psnr_static"),
            "l1": self.mean("l1"),
            "l1_static": self.mean("l1_static"),
            "lm": lm_r,
            "lm_static": lm_s,
            "lm_ratio": lm_r / lm_s if lm_s > 0 else math.nan,
            "faces_lost": self.faces_lost,
            "scored": len(self.scores),
        }


def face_box(points: np.ndarray) -> tuple[int, int, int]:
    """A square (x0, y0, side) centred on the landmarks' box, BOX_SCALE times its larger side."""
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    side = int(round(BOX_SCALE * max(x1 - x0, y1 - y0)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop(image: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """The box cut out of the image and resized to size x size; parts outside the frame repeat its edge.

    Edge repetition rather than black: a hard black border inside the portrait would be an edge the mesh
    warp drags along and the face detector may react to, while the real clip has no such edge.
    """
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


def read_crops(path: Path, box: tuple[int, int, int], size: int) -> list[np.ndarray]:
    with VideoFileSource(SourceSettings(str(path))) as source:
        return [crop(frame.image, box, size) for frame in source]


class StillDetector:
    """Landmarks of one image on its own (no tracking history), so output and real frame are measured alike."""

    def __init__(self) -> None:
        self.tracker = FaceTracker(TrackerSettings(static_images=True, max_faces=1))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        face = self.tracker.process(image)
        return None if face is None else to_dlib68(face.points)

    def close(self) -> None:
        self.tracker.close()


def evaluate_clip(path: Path, size: int, detect: StillDetector) -> tuple[ClipResult, list[np.ndarray], dict]:
    """Scores of one clip, its crops and the outputs kept for the contact sheet (by frame index)."""
    points, times = track_video(path)
    if not points or points[0] is None:
        raise AvatarAppError(f"{path}: no face in frame 0 - the benchmark needs the face in the first frame")
    box = face_box(points[0])
    crops = read_crops(path, box, size)
    n = min(len(crops), len(times))
    result = ClipResult(clip=path.name, frames=n, box=box)

    with FaceTracker(TrackerSettings()) as tracker:
        driver = [
            None if (f := tracker.process(crops[i], times[i])) is None else f.points
            for i in tqdm(range(n), desc=f"{path.stem}: tracking crops", unit="frame", leave=False)
        ]
    if driver[0] is None:
        raise AvatarAppError(f"{path}: no face in frame 0's crop - check the clip shows a whole face")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # several faces in a crop: the largest is used, as everywhere
        avatar = create_avatar(crops[0], name=path.stem)
    animator = Animator(avatar, RenderSettings(size=size), RetargetSettings())
    if animator.output_size != (size, size):
        raise AvatarAppError(f"{path}: renderer gave {animator.output_size}, expected {size}x{size}")
    animator.calibrate(driver[0])
    animator.target(driver[0], times[0])  # start the face-loss easing at the reference pose

    portrait = crops[0]
    portrait_lm = detect(portrait)
    if portrait_lm is None:
        raise AvatarAppError(f"{path}: no face re-detected in frame 0's crop - cannot score this clip")
    keep = set(np.linspace(1, n - 1, SHEET_FRAMES).round().astype(int).tolist()) if n > 1 else set()
    outputs: dict[int, np.ndarray] = {}

    for i in tqdm(range(1, n), desc=f"{path.stem}: rendering", unit="frame", leave=False):
        output = animator.render(animator.target(driver[i], times[i]))
        if i in keep:
            outputs[i] = output
        if driver[i] is None:
            result.driver_lost += 1
            continue
        real = crops[i]
        real_lm = detect(real)
        if real_lm is None:
            result.reference_lost += 1
            continue
        output_lm = detect(output)
        if output_lm is None:
            result.faces_lost += 1
        result.scores.append(
            FrameScore(
                index=i,
                ssim=ssim(output, real),
                ssim_static=ssim(portrait, real),
                psnr=psnr(output, real),
                psnr_static=psnr(portrait, real),
                l1=l1(output, real),
                l1_static=l1(portrait, real),
                lm=None if output_lm is None else landmark_error(output_lm, real_lm),
                lm_static=landmark_error(portrait_lm, real_lm),
            )
        )
    animator.close()
    return result, crops, outputs


def contact_sheet(crops: list[np.ndarray], outputs: dict[int, np.ndarray], result: ClipResult) -> np.ndarray:
    """Three rows (real crop, output, |difference| x3) by ~6 frames spread over the clip."""
    by_index = {s.index: s for s in result.scores}
    columns = []
    for i in sorted(outputs):
        real, out = crops[i], outputs[i]
        diff = np.clip(cv2.absdiff(real, out).astype(np.int32) * 3, 0, 255).astype(np.uint8)
        tiles = [real.copy(), out.copy(), diff]
        s = by_index.get(i)
        labels = [f"real t={i}", "SSIM --" if s is None else f"SSIM {s.ssim:.3f} ({s.ssim_static:.3f})", "|diff| x3"]
        if s is not None and s.lm is not None:
            labels[2] += f"  LM {s.lm:.3f} ({s.lm_static:.3f})"
        for tile, label in zip(tiles, labels):
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        columns.append(np.concatenate(tiles, axis=0))
    return np.concatenate(columns, axis=1)


def fmt(value: float, spec: str) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_table(rows: list[tuple[str, dict]]) -> None:
    header = (
        f"{'clip':<40} {'SSIM':>6} {'static':>6} {'gain':>7}  {'LM err':>7} {'static':>7} {'ratio':>6}"
        f"  {'lost':>4} {'scored':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, s in rows:
        print(
            f"{name:<40} {fmt(s['ssim'], '.4f'):>6} {fmt(s['ssim_static'], '.4f'):>6} {fmt(s['ssim_gain'], '+.4f'):>7}"
            f"  {fmt(s['lm'], '.4f'):>7} {fmt(s['lm_static'], '.4f'):>7} {fmt(s['lm_ratio'], '.3f'):>6}"
            f"  {s['faces_lost']:>4} {s['scored']:>6}"
        )


def mean_of_clips(summaries: list[dict]) -> dict:
    """Each clip weighs the same, however long it is."""
    keys = ("ssim", "ssim_static", "ssim_gain", "psnr", "psnr_static", "l1", "l1_static", "lm", "lm_static")
    mean = {k: float(np.nanmean([s[k] for s in summaries])) for k in keys}
    mean["lm_ratio"] = mean["lm"] / mean["lm_static"] if mean["lm_static"] > 0 else math.nan
    mean["faces_lost"] = sum(s["faces_lost"] for s in summaries)
    mean["scored"] = sum(s["scored"] for s in summaries)
    return mean


def code_version() -> dict:
    """The commit and the package files changed since it, so figures can be tied to the code that made them."""
    repo = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "avatar_app").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "changed": changed}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="+", type=Path, help=f"driving clips (default: {MEDIA}/driving_*.mp4)")
    parser.add_argument("--size", type=int, default=256, help="crop and output side in pixels (default 256)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure, per frame too, to this file")
    parser.add_argument("--sheet", type=Path, metavar="DIR", help="write a contact sheet PNG per clip here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 32 <= args.size <= 4096:
        sys.exit(f"--size {args.size}: give a side between 32 and 4096 pixels")
    videos = args.videos or sorted(MEDIA.glob("driving_*.mp4"))
    if not videos:
        sys.exit(f"no driving clips found in {MEDIA} - pass some with --videos clip.mp4 ...")
    missing = [str(v) for v in videos if not Path(v).is_file()]
    if missing:
        sys.exit(f"{missing[0]}: no such file - check the path given to --videos")
    if args.sheet:
        args.sheet.mkdir(parents=True, exist_ok=True)

    results: list[ClipResult] = []
    detect = StillDetector()
    try:
        for path in tqdm(videos, desc="clips", unit="clip"):
            try:
                result, crops, outputs = evaluate_clip(Path(path), args.size, detect)
            except AvatarAppError as err:
                tqdm.write(f"skipped: {err}")
                continue
            results.append(result)
            if args.sheet and outputs:
                out = args.sheet / f"{Path(path).stem}.png"
                cv2.imwrite(str(out), contact_sheet(crops, outputs, result))
    finally:
        detect.close()
    if not results:
        sys.exit("no clip could be scored")

    summaries = [r.summary() for r in results]
    mean = mean_of_clips(summaries)
    print(f"\nOne-shot self-reenactment at {args.size}x{args.size}: renderer vs. static portrait (frame 0)")
    print("LM err: 68-point landmark error / inter-ocular distance; lost: outputs with no detectable face\n")
    print_table([(r.clip, s) for r, s in zip(results, summaries)] + [("mean of clips", mean)])
    for r in results:
        if r.driver_lost or r.reference_lost:
            print(f"  {r.clip}: {r.driver_lost} frames without a tracked driver face, "
                  f"{r.reference_lost} without a re-detected real face (not scored)")
    lm_ok = mean["lm_ratio"] <= TARGET_LM_RATIO
    ssim_ok = mean["ssim_gain"] >= TARGET_SSIM_GAIN
    print(f"\ntarget LM ratio <= {TARGET_LM_RATIO}: {'met' if lm_ok else 'NOT met'} ({fmt(mean['lm_ratio'], '.3f')})")
    print(f"target SSIM gain >= +{TARGET_SSIM_GAIN}: {'met' if ssim_ok else 'NOT met'} ({fmt(mean['ssim_gain'], '+.4f')})")

    if args.json:
        report = {
            "size": args.size,
            "code": code_version(),
            "targets": {"lm_ratio_max": TARGET_LM_RATIO, "ssim_gain_min": TARGET_SSIM_GAIN},
            "met": {"lm_ratio": lm_ok, "ssim_gain": ssim_ok},
            "mean": mean,
            "clips": [{**asdict(r), "summary": s} for r, s in zip(results, summaries)],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
