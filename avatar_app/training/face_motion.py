"""How a face moves when the jaw opens, learned from talking-face clips: one displacement per landmark per unit
of lip opening (a linear "jaw open" shape, like a blendshape), in the head's own frame.

The retarget stage uses it to close the mouth of a reference pose that was taken with the lips apart (a driver
calibrated mid-word or smiling with teeth): without it every later opening is measured from an open mouth,
and the avatar's mouth stays shut whenever the driver's is less open than at calibration.

    python -m avatar_app.training.face_motion ../shared/media/train --out assets/motion/jaw.npz \
        --hold-out 'train_07_*' 'train_13_*' 'train_22_*' 'train_26_*' 'train_30_*'
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar_app.atomic import atomic_path
from avatar_app.face import landmarks as L
from avatar_app.face.geometry import fit_similarity
from avatar_app.face.motion import head_frame, inner_lip_gap

MIN_GAP_SPREAD = 0.08  # clips whose lips barely part (in inter-ocular distances) say nothing about the jaw


def clip_landmarks(path: Path) -> list[np.ndarray]:
    """Every frame's raw (unsmoothed) landmarks of a video, frames without a face left out."""
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    tracker = FaceTracker(TrackerSettings(smoothing=False, max_faces=1))
    out = []
    try:
        with VideoFileSource(SourceSettings(str(path))) as source:
            for frame in source:
                face = tracker.process(frame.image, frame.index / 30.0)
                if face is not None:
                    out.append(face.points.astype(np.float64))
    finally:
        tracker.close()
    return out


def clip_jaw(frames: list[np.ndarray]) -> tuple[np.ndarray, float] | None:
    """One clip's jaw shape (478 x 3, head-frame units per unit gap) and the variance of its gap; None when
    the lips barely part in it."""
    if len(frames) < 16:
        return None
    stack = np.stack(frames)
    middle = np.median(stack, axis=0)
    centre, axes, iod = head_frame(middle)
    aligned, gaps = [], []
    for p in stack:  # the head's motion taken out: each frame's rigid points fitted onto the clip's median face
        s = fit_similarity(p[L.RIGID], middle[L.RIGID])
        q = (p @ s.rotation.T) * s.scale + s.translation
        aligned.append((q - centre) @ axes.T / iod)
        gaps.append(inner_lip_gap(q))
    y, g = np.stack(aligned), np.asarray(gaps)
    if np.percentile(g, 95) - np.percentile(g, 5) < MIN_GAP_SPREAD:
        return None
    gc = g - g.mean()
    slope = np.tensordot(gc, y - y.mean(0), axes=(0, 0)) / float(gc @ gc)
    # Only the face below the nose moves with the jaw; what the regression finds above it is the head's own
    # motion while talking (a nod with each word), not the jaw's: faded out from the upper lip to the nose tip.
    rest = (middle - centre) @ axes.T / iod
    nose, lip = rest[L.NOSE_TIP, 1], rest[L.LIP_OUTER_UPPER, 1].min()
    slope *= np.clip((rest[:, 1] - nose) / max(lip - nose, 1e-6), 0.0, 1.0)[:, None]
    return slope, float(gc.var())


def fit(clips: list[Path]) -> tuple[np.ndarray, list[str]]:
    """The jaw shape over all clips, each weighted by how much its lips move."""
    shapes, weights, used = [], [], []
    for path in tqdm(clips, desc="face motion", unit="clip"):
        result = clip_jaw(clip_landmarks(path))
        if result is not None:
            shapes.append(result[0])
            weights.append(result[1])
            used.append(path.name)
    if not shapes:
        raise SystemExit("no clip with enough mouth motion to learn from")
    w = np.asarray(weights) / np.sum(weights)
    return np.tensordot(w, np.stack(shapes), axes=(0, 0)), used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of talking-face videos")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--hold-out", nargs="*", default=[], metavar="GLOB", help="clip names not to learn from")
    args = parser.parse_args(argv)
    clips = sorted(p for p in args.folder.glob("*.mp4")
                   if not any(fnmatch.fnmatch(p.stem, pat) or fnmatch.fnmatch(p.name, pat) for pat in args.hold_out))
    jaw, used = fit(clips)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, jaw=jaw.astype(np.float32), clips=np.array(used))
    print(f"{args.out}: jaw shape from {len(used)} of {len(clips)} clips; "
          f"chin moves {jaw[L.CHIN, 1]:.2f}, lower lip {jaw[L.LIP_INNER_LOWER[5], 1]:.2f}, "
          f"upper lip {jaw[L.LIP_INNER_UPPER[5], 1]:.2f} per unit of opening")
    return 0


if __name__ == "__main__":
    sys.exit(main())
