"""What an evaluation leaves: per-video results, the whole report as JSON and Markdown, and its contact and
worst-frame sheets."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from avatar_app.measure.scoring import METRICS, STILL_IOD, TEAR_IOD, RowResult, mean_of

from avatar_app.measure.protocol import STATIC, EvaluationSettings


@dataclass
class VideoResult:
    video: str
    frames: int
    box: tuple[int, int, int]  # x0, y0, side in the video's pixels (may reach outside the frame: padded)
    driven: list[int]
    driver_lost: list[int] = field(default_factory=list)  # driven frames the tracker found no face in: not scored
    real_face_lost: list[int] = field(default_factory=list)  # scored frames where dlib finds no real face (no LM)
    # The floor of any landmark-driven method: the driving tracker's own points on the real frames, by the judge.
    tracker_lm: float | None = None
    tracker_lm_worst: float | None = None
    rows: list[RowResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, method: str, shots: int) -> RowResult | None:
        return next((r for r in self.rows if r.method == method and r.shots == shots), None)


@dataclass
class Report:
    settings: EvaluationSettings
    methods: tuple[str, ...]
    csim_model: str | None  # None: CSIM unavailable
    csim_reason: str  # why CSIM is unavailable ("" when it is available)
    videos: list[VideoResult]
    skipped: list[tuple[str, str]]  # (video, reason)
    sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # video stem -> contact sheet
    worst_sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # "stem_method" -> sheet

    def overall(self) -> list[dict]:
        """Per (T, method): the mean over videos of each per-video figure (each video weighs the same)."""
        rows = []
        for t in self.settings.shots:
            for method in self.methods:
                summaries = [r.summary() for v in self.videos if (r := v.row(method, t)) is not None]
                row: dict = {"method": method, "shots": t, "videos": len(summaries)}
                for key in (*METRICS, "lm_median", "jitter_px", "real_jitter_px"):
                    row[key] = mean_of(s[key] for s in summaries)
                row["lm_worst"] = max((s["lm_worst"] for s in summaries if s["lm_worst"] is not None), default=None)
                for key in ("tears", "faceless", "scored"):
                    row[key] = sum(s[key] for s in summaries)
                rows.append(row)
        return rows

    def to_json(self) -> dict:
        return json_safe({
            "protocol": {
                "shots": list(self.settings.shots),
                "backend": self.settings.backend,
                "methods": list(self.methods),
                "size": self.settings.size,
                "frames": self.settings.frames,
                "source_selection": "nearest neighbour among the first T frames by 68-point landmark error",
                "lm": "dlib 68-point landmark error / real frame's inter-ocular distance (independent of the tracker)",
                "lm_mp": "the same with MediaPipe's points (the tracker that drives the renderer)",
                "tears": f"frames with lm > {TEAR_IOD} or no face found by dlib in the output",
                "jitter_px": f"output landmark motion per frame (px) where the real face moved < {STILL_IOD} IOD",
                "csim": "cosine of dlib face descriptors: output vs mean of the source frames' (different people "
                        "still score about 0.8-0.94)",
            },
            "csim": {"available": self.csim_model is not None, "model": self.csim_model, "reason": self.csim_reason},
            "code": code_version(),
            "overall": self.overall(),
            "videos": [
                {
                    **{k: v for k, v in asdict(video).items() if k != "rows"},
                    "rows": [{"method": r.method, "shots": r.shots, "sources": r.sources, "summary": r.summary(),
                              "scores": [asdict(s) for s in r.scores]} for r in video.rows],
                }
                for video in self.videos
            ],
            "skipped": [{"video": v, "reason": why} for v, why in self.skipped],
        })


def json_safe(value):
    """JSON has no inf or nan (identical images have infinite PSNR): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def code_version() -> dict:
    """The commit and the package files changed since it, so figures can be tied to the code that made them."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "avatar_app").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "changed": changed}


def label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.3, tile.shape[0] / 640)
    y = int(14 * scale / 0.4)
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
    return tile


def contact_sheet(crops: list[np.ndarray], tiles: dict, frames: list[int], settings: EvaluationSettings,
                  methods: Sequence[str]) -> np.ndarray:
    """One row per sampled driven frame: source | driver | outputs for the first T, then source | outputs per T."""
    blank = np.zeros((settings.size, settings.size, 3), np.uint8)
    rows = []
    for i in frames:
        row = []
        for k, t in enumerate(settings.shots):
            row.append(tiles.get((i, t, "source"), blank))
            if k == 0:
                row.append(label(crops[i], f"driver: {i}"))
            row += [tiles.get((i, t, m), blank) for m in methods if m != STATIC]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def worst_sheet(images: list[np.ndarray], row: RowResult, size: int) -> np.ndarray:
    """The row's worst frames, worst first: driver | output, each output labelled with its error."""
    lines = []
    for error, frame, output in row.worst_frames():
        text = "no face" if math.isinf(error) else f"{error:.3f} IOD"
        lines.append(np.concatenate([label(images[frame], f"driver: {frame}"),
                                     label(output, f"{row.method}: {text}")], axis=1))
    return np.concatenate(lines, axis=0) if lines else np.zeros((size, 2 * size, 3), np.uint8)


_COLUMNS = (  # key, header, format
    ("ssim", "SSIM ↑", ".3f"),
    ("psnr", "PSNR dB ↑", ".2f"),
    ("l1", "L1 ↓", ".4f"),
    ("mouth_l1", "L1 mouth ↓", ".4f"),
    ("lm", "LM dlib ↓", ".4f"),
    ("lm_worst", "worst ↓", ".3f"),
    ("tears", f">{TEAR_IOD} ↓", "d"),
    ("lm_mp", "LM MediaPipe", ".4f"),
    ("jitter_px", "jitter px ↓", ".2f"),
    ("csim", "CSIM ↑", ".3f"),
    ("face_found", "face found ↑", ".0%"),
)


def _cell(value, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _table(rows: list[dict]) -> list[str]:
    lines = ["| method | T | " + " | ".join(h for _, h, _ in _COLUMNS) + " | frames |",
             "|---|---:|" + "---:|" * len(_COLUMNS) + "---:|"]
    for r in rows:
        cells = " | ".join(_cell(r[k], spec) for k, _, spec in _COLUMNS)
        lines.append(f"| {r['method']} | {r['shots']} | {cells} | {r['scored']} |")
    return lines


def markdown(report: Report) -> str:
    """Table 1 of the paper, our way: rows method x T (each method beside the static baseline), then per video."""
    s = report.settings
    lines = [
        f"# Self-reenactment, {s.size}x{s.size}, backend {s.backend}",
        "",
        f"First T frames of each video make the avatar; {s.frames} frames spread evenly after the first {s.shots[-1]} "
        "are driven by their own landmarks and compared with the real frame. **static**: the output is the source "
        "frame itself. At T > 1 every row uses, for each driven frame, the source among the first T whose "
        "landmarks are nearest the driven frame's, so static is then a retrieval baseline. **LM dlib**: 68-point "
        "landmark error of dlib's faces in output and real frame / inter-ocular distance (a judge independent of "
        f"MediaPipe, which drives the renderer); **worst**: the worst frame's; **>{TEAR_IOD}**: frames above "
        f"{TEAR_IOD} IOD or with no face in the output; **LM MediaPipe**: the same measured with the driving "
        f"tracker; **jitter**: output landmark motion (px) over frames where the real face moved < {STILL_IOD} IOD. "
        "CSIM: cosine of dlib face descriptors, output vs. the mean over the source frames (different people "
        "still score about 0.8-0.94). Means over videos, each video weighing the same.",
        "",
    ]
    if report.csim_model is None:
        lines += [f"CSIM unavailable: {report.csim_reason}", ""]
    lines += [f"## All videos ({len(report.videos)})", ""] + _table(report.overall()) + [""]
    for v in report.videos:
        rows = [{"method": r.method, "shots": r.shots, **r.summary()} for r in v.rows]
        lines += [f"## {v.video}", ""] + _table(rows) + [""]
        if v.driver_lost:
            lines.append(f"- {len(v.driver_lost)} driven frames without a tracked face, not scored")
        if v.tracker_lm is not None:
            lines.append(f"- the driving tracker's own points on the real frames, by the judge: {v.tracker_lm:.4f} "
                         f"IOD (worst {v.tracker_lm_worst:.3f}) - the floor of any landmark-driven method")
        if v.real_face_lost:
            lines.append(f"- {len(v.real_face_lost)} real frames without a dlib face (no LM error)")
        lines += [f"- {note}" for note in v.notes]
        if v.driver_lost or v.real_face_lost or v.notes or v.tracker_lm is not None:
            lines.append("")
    if report.skipped:
        lines += ["## Skipped", ""] + [f"- {why}" for _, why in report.skipped] + [""]
    return "\n".join(lines)
