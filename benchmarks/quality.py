"""One-shot self-reenactment: how close does the renderer bring a clip's first frame to each later frame?

For each driving clip, frame 0 (cropped around the face) becomes the portrait, and every later frame of the
same clip drives it with its own landmarks, so the real frame is the answer the output should match. The
renderer is scored against the "static" baseline (the portrait itself, never moving) by the same code as
`avatar-app evaluate` (avatar_app/evaluate.py), here at T = 1 on all later frames: SSIM of output vs. real
frame, and the 68-point landmark error of faces re-detected in both, in units of the real frame's inter-ocular
distance. Prints a table and whether the targets are met; it is a benchmark, not a test.

    python benchmarks/quality.py [--videos a.mp4 b.mp4] [--size 256] [--json out.json] [--sheet sheets/]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from tqdm import tqdm

from avatar_app.errors import AvatarAppError
from avatar_app.evaluate import STATIC, EvaluationSettings, evaluate, find_videos, json_safe

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
ALL_FRAMES = 1_000_000  # drive with every frame after frame 0

# Targets the renderer should meet on average over the clips.
TARGET_LM_RATIO = 0.15  # renderer landmark error at most this fraction of the static baseline's
TARGET_SSIM_GAIN = 0.04  # renderer SSIM at least this much above the static baseline's


def fmt(value: float | None, spec: str) -> str:
    return "nan" if value is None or math.isnan(value) else format(value, spec)


def compare(static: dict, renderer: dict) -> dict:
    lm_ratio = renderer["lm"] / static["lm"] if renderer["lm"] is not None and static["lm"] else math.nan
    return {
        "ssim": renderer["ssim"], "ssim_static": static["ssim"], "ssim_gain": renderer["ssim"] - static["ssim"],
        "lm": renderer["lm"], "lm_static": static["lm"], "lm_ratio": lm_ratio,
        "faces_lost": round((1 - renderer["face_found"]) * renderer["scored"]), "scored": renderer["scored"],
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", nargs="+", type=Path, help=f"driving clips (default: {MEDIA}/driving_*.mp4)")
    parser.add_argument("--size", type=int, default=256, help="crop and output side in pixels (default 256)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure, per frame too, to this file")
    parser.add_argument("--sheet", type=Path, metavar="DIR", help="write a contact sheet PNG per clip here")
    args = parser.parse_args(argv)
    try:
        settings = EvaluationSettings(shots=(1,), size=args.size, frames=ALL_FRAMES)
        videos = find_videos(args.videos or sorted(MEDIA.glob("driving_*.mp4")) or [MEDIA])
    except (AvatarAppError, ValueError) as err:
        sys.exit(str(err))
    report = evaluate(videos, settings, progress=True, on_skip=lambda why: tqdm.write(f"skipped: {why}"), csim=False)
    if not report.videos:
        sys.exit("no clip could be scored")

    rows = [(v.video, compare(v.row(STATIC, 1).summary(), v.row(settings.backend, 1).summary())) for v in report.videos]
    overall = {r["method"]: r for r in report.overall()}
    mean = compare(overall[STATIC], overall[settings.backend])
    mean["faces_lost"] = sum(r["faces_lost"] for _, r in rows)  # a count, not a mean
    print(f"\nOne-shot self-reenactment at {args.size}x{args.size}: renderer vs. static portrait (frame 0)")
    print("LM err: 68-point landmark error / inter-ocular distance; lost: outputs with no detectable face\n")
    print_table(rows + [("mean of clips", mean)])
    for v in report.videos:
        if v.driver_lost or v.real_face_lost:
            print(f"  {v.video}: {len(v.driver_lost)} frames without a tracked driver face (not scored), "
                  f"{len(v.real_face_lost)} without a re-detected real face (no landmark error)")
    lm_ok = mean["lm_ratio"] <= TARGET_LM_RATIO
    ssim_ok = mean["ssim_gain"] >= TARGET_SSIM_GAIN
    print(f"\ntarget LM ratio <= {TARGET_LM_RATIO}: {'met' if lm_ok else 'NOT met'} ({fmt(mean['lm_ratio'], '.3f')})")
    print(f"target SSIM gain >= +{TARGET_SSIM_GAIN}: {'met' if ssim_ok else 'NOT met'} ({fmt(mean['ssim_gain'], '+.4f')})")

    if args.sheet:
        import cv2

        args.sheet.mkdir(parents=True, exist_ok=True)
        for stem, sheet in report.sheets.items():
            cv2.imwrite(str(args.sheet / f"{stem}.png"), sheet)
    if args.json:
        out = {
            "targets": {"lm_ratio_max": TARGET_LM_RATIO, "ssim_gain_min": TARGET_SSIM_GAIN},
            "met": {"lm_ratio": lm_ok, "ssim_gain": ssim_ok},
            "mean": mean,
            "clips": dict(rows),
            "evaluation": report.to_json(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(out), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
