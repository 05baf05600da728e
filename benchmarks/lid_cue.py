"""What the lids' second reading (avatar_app/pipeline/lid_cue.py) changes, and what it costs, on every shared clip.

    python benchmarks/lid_cue.py [--out bench_out/lid_cue] [--frames 400]

Each clip (../shared/media/*.mp4 and train/*.mp4, 38 clips) is tracked unsmoothed with the cue off; the cue then
reads the same frames and landmarks as the tracker would give them to it. Printed per clip: the frames where it
closes an eye that the landmarks left at 40 % of its usual opening (median) or more to under 40 % ("closed by
pixels"), the frames where it narrows an eye at all, and its cost per frame. Written: a sheet of those frames'
eyes (driver picture, landmarks' lids green, the cue's red) to be looked at, since no reader here checks them:
dlib, the judge elsewhere, reads squeezed-shut eyes open too (about 75 % of its usual opening on the vox
laugh). Not a test: the cost depends on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
SHUT = 0.4
SHEET_MAX = 36


def eyes_tile(image: np.ndarray, before: np.ndarray, after: np.ndarray, caption: str) -> np.ndarray:
    from avatar_app.face import landmarks as L

    iod = L.inter_ocular(before)
    x0, y0 = before[L.EYE_UPPER[0], :2].min(0) - 0.35 * iod
    x1, y1 = before[L.EYE_UPPER[1], :2].max(0) + 0.35 * iod
    y0, y1 = y0 - 0.15 * iod, y1 + 0.35 * iod
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    picture = image.copy()
    for points, colour in ((before, (0, 200, 0)), (after, (0, 0, 255))):
        for e in (0, 1):
            for lid in (L.EYE_UPPER[e], L.EYE_LOWER[e]):
                cv2.polylines(picture, [np.round(points[lid, :2]).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
    tile = cv2.resize(picture[y0:int(y1), x0:int(x1)], (320, 120))
    cv2.putText(tile, caption, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1, cv2.LINE_AA)
    return tile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "lid_cue")
    parser.add_argument("--frames", type=int, default=400, help="frames per clip at most")
    args = parser.parse_args(argv)
    if not MEDIA.is_dir():
        sys.exit(f"{MEDIA}: shared media not found - this benchmark needs the developers' ../shared/media")
    from avatar_app.pipeline.lid_cue import LidCue, eye_opening as opening
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    args.out.mkdir(parents=True, exist_ok=True)
    paths = sorted(MEDIA.glob("*.mp4")) + sorted((MEDIA / "train").glob("*.mp4"))
    tiles, costs, totals, depths = [], [], np.zeros(3, int), []
    print(f"{'clip':44s} {'frames':>6s} {'closed by pixels':>16s} {'narrowed':>9s} {'by (mean)':>9s}")
    for path in paths:
        tracker, cue = FaceTracker(TrackerSettings(smoothing=False, lid_cue=False)), LidCue()
        seen = []
        with VideoFileSource(SourceSettings(str(path))) as source:
            for frame in source:
                face = tracker.process(frame.image, frame.index / source.fps)
                if face is None:
                    cue.reset()
                    continue
                t = time.perf_counter()
                after = cue(frame.image, face.points)
                costs.append(time.perf_counter() - t)
                seen.append((frame.index, frame.image, face.points, after))
                if frame.index + 1 >= args.frames:
                    break
        tracker.close()
        if not seen:
            print(f"{path.stem[:44]:44s} no face")
            continue
        usual = np.median([[opening(p, e) for e in (0, 1)] for _, _, p, _ in seen], axis=0)
        closed = narrowed = 0
        depth = []
        for index, image, before, after in seen:
            was = np.array([opening(before, e) for e in (0, 1)]) / usual
            now = np.array([opening(after, e) for e in (0, 1)]) / usual
            if (now < was - 1e-9).any():
                narrowed += 1
                depth.append(float((was - now).max()))
            if ((was >= SHUT) & (now < SHUT)).any():
                closed += 1
                tiles.append(eyes_tile(image, before, after, f"{path.stem[:14]} {index}: {was.round(2)} -> {now.round(2)}"))
        totals += (len(seen), closed, narrowed)
        depths += depth
        print(f"{path.stem[:44]:44s} {len(seen):6d} {closed:16d} {narrowed:9d} {np.mean(depth) if depth else 0:9.3f}")
    print(f"\n{len(paths)} clips, {totals[0]} frames with a face: an eye closed by its pixels in {totals[1]} "
          f"(landmarks >= {SHUT:.0%} of its usual opening, after < {SHUT:.0%}), narrowed at all in {totals[2]}, by "
          f"{np.mean(depths) if depths else 0:.3f} of the usual opening on average (median "
          f"{np.median(depths) if depths else 0:.3f})")
    print(f"cost: {np.percentile(costs, 50) * 1e3:.3f} ms p50, {np.percentile(costs, 95) * 1e3:.3f} ms p95 per frame")
    if tiles:
        step = max(1, len(tiles) // SHEET_MAX)
        shown = tiles[::step][:SHEET_MAX]
        while len(shown) % 3:
            shown.append(np.zeros_like(shown[0]))
        sheet = np.concatenate([np.concatenate(shown[k:k + 3], 1) for k in range(0, len(shown), 3)], 0)
        cv2.imwrite(str(args.out / "closed_by_pixels.png"), sheet)
        print(f"sheet of {len(shown)} of those frames: {args.out / 'closed_by_pixels.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
