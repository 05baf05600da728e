"""Where a driver's expression is lost on its way to the avatar: each link of the chain, read apart.

    python benchmarks/expression_chain.py [--clips NAME ...] [--portraits NAME ...] [--mouth painted|mine]

For each portrait x clip pair (cross-reenactment, as `benchmarks/quality.py`'s cross part: the portraits cut like
its crops at 256 px, the avatar calibrated on the clip's first frame with a face) four readings of every frame:

- D: dlib (the independent judge) on the driver's picture;
- M: the driving tracker (MediaPipe) on the driver, i.e. what the app is given;
- T: the avatar's target landmarks (what the retarget asks the renderer to draw);
- A / J: MediaPipe / dlib on the avatar's picture.

Printed per pair and measure (eyes: lid gap over eye width; brow: brows above the eyes; mouth: inner-lip gap;
jaw: chin below the eyes; furrow: the inner brow ends apart, all over the inter-ocular distance): Pearson r of
D-M (the judge against the tracker: the ceiling no avatar can beat), M-T (the retarget), T-A and T-J (the
renderer as each reader sees it), D-J (what the cross benchmark scores), and the spread of T over M and of J
over D (how far the motion goes). Blinks (the tracker's eyes under 30 % of their median for 2+ frames): the
share shown shut (under 40 % of the median) in T, A, J, and by dlib on the driver itself.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
SIZE = 256
CLIPS = ["driving_man_talking_vox", "train_20", "train_07", "train_23", "train_18", "train_03"]
PORTRAITS = ["einstein_bw_photo", "girl_with_pearl_earring", "mona_lisa", "woman_photo"]
MEASURED = ("eyes", "brow", "mouth")
LINKS = ("D-M", "M-T", "T-A", "T-J", "D-J", "T/M", "J/D")


def _extra(points: dict[int, np.ndarray | None], frames: list[int]) -> np.ndarray:
    """jaw and furrow per frame (NaN without a face), from 68 points."""
    out = np.full((len(frames), 2), np.nan)
    for q, i in enumerate(frames):
        p = points.get(i)
        if p is None:
            continue
        p = np.asarray(p)[:, :2]
        a, b = p[36:42].mean(0), p[42:48].mean(0)
        iod = float(np.linalg.norm(b - a)) + 1e-9
        ex = (b - a) / iod
        ey = np.array([-ex[1], ex[0]])
        out[q] = [float((p[8] - (a + b) / 2) @ ey) / iod, float(np.linalg.norm(p[21] - p[22])) / iod]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", nargs="+", default=CLIPS, help="clip names (or their first characters)")
    parser.add_argument("--portraits", nargs="+", default=PORTRAITS, help="shared portraits (portrait_NAME.jpg)")
    parser.add_argument("--mouth", choices=("painted", "mine"), default="painted",
                        help="mine: the avatar gets the driver's picture too, as the app does (the cross benchmark "
                             "carries none, so it draws the painted mouth)")
    parser.add_argument("--frames", type=int, default=400, help="frames per clip at most")
    args = parser.parse_args(argv)
    if not MEDIA.is_dir():
        sys.exit(f"{MEDIA}: shared media not found - this benchmark needs the developers' ../shared/media")

    from avatar_app.face.landmarks import to_dlib68
    from avatar_app.measure.evaluate import AnimatorMethod, load_clip
    from avatar_app.measure.evaluate_cross import _portrait_crop, _series
    from avatar_app.measure.face_measure import MEASURES, blink_recall, blinks, pearson
    from avatar_app.measure.scoring import Judge
    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.pipeline.render.base import RenderSettings

    videos = sorted(MEDIA.glob("*.mp4")) + sorted((MEDIA / "train").glob("*.mp4"))
    judge = Judge(csim=False, mediapipe=True)
    cols = [MEASURES.index(m) for m in MEASURED]
    eyes = MEASURES.index("eyes")
    table: dict[str, list] = defaultdict(list)
    recalls = []

    def r(a, b, k):
        v = pearson(a[:, k], b[:, k])
        return np.nan if v is None else v

    def spread(a, b, k):
        return float(np.nanstd(a[:, k]) / max(np.nanstd(b[:, k]), 1e-9))

    print(f"{'clip':12s} {'portrait':14s} {'what':6s} " + " ".join(f"{x:>6s}" for x in LINKS))
    for name in args.clips:
        path = next((p for p in videos if p.stem.startswith(name)), None)
        if path is None:
            sys.exit(f"{name}: no such clip in {MEDIA}")
        clip = load_clip(path, SIZE)
        frames = [i for i, p in enumerate(clip.driver) if p is not None][: args.frames]
        d68 = {i: judge.dlib(clip.crops[i]) for i in frames}
        m68 = {i: to_dlib68(clip.driver[i])[:, :2] for i in frames}
        D, M = _series(d68, frames, SIZE), _series(m68, frames, SIZE)
        Dx, Mx = _extra(d68, frames), _extra(m68, frames)
        for pname in args.portraits:
            crop = _portrait_crop(MEDIA / f"portrait_{pname}.jpg", SIZE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                avatar = create_avatar(crop, pname)
            method = AnimatorMethod(avatar, clip.driver[frames[0]], clip.times[frames[0]],
                                    RenderSettings(size=SIZE, mouth=args.mouth))
            t68, a68, j68 = {}, {}, {}
            try:
                for i in frames:
                    frame = method.step(clip.driver[i], clip.times[i], clip.crops[i] if args.mouth == "mine" else None)
                    t68[i] = to_dlib68(frame.target)[:, :2]
                    j68[i] = judge.dlib(frame.picture)
                    mp = judge.mediapipe(frame.picture)
                    a68[i] = None if mp is None else mp[:, :2]
            finally:
                method.close()
            T, A, J = (_series(x, frames, SIZE) for x in (t68, a68, j68))
            Tx, Jx = _extra(t68, frames), _extra(j68, frames)
            rows = [(m, r(D, M, k), r(M, T, k), r(T, A, k), r(T, J, k), r(D, J, k), spread(T, M, k), spread(J, D, k))
                    for m, k in zip(MEASURED, cols)]
            rows += [(m, r(Dx, Mx, k), r(Mx, Tx, k), np.nan, r(Tx, Jx, k), r(Dx, Jx, k), spread(Tx, Mx, k),
                      spread(Jx, Dx, k)) for k, m in enumerate(("jaw", "furrow"))]
            for m, *values in rows:
                table[m].append(values)
                print(f"{path.stem[:12]:12s} {pname[:14]:14s} {m:6s} " + " ".join(f"{v:6.2f}" for v in values))
            events = blinks(M[:, eyes])
            if events:
                recalls.append((len(events), *[blink_recall(events, x[:, eyes]) for x in (T, A, J, D)]))
    judge.close()
    print("\nmean over pairs")
    print(f"{'what':6s} " + " ".join(f"{x:>6s}" for x in LINKS))
    for m, values in table.items():
        with warnings.catch_warnings():  # jaw and furrow have no MediaPipe-on-avatar column (all NaN)
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(np.array(values, float), 0)
        print(f"{m:6s} " + " ".join(f"{v:6.2f}" for v in means))
    if recalls:
        n = sum(x[0] for x in recalls)
        shown = [sum(x[0] * x[k] for x in recalls) / n for k in (1, 2, 3, 4)]
        print(f"\n{n} driver blinks over the pairs; shown shut in the target {shown[0]:.0%}, by MediaPipe on the "
              f"avatar {shown[1]:.0%}, by dlib on the avatar {shown[2]:.0%}; dlib sees {shown[3]:.0%} of them shut on "
              "the drivers themselves")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
