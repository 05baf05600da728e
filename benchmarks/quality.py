"""The wide quality benchmark: does the avatar hold up on faces we did not tune on?

Scored by an independent judge (dlib's 68 points; MediaPipe drives the renderer) with `avatar-app evaluate`'s
code (avatar_app/measure/evaluate.py, evaluate_cross.py), one-shot at 256x256, beside the static portrait and the
naive warp (benchmarks/naive_warp.py):

1. **self**: all clips of ../shared/media (3 driving + 35 in train/): frame 0 is the portrait, every later
   frame drives it with its own landmarks and is compared with the real frame;
2. **synthetic motion**: 6 clips with a slow 2-D similarity motion applied to the whole frame (translation up to
   +-15 % of the frame, roll +-20 deg, scale 0.85-1.2): the head must follow;
3. **still**: 6 clips made of their frame 0 repeated with sensor noise: a still driver must give a still avatar;
4. **cross**: the 4 shared portraits and the 2 shipped paintings driven by the 8 clips with the most head motion.

Prints a table per clip and the means, PASS/MISS per target, writes JSON, markdown and the worst-frame sheets.

    python benchmarks/quality.py --out bench_out/quality [--jobs 2] [--only self synthetic still cross]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_warp import naive_factory  # noqa: E402

from avatar_app.measure.evaluate import EvaluationSettings, evaluate  # noqa: E402
from avatar_app.measure.report import json_safe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
PORTRAITS = [MEDIA / f"portrait_{n}.jpg" for n in ("einstein_bw_photo", "girl_with_pearl_earring", "mona_lisa",
                                                     "woman_photo")]
SHIPPED = [ROOT / "assets" / "portraits" / n for n in ("mona_lisa.jpg", "girl_with_a_pearl_earring.jpg")]
ALL_FRAMES = 1_000_000
SIZE = 256
SYNTH_FROM = ["driving_man_talking_mead_short.mp4", "train/train_04_woman_shorthair_hdtf_talking.mp4",
              "train/train_07_woman_glasses_talking.mp4", "train/train_13_woman_headset_mic_talk.mp4",
              "train/train_24_man_suit_asian_talking.mp4", "train/train_31_woman_mead_contempt.mp4"]
SYNTH_FRAMES = 150
STILL_FRAMES = 60

# Clips whose manifests say the eyes close or blink (../shared/media MANIFEST.md files): driven into the
# portraits beside the clips with the most head motion, for the eyes' figures.
EYE_CLIPS = ["driving_man_talking_vox.mp4", "train_03_woman_longhair_smiling_talk.mp4",
             "train_07_woman_glasses_talking.mp4", "train_18_man_sad_talking.mp4",
             "train_23_woman_happy_talking.mp4", "train_35_woman_redhair_closeup_talking.mp4"]
# Per cross clip, the avatar's r as a share of the judge's own r against the tracker on the driver (its ceiling:
# no renderer can follow better than the judge can read); not judged where the judge's r is below JUDGE_MIN_R.
CEILING_SHARE_MIN = {"eyes": 0.85, "brow": 0.80, "mouth": 0.95}
JUDGE_MIN_R = 0.3

TARGETS = {  # the issue's bar
    "lm_mean_max": 0.025,
    "lm_expression_max": 0.030,  # the expression issue's bar (its baseline 0.0356)
    "lm_worse_than_baseline_max": 0.002,
    "blink_recall_min": 0.90,
    "ceiling_share_min": CEILING_SHARE_MIN,
    "lm_le_naive_share_min": 0.90,
    "jitter_px_max": 0.5,
    "cross_r_min": {"yaw": 0.95, "pitch": 0.90, "eyes": 0.85, "mouth": 0.95},
    "identity_distance_max": 0.30,
}


# -- generated clips --------------------------------------------------------------------------------------------
def _frames(path: Path) -> tuple[list[np.ndarray], float]:
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource

    with VideoFileSource(SourceSettings(str(path))) as src:
        return [f.image for f in src], src.fps


def _write(path: Path, frames: list[np.ndarray], fps: float) -> None:
    from avatar_app.pipeline.sinks import VideoFileSink

    h, w = frames[0].shape[:2]
    with VideoFileSink(path, fps=fps, size=(w - w % 2, h - h % 2)) as sink:
        for f in frames:
            sink.write(np.ascontiguousarray(f[: h - h % 2, : w - w % 2]))


def synthetic_motion(src: Path, out: Path, seed: int) -> Path:
    """The clip with a slow 2-D similarity of the whole frame: the head moves across the frame, rolls, scales."""
    frames, fps = _frames(src)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 4)
    n = min(len(frames), SYNTH_FRAMES)
    moved = []
    for k in range(n):
        h, w = frames[k].shape[:2]
        a = 2 * np.pi * k / n  # one slow cycle over the clip, each parameter out of phase
        ramp = min(1.0, k / 12)  # frame 0 untouched: it is the portrait
        tx = 0.15 * w * np.sin(a + phase[0]) * ramp - 0.15 * w * np.sin(phase[0]) * ramp
        ty = 0.15 * h * np.sin(a * 2 + phase[1]) * ramp - 0.15 * h * np.sin(phase[1]) * ramp
        roll = 20 * np.sin(a + phase[2]) * ramp - 20 * np.sin(phase[2]) * ramp
        scale = 1.0 + ramp * (0.175 * np.sin(a + phase[3]) + 0.025 - (0.175 * np.sin(phase[3]) + 0.025))
        scale = float(np.clip(scale, 0.85, 1.2))
        roll = float(np.clip(roll, -20, 20))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), roll, scale)
        m[:, 2] += (np.clip(tx, -0.15 * w, 0.15 * w), np.clip(ty, -0.15 * h, 0.15 * h))
        moved.append(cv2.warpAffine(frames[k], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    _write(out, moved, fps)
    return out


def still_clip(src: Path, out: Path, seed: int) -> Path:
    """Frame 0 of the clip repeated, with sensor noise (sigma 2 grey levels) on every frame."""
    frames, fps = _frames(src)
    rng = np.random.default_rng(seed)
    base = frames[0].astype(np.float32)
    noisy = [np.clip(base + rng.normal(0, 2.0, base.shape), 0, 255).astype(np.uint8) for _ in range(STILL_FRAMES)]
    _write(out, noisy, fps)
    return out


# -- one clip per worker -------------------------------------------------------------------------------------------
def _self_one(path: str, sheets: str) -> dict:
    settings = EvaluationSettings(shots=(1,), size=SIZE, frames=ALL_FRAMES, mediapipe=False)
    t0 = time.perf_counter()
    report = evaluate([path], settings, csim=False, extra={"naive": naive_factory})
    out = Path(sheets)
    for stem, image in report.worst_sheets.items():
        cv2.imwrite(str(out / f"worst_{stem}.png"), image)
    for stem, image in report.sheets.items():
        cv2.imwrite(str(out / f"sample_{stem}.png"), image)
    data = report.to_json()
    data["seconds"] = time.perf_counter() - t0
    return data


def run_self(paths: list[Path], sheets: Path, jobs: int) -> list[dict]:
    sheets.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(_self_one, [str(p) for p in paths], [str(sheets)] * len(paths)))
    clips = []
    for path, data in zip(paths, results):
        if not data["videos"]:
            print(f"  {path.name}: skipped ({data['skipped']})")
            continue
        v = data["videos"][0]
        rows = {r["method"]: r["summary"] for r in v["rows"]}
        clips.append({"clip": path.name, "rows": rows, "tracker_lm": v["tracker_lm"],
                      "tracker_lm_worst": v["tracker_lm_worst"], "seconds": data["seconds"],
                      "frames": {r["method"]: [(s["frame"], s["lm"], s["face_found"]) for s in r["scores"]]
                                 for r in v["rows"]}})
    return clips


def fmt(v, spec):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def print_self(title: str, clips: list[dict]) -> dict:
    names = [m for m in clips[0]["rows"]]
    print(f"\n## {title}: {len(clips)} clips, one-shot at {SIZE}x{SIZE} (LM: dlib 68 points / IOD)\n")
    head = f"{'clip':<44}" + "".join(f" | {m:>6} LM  worst  >.12  SSIM  jit still seam" for m in names)
    print(head)
    print("-" * len(head))
    for c in clips:
        line = f"{c['clip'][:44]:<44}"
        for m in names:
            s = c["rows"][m]
            line += (f" | {fmt(s['lm'], '.4f'):>10} {fmt(s['lm_worst'], '.3f'):>6} {s['tears']:>5} "
                     f"{fmt(s['ssim'], '.3f'):>5} {fmt(s['jitter_px'], '.2f'):>4} {fmt(s['still_err'], '.2f'):>5}"
                     f" {s['seams']:>4}")
        print(line)
    means = {}
    line = f"{'mean of clips':<44}"
    for m in names:
        def avg(key):
            vals = [c["rows"][m][key] for c in clips if c["rows"][m][key] is not None]
            return float(np.mean(vals)) if vals else None
        means[m] = {k: avg(k) for k in ("lm", "lm_median", "ssim", "psnr", "jitter_px", "still_err", "lm_eyes",
                                        "lm_brows", "lm_mouth")}
        means[m]["seams"] = sum(c["rows"][m]["seams"] for c in clips)
        means[m]["lm_worst"] = max((c["rows"][m]["lm_worst"] or 0) for c in clips)
        means[m]["tears"] = sum(c["rows"][m]["tears"] for c in clips)
        means[m]["lm_median_of_clips"] = float(np.median([c["rows"][m]["lm"] for c in clips if c["rows"][m]["lm"] is not None]))
        line += (f" | {fmt(means[m]['lm'], '.4f'):>10} {fmt(means[m]['lm_worst'], '.3f'):>6} {means[m]['tears']:>5} "
                 f"{fmt(means[m]['ssim'], '.3f'):>5} {fmt(means[m]['jitter_px'], '.2f'):>4}"
                 f" {fmt(means[m]['still_err'], '.2f'):>5} {means[m]['seams']:>4}")
    print(line)
    print("LM by region (eyes / brows / mouth, IOD): " + "; ".join(
        f"{m} {fmt(means[m]['lm_eyes'], '.4f')} / {fmt(means[m]['lm_brows'], '.4f')} / {fmt(means[m]['lm_mouth'], '.4f')}"
        for m in names))
    print("(>.12: frames above 0.12 IOD or without a face in the output; jit: output landmark motion in px per frame"
          " where the real face is still; still: mean grey-level error where the real frame still equals the source"
          " frame; seam: frames with a hard edge the source frame has not, measure/picture.py)")
    return means


def tears_beyond_naive(clips: list[dict], method: str = "mesh") -> list[tuple[str, int, float | None]]:
    """Frames where the method is above 0.12 IOD (or faceless) and the naive warp is not."""
    out = []
    for c in clips:
        naive = {f: (lm, found) for f, lm, found in c["frames"]["naive"]}
        for f, lm, found in c["frames"][method]:
            bad = (not found) or (lm is not None and lm > 0.12)
            nlm, nfound = naive.get(f, (None, True))
            naive_bad = (not nfound) or (nlm is not None and nlm > 0.12)
            if bad and not naive_bad:
                out.append((c["clip"], f, lm))
    return out


def generated_run(args, kind: str, make, title: str) -> tuple[dict, list[dict]]:
    """Make the generated clips of one kind from SYNTH_FROM, score them, print their table."""
    gen = args.out / "generated"
    gen.mkdir(exist_ok=True)
    paths = [make(MEDIA / s, gen / f"{kind}_{Path(s).stem}.mp4", k) for k, s in enumerate(SYNTH_FROM)]
    clips = run_self(paths, args.out / f"sheets_{kind}", args.jobs)
    return print_self(title, clips), clips


def _plain(clips: list[dict]) -> list[dict]:
    return [{k: v for k, v in c.items() if k != "frames"} for c in clips]


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"  {'PASS' if ok else 'MISS'}  {name}: {detail}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "quality", help="folder for JSON and sheets")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="clips scored in parallel")
    parser.add_argument("--only", nargs="+", choices=("self", "synthetic", "still", "cross"),
                        default=["self", "synthetic", "still", "cross"])
    parser.add_argument("--clips", nargs="+", type=Path, help="self-reenactment clips (default: all of ../shared/media)")
    parser.add_argument("--cross-clips", nargs="+", metavar="NAME",
                        help="clip names to drive the portraits (default: the 8 with the most head motion in the "
                             "self-reenactment run, i.e. the highest static landmark error)")
    parser.add_argument("--baseline", type=Path, metavar="QUALITY_JSON",
                        help="an earlier run's quality.json: no clip's mesh LM may be worse than there by more than "
                             f"{TARGETS['lm_worse_than_baseline_max']} IOD, nor cross yaw / pitch / roll lower")
    args = parser.parse_args(argv)
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    if not MEDIA.is_dir():
        sys.exit(f"{MEDIA}: shared media not found - this benchmark needs the developers' ../shared/media")
    args.out.mkdir(parents=True, exist_ok=True)
    clips_all = args.clips or sorted(MEDIA.glob("driving_*.mp4")) + sorted((MEDIA / "train").glob("*.mp4"))
    results: dict = {"targets": TARGETS}
    verdicts = []
    t0 = time.perf_counter()

    self_clips = []
    if "self" in args.only:
        self_clips = run_self(clips_all, args.out / "sheets_self", args.jobs)
        means = print_self("Self-reenactment", self_clips)
        results["self"] = {"means": means, "clips": _plain(self_clips)}
        beyond = tears_beyond_naive(self_clips)
        results["self"]["tears_beyond_naive"] = beyond
        le = [c for c in self_clips if c["rows"]["mesh"]["lm"] is not None and c["rows"]["naive"]["lm"] is not None]
        share = float(np.mean([c["rows"]["mesh"]["lm"] <= c["rows"]["naive"]["lm"] for c in le]))
        worse = sorted(((c["rows"]["mesh"]["lm"] - c["rows"]["naive"]["lm"], c["clip"]) for c in le), reverse=True)[:5]
        print("\nTargets (self-reenactment):")
        verdicts += [
            check("no tear the naive warp does not also have", not beyond,
                  f"{len(beyond)} frames" + (f", e.g. {beyond[:5]}" if beyond else "")),
            check(f"mean LM <= {TARGETS['lm_expression_max']} IOD", means["mesh"]["lm"] <= TARGETS["lm_expression_max"],
                  f"{means['mesh']['lm']:.4f}"),
            check(f"mean LM <= {TARGETS['lm_mean_max']} IOD", means["mesh"]["lm"] <= TARGETS["lm_mean_max"],
                  f"{means['mesh']['lm']:.4f} (eyes {fmt(means['mesh']['lm_eyes'], '.4f')}, brows "
                  f"{fmt(means['mesh']['lm_brows'], '.4f')}, mouth {fmt(means['mesh']['lm_mouth'], '.4f')})"),
            check("LM <= naive on >= 90 % of clips", share >= TARGETS["lm_le_naive_share_min"],
                  f"{share:.0%} (largest gaps: {[(n, round(d, 4)) for d, n in worse if d > 0]})"),
            check("mean SSIM >= naive", means["mesh"]["ssim"] >= means["naive"]["ssim"],
                  f"{means['mesh']['ssim']:.4f} vs {means['naive']['ssim']:.4f}"),
            check("still region within 1 grey level of the static row's",
                  means["mesh"]["still_err"] <= means["static"]["still_err"] + 1.0,
                  f"{means['mesh']['still_err']:.2f} vs static {means['static']['still_err']:.2f}, naive"
                  f" {means['naive']['still_err']:.2f}"),
            check("no seam (frames flagged)", means["mesh"]["seams"] == 0,
                  f"{means['mesh']['seams']} (naive {means['naive']['seams']})"),
        ]
        if baseline and "self" in baseline:
            before = {c["clip"]: c["rows"]["mesh"]["lm"] for c in baseline["self"]["clips"]}
            worse = sorted(((c["rows"]["mesh"]["lm"] - before[c["clip"]], c["clip"]) for c in self_clips
                            if before.get(c["clip"]) is not None and c["rows"]["mesh"]["lm"] is not None), reverse=True)
            over = [(n, round(d, 4)) for d, n in worse if d > TARGETS["lm_worse_than_baseline_max"]]
            verdicts.append(check(f"no clip's LM worse than the baseline by > {TARGETS['lm_worse_than_baseline_max']}",
                                  not over, f"{len(over)} clips {over[:6]}; mean {np.mean([d for d, _ in worse]):+.4f},"
                                  f" most improved {[(n, round(d, 4)) for d, n in worse[-3:]]}"))

    if "synthetic" in args.only:
        means, sclips = generated_run(args, "synthetic", synthetic_motion, "Synthetic head motion (whole-frame similarity)")
        beyond = tears_beyond_naive(sclips)
        results["synthetic"] = {"means": means, "tears_beyond_naive": beyond, "clips": _plain(sclips)}
        print("\nTargets (synthetic motion):")
        verdicts += [
            check("no tear the naive warp does not also have", not beyond, f"{len(beyond)} frames"),
            check("follows: LM <= naive on the mean", means["mesh"]["lm"] <= means["naive"]["lm"],
                  f"{means['mesh']['lm']:.4f} vs {means['naive']['lm']:.4f} (static {means['static']['lm']:.4f})"),
            check("no seam on synthetic rolls and moves (frames flagged)", means["mesh"]["seams"] == 0,
                  f"{means['mesh']['seams']} (naive {means['naive']['seams']})"),
        ]

    if "still" in args.only:
        means, stclips = generated_run(args, "still", still_clip, "Still driver (frame 0 repeated with sensor noise)")
        results["still"] = {"means": means, "clips": _plain(stclips)}
        worst = max((c["rows"]["mesh"]["jitter_px"] or 0.0) for c in stclips)
        print("\nTargets (still driver):")
        verdicts.append(check("jitter <= 0.5 px at 256 (mean, worst clip)",
                              means["mesh"]["jitter_px"] <= TARGETS["jitter_px_max"] and worst <= TARGETS["jitter_px_max"],
                              f"{means['mesh']['jitter_px']:.3f} px mean, {worst:.3f} px worst clip"))

    if "cross" in args.only:
        from avatar_app.measure.evaluate_cross import cross_markdown

        if args.cross_clips:
            moving = list(args.cross_clips)
        elif self_clips:
            moving = [c["clip"] for c in sorted(self_clips, key=lambda c: -(c["rows"]["static"]["lm"] or 0))[:8]]
            moving += [n for n in EYE_CLIPS if n not in moving]
        else:
            sys.exit("--only cross needs --cross-clips (or run 'self' too, to pick the clips with the most motion)")
        paths = [p for p in clips_all if p.name in moving]
        portraits = [p for p in PORTRAITS + SHIPPED if p.is_file()]
        print(f"\n## Cross-reenactment: {len(portraits)} portraits x {len(paths)} clips (the most head motion, and"
              f" the eye-closing clips; same pictures counted once)")
        settings = EvaluationSettings(shots=(1,), size=SIZE, mediapipe=False)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            parts = list(pool.map(_cross_one, [str(p) for p in paths], [[str(p) for p in portraits]] * len(paths),
                                  [str(args.out / "sheets_cross")] * len(paths)))
        from avatar_app.measure.evaluate_cross import CrossReport, CrossResult

        report = CrossReport(size=settings.size, methods=tuple(parts[0]["methods"]))
        for part in parts:
            report.results += [CrossResult(**r) for r in part["results"]]
        text = cross_markdown(report)
        print(text)
        (args.out / "cross.md").write_text(text + "\n")
        results["cross"] = report.to_json()
        mesh = next(r for r in report.means() if r["method"] == "mesh")
        print("\nTargets (cross-reenactment, mean over pairs):")
        for m, lo in TARGETS["cross_r_min"].items():
            verdicts.append(check(f"r {m} >= {lo}", (mesh[f"r_{m}"] or 0) >= lo,
                                  f"{fmt(mesh[f'r_{m}'], '.3f')} (worst pair {fmt(mesh[f'r_{m}_min'], '.3f')})"))
        shares = ceiling_shares(report)
        print("\nPer clip, the avatar's r as a share of the judge's ceiling (mean over portraits; n/a: judge r < "
              f"{JUDGE_MIN_R}):")
        print(f"{'clip':<44}" + "".join(f" | {m:>5} r  ceil share" for m in CEILING_SHARE_MIN))
        for clip, row in shares.items():
            print(f"{clip[:44]:<44}" + "".join(
                f" | {fmt(row[m]['r'], '.2f'):>7} {fmt(row[m]['ceiling'], '.2f'):>4} {fmt(row[m]['share'], '.2f'):>5}"
                for m in CEILING_SHARE_MIN))
        results["cross_ceiling_shares"] = shares
        for m, lo in CEILING_SHARE_MIN.items():
            judged = {c: r[m]["share"] for c, r in shares.items() if r[m]["share"] is not None}
            low = sorted((round(v, 2), c) for c, v in judged.items() if v < lo)
            verdicts.append(check(f"r {m} >= {lo:.0%} of the judge's ceiling on every judged clip", not low,
                                  f"{len(judged) - len(low)} of {len(judged)} clips; below: {low}"))
        verdicts.append(check(f"blink recall >= {TARGETS['blink_recall_min']:.0%}",
                              (mesh["blink_recall"] or 0) >= TARGETS["blink_recall_min"],
                              f"{fmt(mesh['blink_recall'], '.0%')} read by dlib, {fmt(mesh['blink_recall_tracker'], '.0%')}"
                              f" by MediaPipe, of {mesh['blinks']} driver blinks (dlib sees "
                              f"{fmt(mesh['judge_blink_recall'], '.0%')} of them shut on the drivers)"))
        if baseline and "cross" in baseline:
            was = next(r for r in baseline["cross"]["means"] if r["method"] == "mesh")
            for m in ("yaw", "pitch", "roll"):
                verdicts.append(check(f"r {m} no lower than the baseline", (mesh[f"r_{m}"] or 0) >= (was[f"r_{m}"] or 0) - 0.005,
                                      f"{fmt(mesh[f'r_{m}'], '.3f')} vs {fmt(was[f'r_{m}'], '.3f')} (other clips: "
                                      "the baseline's pairs may differ)"))
        verdicts.append(check("identity distance <= 0.30", (mesh["identity_distance"] or 1) <= TARGETS["identity_distance_max"],
                              fmt(mesh["identity_distance"], ".3f")))
        verdicts.append(check("a face in every frame", mesh["face_found_min"] >= 1.0,
                              f"worst pair {mesh['face_found_min']:.1%}"))

    results["seconds"] = time.perf_counter() - t0
    results["verdicts"] = {"pass": int(sum(verdicts)), "miss": int(len(verdicts) - sum(verdicts))}
    (args.out / "quality.json").write_text(json.dumps(json_safe(results), indent=2))
    print(f"\n{sum(verdicts)} of {len(verdicts)} targets met; {results['seconds']:.0f} s; written to {args.out}")
    return 0


def ceiling_shares(report) -> dict[str, dict[str, dict[str, float | None]]]:
    """Per clip and measure: the mesh row's r (mean over portraits), the judge's r against the tracker on the
    driver (the same for every portrait) and their ratio (None where the judge's r is below JUDGE_MIN_R)."""
    out: dict = {}
    for clip in dict.fromkeys(x.clip for x in report.results):
        rs = [x for x in report.results if x.clip == clip and x.method == "mesh"]
        out[clip] = {}
        for m in CEILING_SHARE_MIN:
            r = [x.r[m] for x in rs if x.r[m] is not None]
            ceiling = rs[0].judge_r.get(m) if rs else None
            mean_r = float(np.mean(r)) if r else None
            ok = mean_r is not None and ceiling is not None and ceiling >= JUDGE_MIN_R
            out[clip][m] = {"r": mean_r, "ceiling": ceiling, "share": mean_r / ceiling if ok else None}
    return out


def _cross_one(video: str, portraits: list[str], sheets: str) -> dict:
    from avatar_app.measure.evaluate_cross import evaluate_cross

    settings = EvaluationSettings(shots=(1,), size=SIZE, mediapipe=False)
    report = evaluate_cross([Path(p) for p in portraits], [Path(video)], settings, extra={"naive": naive_factory})
    out = Path(sheets)
    out.mkdir(parents=True, exist_ok=True)
    for stem, image in report.sheets.items():
        cv2.imwrite(str(out / f"{stem}.png"), image)
    from dataclasses import asdict

    return {"methods": list(report.methods), "results": [asdict(r) for r in report.results]}


if __name__ == "__main__":
    sys.exit(main())
