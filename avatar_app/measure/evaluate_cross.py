"""Cross-reenactment: each portrait driven by each clip, with no ground truth to compare against, so the avatar
is judged by how well it *follows*: the Pearson r, over the clip, between what the independent judge (dlib's
68 points, face_measure.py) reads off the driver and off the avatar — head yaw, pitch, roll, position, mouth
opening, each eye's opening, brow raise — plus the share of frames in which the avatar still has a face, its
identity distance to the portrait (dlib face descriptors; < 0.6 is "the same person" to dlib) and its jitter
over the frames where the driver is still.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar_app.pipeline.avatar import create_avatar
from avatar_app.measure.evaluate import (
    Clip,
    MethodFactory,
    VideoSkipped,
    builtin_factory,
    load_clip,
)
from avatar_app.face.crop import crop, face_box
from avatar_app.measure.protocol import STATIC, BackendNotAvailable, EvaluationSettings
from avatar_app.measure.report import json_safe, label
from avatar_app.measure.scoring import Judge, MeasuredFrames, jitter
from avatar_app.measure.face_measure import MEASURES, blink_recall, blinks, measure, pearson
from avatar_app.images import load_image
from avatar_app.face.landmarks import to_dlib68

IDENTITY_FRAMES = 16  # outputs per pair whose descriptor is compared with the portrait's
SHEET_FRAMES = 6


@dataclass
class CrossResult:
    portrait: str
    clip: str
    method: str
    frames: int  # driver frames with a face (the ones animated)
    face_found: float  # share of those where dlib finds a face in the avatar
    r: dict[str, float | None]  # measure -> Pearson r between driver and avatar
    # measure -> r between the judge's and the driving tracker's reading of the same driver frames: how far
    # the judge itself can be trusted on this measure of this clip (a low value is measurement noise)
    judge_r: dict[str, float | None]
    identity_distance: float | None  # mean dlib descriptor distance, avatar vs portrait
    jitter_px: float | None
    driver_jitter_px: float | None
    still_pairs: int
    # The driver's blinks (its tracker's eyes under 30 % of their usual opening for 2+ frames) and the share the
    # avatar shows shut (under 40 % of its usual) as read by the judge and by MediaPipe; judge_blink_recall:
    # the share the judge sees shut on the driver itself (its ceiling: dlib's lids seldom meet).
    blinks: int = 0
    blink_recall: float | None = None
    blink_recall_tracker: float | None = None
    judge_blink_recall: float | None = None


@dataclass
class CrossReport:
    size: int
    methods: tuple[str, ...]
    results: list[CrossResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def means(self) -> list[dict]:
        """Per method: every figure averaged over the (portrait, clip) pairs, with the worst pair's r too."""
        rows = []
        for method in self.methods:
            rs = [x for x in self.results if x.method == method]
            if not rs:
                continue
            row: dict = {"method": method, "pairs": len(rs)}
            for m in MEASURES:
                values = [x.r[m] for x in rs if x.r[m] is not None]
                row[f"r_{m}"] = float(np.mean(values)) if values else None
                row[f"r_{m}_min"] = float(np.min(values)) if values else None
                judged = [x.judge_r[m] for x in rs if x.judge_r.get(m) is not None]
                row[f"judge_r_{m}"] = float(np.mean(judged)) if judged else None
            events = sum(x.blinks for x in rs)
            row["blinks"] = events
            for key in ("blink_recall", "blink_recall_tracker", "judge_blink_recall"):  # over blinks, not pairs
                got = [(getattr(x, key), x.blinks) for x in rs if getattr(x, key) is not None]
                row[key] = float(sum(v * n for v, n in got) / sum(n for _, n in got)) if got else None
            for key in ("face_found", "identity_distance", "jitter_px", "driver_jitter_px"):
                values = [getattr(x, key) for x in rs if getattr(x, key) is not None]
                row[key] = float(np.mean(values)) if values else None
            row["face_found_min"] = min(x.face_found for x in rs)
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        return json_safe({
            "protocol": {
                "size": self.size,
                "methods": list(self.methods),
                "r": "Pearson r over the clip between the driver's and the avatar's measures, both read by dlib",
                "identity_distance": f"dlib descriptor distance, avatar vs portrait, mean of {IDENTITY_FRAMES} frames",
            },
            "means": self.means(),
            "results": [asdict(x) for x in self.results],
            "skipped": [{"what": w, "reason": why} for w, why in self.skipped],
        })


def _portrait_crop(path: Path, size: int) -> np.ndarray:
    """The portrait cut like the self-reenactment crops: a square of CROP_SCALE face boxes, at size x size."""
    image = load_image(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = create_avatar(image, path.stem)
    return crop(image, face_box(whole.landmarks), size)


def _series(points: dict[int, np.ndarray | None], frames: list[int], size: int) -> np.ndarray:
    out = np.full((len(frames), len(MEASURES)), np.nan)
    for k, i in enumerate(frames):
        p = points.get(i)
        if p is not None:
            out[k] = measure(p, (size, size)).as_array()
    return out


def _hard_frames(driver: np.ndarray, frames: list[int]) -> list[int]:
    """Frames at the driver's extremes (yaw, pitch, mouth, eyes): where following is hardest."""
    picks: list[int] = []
    for col, fn in ((0, np.nanargmin), (0, np.nanargmax), (1, np.nanargmin), (1, np.nanargmax),
                    (5, np.nanargmax), (6, np.nanargmin)):
        values = driver[:, col]
        if np.isfinite(values).any():
            picks.append(frames[int(fn(values))])
    return list(dict.fromkeys(picks))[:SHEET_FRAMES]


def cross_pair(portrait_crop: np.ndarray, name: str, clip: Clip, driver_real: MeasuredFrames, judge: Judge,
               factories: dict[str, MethodFactory], size: int) -> tuple[list[CrossResult], np.ndarray]:
    """Every method animating one portrait with one clip; the results and a sheet of the hardest frames."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        avatar = create_avatar(portrait_crop, name)
    frames = [i for i, p in enumerate(clip.driver) if p is not None]
    ref = frames[0]
    portrait68 = judge.dlib(portrait_crop)
    portrait_id = None if judge.embed is None or portrait68 is None else judge.embed(portrait_crop, portrait68)
    driver68 = {i: driver_real.dlib(i) for i in frames}
    driver_series = _series(driver68, frames, size)
    tracker_series = _series({i: to_dlib68(clip.driver[i])[:, :2] for i in frames}, frames, size)
    judge_r = {mm: pearson(driver_series[:, k], tracker_series[:, k]) for k, mm in enumerate(MEASURES)}
    eyes = MEASURES.index("eyes")
    events = blinks(tracker_series[:, eyes])
    judge_recall = blink_recall(events, driver_series[:, eyes])
    hard = _hard_frames(driver_series, frames)
    id_frames = set(frames[k] for k in np.linspace(0, len(frames) - 1, min(IDENTITY_FRAMES, len(frames))).astype(int))
    results, tiles = [], {i: [label(clip.crops[i], f"driver: {i}")] for i in hard}
    for method, factory in factories.items():
        m = factory(avatar, clip.driver[ref], clip.times[ref], size)
        out68: dict[int, np.ndarray | None] = {}
        seen68: dict[int, np.ndarray | None] = {}
        distances = []
        try:
            for i in frames:
                output = m(clip.driver[i], clip.times[i])
                out68[i] = p = judge.dlib(output)
                if events and judge.mediapipe is not None:
                    mp = judge.mediapipe(output)
                    seen68[i] = None if mp is None else mp[:, :2]
                if i in id_frames and portrait_id is not None and p is not None:
                    d = judge.embed(output, p)
                    if d is not None:
                        distances.append(float(np.linalg.norm(d - portrait_id)))
                if i in tiles:
                    tiles[i].append(label(output, method))
        finally:
            m.close()
        series = _series(out68, frames, size)
        j, dj, pairs = jitter(out68, driver_real.dlib, frames)
        results.append(CrossResult(
            portrait=name, clip=clip.name, method=method, frames=len(frames),
            face_found=float(np.mean([out68[i] is not None for i in frames])),
            r={mm: pearson(driver_series[:, k], series[:, k]) for k, mm in enumerate(MEASURES)},
            judge_r=judge_r,
            identity_distance=float(np.mean(distances)) if distances else None,
            jitter_px=j, driver_jitter_px=dj, still_pairs=pairs,
            blinks=len(events), blink_recall=blink_recall(events, series[:, eyes]),
            blink_recall_tracker=blink_recall(events, _series(seen68, frames, size)[:, eyes]) if seen68 else None,
            judge_blink_recall=judge_recall,
        ))
    sheet = np.concatenate([np.concatenate(tiles[i], axis=1) for i in hard], axis=0)
    return results, sheet


class _Still:
    """The static row: the portrait itself, whatever the driver does."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def __call__(self, driver, t) -> np.ndarray:
        return self.image

    def close(self) -> None:
        pass


def evaluate_cross(
    portraits: Sequence[Path],
    videos: Sequence[Path],
    settings: EvaluationSettings = EvaluationSettings(),
    extra: dict[str, MethodFactory] | None = None,
    progress: bool = False,
    csim: bool = True,
    clips: dict[str, Clip] | None = None,
) -> CrossReport:
    """Each portrait driven by each video, by the static portrait, the app's renderer(s) and any extra methods."""
    factories: dict[str, MethodFactory] = {STATIC: lambda avatar, *_: _Still(avatar.image)}
    if settings.backend != "mesh":  # a neural identity per portrait is not made here (yet): say so, not skip it
        raise BackendNotAvailable("--cross scores the mesh renderer only - leave out --backend")
    factories.update({m: builtin_factory(m, settings) for m in settings.methods[1:]})
    factories.update(extra or {})
    report = CrossReport(size=settings.size, methods=tuple(factories))
    judge = Judge(csim=csim, mediapipe=True)  # MediaPipe reads the avatar's blinks beside dlib
    clips = dict(clips or {})
    try:
        crops, seen = {}, {}
        for p in portraits:
            try:
                digest = hashlib.sha1(Path(p).read_bytes()).hexdigest()
                if digest in seen:  # the same picture under another name (a shipped copy of a shared painting)
                    report.skipped.append((str(p), f"the same image as {seen[digest]}"))
                    continue
                seen[digest] = Path(p).name
                crops[Path(p).stem] = _portrait_crop(Path(p), settings.size)
            except Exception as err:  # noqa: BLE001 - a portrait that cannot be used is reported, not fatal
                report.skipped.append((str(p), str(err)))
        pairs = [(v, name) for v in videos for name in crops]
        with tqdm(total=len(pairs), desc="cross", unit="pair", disable=not progress) as bar:
            for video in videos:
                video = Path(video)
                try:
                    clip = clips.get(video.name) or load_clip(video, settings.size)
                except VideoSkipped as err:
                    report.skipped.append((video.name, str(err)))
                    bar.update(len(crops))
                    continue
                real = MeasuredFrames(clip.crops, judge)
                for name, image in crops.items():
                    results, sheet = cross_pair(image, name, clip, real, judge, factories, settings.size)
                    report.results += results
                    report.sheets[f"{name}__{video.stem}"] = sheet
                    bar.update(1)
    finally:
        judge.close()
    return report


def cross_markdown(report: CrossReport) -> str:
    cols = ["yaw", "pitch", "roll", "x", "y", "mouth", "eye_r", "eye_l", "eyes", "brow"]
    head = "| method | pairs | " + " | ".join(f"r {c}" for c in cols) + " | face found (min) | id dist ↓ | jitter px |"
    lines = [f"# Cross-reenactment, {report.size}x{report.size}", "",
             "Pearson r between driver and avatar of what dlib reads off each (mean over portrait x clip pairs, "
             "worst pair in brackets); id dist: dlib descriptor distance avatar vs portrait.", "",
             head, "|---|---:|" + "---:|" * (len(cols) + 3)]

    def fmt(v, spec=".2f"):
        return "n/a" if v is None else format(v, spec)

    for row in report.means():
        cells = " | ".join(f"{fmt(row[f'r_{c}'])} ({fmt(row[f'r_{c}_min'])})" for c in cols)
        lines.append(f"| {row['method']} | {row['pairs']} | {cells} | {fmt(row['face_found'], '.1%')} "
                     f"({fmt(row['face_found_min'], '.1%')}) | {fmt(row['identity_distance'], '.3f')} | "
                     f"{fmt(row['jitter_px'])} |")
    lines += ["", "| portrait | clip | method | " + " | ".join(f"r {c}" for c in cols) + " | face found | id dist |",
              "|---|---|---|" + "---:|" * (len(cols) + 2)]
    for x in report.results:
        if x.method == STATIC:
            continue
        lines.append(f"| {x.portrait} | {x.clip} | {x.method} | " + " | ".join(fmt(x.r[c]) for c in cols)
                     + f" | {x.face_found:.1%} | {fmt(x.identity_distance, '.3f')} |")
    for row in report.means():
        if row["method"] != STATIC and row.get("blinks"):
            lines.append("")
            lines.append(f"Blinks ({row['method']}): {row['blinks']} driver blinks over the pairs; shown shut "
                         f"{fmt(row['blink_recall'], '.0%')} as dlib reads the avatar, "
                         f"{fmt(row['blink_recall_tracker'], '.0%')} as MediaPipe reads it; dlib sees "
                         f"{fmt(row['judge_blink_recall'], '.0%')} of them shut on the drivers themselves.")
    judge = next((r for r in report.means() if r["method"] == STATIC), None)
    if judge is not None:
        lines += ["", "The judge against the driving tracker on the same driver frames (r; how much of each measure "
                  "is signal rather than detector noise): "
                  + ", ".join(f"{c} {fmt(judge[f'judge_r_{c}'])}" for c in cols)]
    if report.skipped:
        lines += ["", "## Skipped", ""] + [f"- {w}: {why}" for w, why in report.skipped]
    return "\n".join(lines)
