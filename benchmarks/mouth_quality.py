"""The opened mouth's inside, painted against the mouth model, by self-reenactment under the landmark-only protocol
(the driver's pixels are the ground truth, so no source sees them: "mine" is not measurable here): each clip's
first frame is the portrait, the rest of the clip drives it, and the output is compared with the real frame.

Per clip and source: mouth L1 inside the real frame's outer lip line (dlib's; all scored frames, and the frames
whose mouth is open), SSIM over the mouth's box (open frames), SSIM over the whole crop and dlib's landmark error.

    python benchmarks/mouth_quality.py [VIDEO_OR_FOLDER ...] [--frames 32] [--mouth-model DIR] [--json OUT]

Default clips: the 8 validation clips (the 5 clips held out of mouth-1's training and the 3 driving clips of
../shared/media). Not a test: it needs ../shared and dlib, and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared/media"
HELD_OUT = ("train_07_*", "train_13_*", "train_22_*", "train_26_*", "train_30_*")
OPEN_GAP = 0.1  # a mouth counts as open above this gap between the inner lips (mouth widths)


def default_clips() -> list[Path]:
    clips = [p for pattern in HELD_OUT for p in sorted((SHARED / "train").glob(pattern + ".mp4"))]
    return clips + sorted(SHARED.glob("driving_*.mp4"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="*", type=Path)
    p.add_argument("--frames", type=int, default=32, help="driven frames per clip (default 32)")
    p.add_argument("--mouth-model", default=None, help="mouth model folder (default: the shipped mouth-1)")
    p.add_argument("--sources", default="painted,neural", help="comma-separated mouth sources to score")
    p.add_argument("--shots", type=int, default=1,
                   help="T: the first T frames make the avatar (its portrait is the nearest of them); with T > 1 the "
                        "rows neural-k1 (ψ from the portrait alone) and neural-kT (ψ from all T frames) are scored")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    from avatar_app.face import landmarks as L
    from avatar_app.measure.evaluate import AnimatorMethod, evaluate_video, load_clip
    from avatar_app.measure.metrics import ssim
    from avatar_app.measure.protocol import EvaluationSettings
    from avatar_app.measure.scoring import Judge
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mouth import central_gap

    videos = args.videos or default_clips()
    if not videos:
        print(f"no clips: {SHARED} is absent - pass videos", file=sys.stderr)
        return 2
    t = args.shots
    settings = EvaluationSettings(shots=(t,), frames=args.frames, mediapipe=False)
    judge = Judge(csim=False, mediapipe=False)
    sources = args.sources.split(",") if t == 1 else ["painted", "neural-k1", f"neural-k{t}"]
    results: dict[str, dict] = {}
    for video in videos:
        clip = load_clip(video, settings.size)
        mouth_scores: dict[str, list[tuple[float, float]]] = {s: [] for s in sources}
        index = {round(t, 6): i for i, t in enumerate(clip.times)}

        def factory(source: str):
            def make(avatar, reference, t0, size):
                mouth = source.split("-")[0]
                method = AnimatorMethod(avatar, reference, t0, RenderSettings(size=size, mouth=mouth,
                                                                               mouth_model=args.mouth_model))
                if source == f"neural-k{t}" and t > 1:  # ψ from the first T frames (those with a face)
                    known = [i for i in range(t) if clip.driver[i] is not None]
                    method.stages.animator.renderer._interior.learn([clip.crops[i] for i in known],
                                                                    [clip.driver[i] for i in known])

                class Scored:
                    output_size = method.output_size

                    def __call__(self, driver, t):
                        out = method(driver, t)
                        i = index.get(round(t, 6))
                        if driver is not None and i is not None and central_gap(driver[:, :2]) > OPEN_GAP:
                            lips = driver[np.concatenate([L.LIP_OUTER_UPPER, L.LIP_OUTER_LOWER]), :2]
                            (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
                            gx, gy = 0.2 * (x1 - x0), 0.3 * (y1 - y0)
                            x0, y0 = int(max(x0 - gx, 0)), int(max(y0 - gy, 0))
                            x1, y1 = int(min(x1 + gx, out.shape[1])), int(min(y1 + gy, out.shape[0]))
                            real = clip.crops[i]
                            box_ssim = ssim(out[y0:y1, x0:x1], real[y0:y1, x0:x1]) if min(x1 - x0, y1 - y0) >= 11 else None
                            mouth_scores[source].append((i, box_ssim))
                        return out

                    def close(self):
                        method.close()

                return Scored()
            return make

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result, _, _ = evaluate_video(video, settings, judge, extra={s: factory(s) for s in sources}, clip=clip)
        row = {}
        for s in sources:
            r = result.row(s, t)
            opened = {i for i, _ in mouth_scores[s]}
            box = [v for _, v in mouth_scores[s] if v is not None]
            summary = r.summary()
            open_l1 = [x.mouth_l1 for x in r.scores if x.frame in opened and x.mouth_l1 is not None]
            row[s] = {"mouth_l1": summary["mouth_l1"], "mouth_l1_open": float(np.mean(open_l1)) if open_l1 else None,
                      "mouth_ssim_open": float(np.mean(box)) if box else None, "ssim": summary["ssim"],
                      "lm": summary["lm"], "open_frames": len(opened)}
        results[video.name] = row
        print(f"{video.name}: " + " | ".join(
            f"{s} mouth L1 {_f(v['mouth_l1'])} (open {_f(v['mouth_l1_open'])}, {v['open_frames']} frames) mouth SSIM "
            f"{_f(v['mouth_ssim_open'])} SSIM {_f(v['ssim'])} LM {_f(v['lm'])}" for s, v in row.items()), flush=True)
    judge.close()
    print("\nmean over clips:")
    means = {}
    for s in sources:
        means[s] = {k: _mean([results[c][s][k] for c in results]) for k in
                    ("mouth_l1", "mouth_l1_open", "mouth_ssim_open", "ssim", "lm")}
        print(f"  {s:8s} " + "  ".join(f"{k} {_f(v)}" for k, v in means[s].items()))
    if t > 1:
        a, b = means["neural-k1"], means[f"neural-k{t}"]
        print(f"  K={t} vs K=1: mouth L1 (open) x{b['mouth_l1_open'] / a['mouth_l1_open']:.2f}, "
              f"mouth SSIM {b['mouth_ssim_open'] - a['mouth_ssim_open']:+.4f}")
    if "painted" in means and len(sources) > 1:
        base = means["painted"]
        for s in sources:
            if s == "painted":
                continue
            m = means[s]
            print(f"  {s} vs painted: mouth L1 (open) x{m['mouth_l1_open'] / base['mouth_l1_open']:.2f} (bar <= 0.70), "
                  f"SSIM {m['ssim'] - base['ssim']:+.4f} (bar >= +0.005), LM {m['lm'] - base['lm']:+.4f} (bar <= +0.002)")
    if args.json:
        args.json.write_text(json.dumps({"clips": results, "means": means}, indent=2))
    return 0


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


if __name__ == "__main__":
    raise SystemExit(main())
