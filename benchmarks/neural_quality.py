"""Does the neural renderer beat the mesh renderer? Self-reenactment on the validation clips the shipped model
never trained on (the 5 held-out training clips named in its model card, and the 3 driving clips), at T = 1
and T = 8, feed-forward (neural) and fine-tuned on the T frames (neural-ft), beside mesh and static, scored by
the independent judge (dlib) - with PASS/MISS per target of issue 13:

    SSIM >= mesh + 0.01, PSNR >= mesh + 0.5 dB, landmark error <= mesh + 0.002 IOD, L1 inside the mouth's
    outline <= 0.8 x mesh's, and FT at T = 8 better than FF (SSIM and mouth L1).

    python benchmarks/neural_quality.py --out bench_out/neural [--model DIR --checkpoint FILE.pt]
                                        [--frames 24] [--finetune-steps 40] [--jobs 2]

Without --model it scores the shipped model; the neural-ft rows fine-tune from the model folder's
checkpoint.pt (a shipped model carries one) or --checkpoint.
Writes report.json, report.md and every sheet (contact sheets: the same frames for every row).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "media"
SIZE = 256


def validation_clips(model_dir: Path) -> list[Path]:
    """The model card's held-out clips (model.json's 'hold_out') under shared/media/train, and the driving clips."""
    card = json.loads((model_dir / "model.json").read_text()) if (model_dir / "model.json").is_file() else {}
    held = [SHARED / "train" / f"{c}.mp4" for c in card.get("hold_out_clips", [])]
    return [p for p in held if p.is_file()] + sorted(SHARED.glob("driving_*.mp4"))


def _one(path: str, model: str, checkpoint: str | None, frames: int, steps: int, sheets: str) -> dict:
    from avatar_app.measure.evaluate import EvaluationSettings, evaluate

    settings = EvaluationSettings(shots=(1, 8), backend="neural", model=model, size=SIZE, frames=frames,
                                  mediapipe=False, finetune_steps=steps if checkpoint else 0, checkpoint=checkpoint)
    t0 = time.perf_counter()
    report = evaluate([path], settings, csim=False)
    for stem, image in {**report.sheets, **report.worst_sheets}.items():
        cv2.imwrite(str(Path(sheets) / f"{stem}.png"), image)
    data = report.to_json()
    data["seconds"] = time.perf_counter() - t0
    return data


TARGETS = (  # (label, metric, better, margin vs mesh, kind)
    ("SSIM >= mesh + 0.01", "ssim", +1, 0.01, "add"),
    ("PSNR >= mesh + 0.5 dB", "psnr", +1, 0.5, "add"),
    ("LM <= mesh + 0.002 IOD", "lm", -1, 0.002, "add"),
    ("mouth L1 <= 0.8 x mesh", "mouth_l1", -1, 0.8, "mul"),
)


def verdicts(overall: list[dict]) -> list[str]:
    rows = {(r["method"], r["shots"]): r for r in overall}
    lines = []
    for t in (1, 8):
        mesh = rows.get(("mesh", t))
        for method in ("neural", "neural-ft"):
            r = rows.get((method, t))
            if r is None or mesh is None:
                continue
            for label, key, better, margin, kind in TARGETS:
                want = mesh[key] * margin if kind == "mul" else mesh[key] + margin
                ok = r[key] >= want if better > 0 else r[key] <= want
                lines.append(f"| {method} | {t} | {label} | {r[key]:.4f} | {mesh[key]:.4f} | {want:.4f} | "
                             f"{'PASS' if ok else 'MISS'} |")
    ff, ft = rows.get(("neural", 8)), rows.get(("neural-ft", 8))
    if ff and ft:
        ok = ft["ssim"] > ff["ssim"] and ft["mouth_l1"] < ff["mouth_l1"]
        lines.append(f"| neural-ft vs neural | 8 | FT better than FF (SSIM, mouth L1) | {ft['ssim']:.4f} / {ft['mouth_l1']:.4f} | "
                     f"{ff['ssim']:.4f} / {ff['mouth_l1']:.4f} | - | {'PASS' if ok else 'MISS'} |")
    return ["| row | T | target | value | mesh (FF for the last) | needed | |", "|---|---:|---|---:|---:|---:|---|"] + lines


COLUMNS = ("ssim", "psnr", "l1", "mouth_l1", "lm", "lm_worst", "tears", "jitter_px")


def overall_rows(results: list[dict]) -> list[dict]:
    """Per (method, T): the mean over clips of each clip's figure (tears: the sum)."""
    import numpy as np

    by: dict[tuple[str, int], list[dict]] = {}
    for data in results:
        for v in data["videos"]:
            for r in v["rows"]:
                by.setdefault((r["method"], r["shots"]), []).append(r["summary"])
    rows = []
    for (method, t), summaries in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0] != "static", kv[0][0])):
        row = {"method": method, "shots": t, "clips": len(summaries)}
        for key in COLUMNS:
            values = [s[key] for s in summaries if s[key] is not None]
            row[key] = (sum(values) if key == "tears" else float(np.mean(values))) if values else None
        rows.append(row)
    return rows


def rows_table(rows: list[dict]) -> list[str]:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    out = ["| method | T | SSIM | PSNR dB | L1 | L1 mouth | LM dlib | worst | tears | jitter px |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['method']} | {r['shots']} | {fmt(r['ssim'], '.4f')} | {fmt(r['psnr'], '.2f')} | "
                   f"{fmt(r['l1'], '.4f')} | {fmt(r['mouth_l1'], '.4f')} | {fmt(r['lm'], '.4f')} | "
                   f"{fmt(r['lm_worst'], '.3f')} | {fmt(r['tears'], 'd')} | {fmt(r['jitter_px'], '.2f')} |")
    return out


def clip_table(data: dict) -> list[str]:
    lines = []
    for v in data["videos"]:
        rows = [{"method": r["method"], "shots": r["shots"], **{k: r["summary"][k] for k in COLUMNS}} for r in v["rows"]]
        lines += [f"## {v['video']}", "", *rows_table(rows), ""]
    for s in data["skipped"]:
        lines += [f"- skipped {s['video']}: {s['reason']}", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped one)")
    p.add_argument("--checkpoint", type=Path, default=None, help="its training checkpoint, for the neural-ft rows")
    p.add_argument("--frames", type=int, default=24, help="driven frames per clip")
    p.add_argument("--finetune-steps", type=int, default=40)
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--clips", nargs="+", type=Path, default=None, help="instead of the model card's validation clips")
    args = p.parse_args(argv)

    from avatar_app.pipeline.render.neural import default_model

    model = args.model or default_model()
    if args.checkpoint is None and (model / "checkpoint.pt").is_file():
        args.checkpoint = model / "checkpoint.pt"  # a shipped model carries its networks for fine-tuning
    clips = args.clips or validation_clips(model)
    if not clips:
        print(f"no validation clips found under {SHARED}", file=sys.stderr)
        return 2
    sheets = args.out / "sheets"
    sheets.mkdir(parents=True, exist_ok=True)
    print(f"model {model}; {len(clips)} clips: {', '.join(c.stem for c in clips)}")
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(_one, [str(c) for c in clips], [str(model)] * len(clips),
                                [str(args.checkpoint) if args.checkpoint else None] * len(clips),
                                [args.frames] * len(clips), [args.finetune_steps] * len(clips), [str(sheets)] * len(clips)))
    overall = overall_rows(results)
    table = verdicts(overall)
    text = "\n".join([f"# Neural vs mesh, self-reenactment on {len(clips)} validation clips, {SIZE}x{SIZE}", "",
                      f"model {model.name}; {args.frames} driven frames per clip; neural-ft: {args.finetune_steps} "
                      "fine-tuning steps on the T frames. Means over clips, each weighing the same.", "",
                      "## Targets (issue 13)", "", *table, "", "## All clips", "", *rows_table(overall), ""]
                     + [line for r in results for line in clip_table(r)])
    (args.out / "report.md").write_text(text)
    (args.out / "report.json").write_text(json.dumps({"clips": results, "overall": overall}, indent=1))
    print("\n".join(table))
    print(f"\n{args.out / 'report.md'}; seconds per clip: " + ", ".join(f"{r['seconds']:.0f}" for r in results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
