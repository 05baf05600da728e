"""Training data from a folder of talking-face videos: per clip, one stable square face crop, its frames resized
and their landmarks, plus an index that training reads and a report of what was skipped and why.

What DATA_DIR holds:
  index.json                       the prepared clips (id, video, frame count) - what `train` reads
  report.json                      every video seen: prepared, or skipped with the reason
  clips/<id>/clip.json             written last, so a clip folder without it is not a finished clip
  clips/<id>/frames/00000.jpg ...  the crop at size x size (RGB JPEG or PNG)
  clips/<id>/landmarks.npy         (N, 478, 3) float32 MediaPipe points in crop pixels (z on x's scale)
  clips/<id>/affines.npy           (N, 2, 3) float32: each frame's affine from the video's pixels to its crop
  clips/<id>/skipped.json          instead, for a clip that was skipped (so a re-run does not try it again)
  clips/<id>/warps/<s>/00000.jpg   the app's mesh warp of source frame s to every frame's landmarks (the input
  clips/<id>/warps.json            of the warp-conditioned generator), for --warp-sources frames spread over
                                   the clip; warps.json, written last, lists them
With --task mouth the crops are the mouth's (face/crop.py mouth_affine: one per frame, turned and scaled with
the lips), for the mouth model; index.json says which task made the folder.
Clip ids mirror the videos' paths; clips two or more folders deep (VoxCeleb2's id/video/clip.mp4) share their
folder's row of the discriminator's per-video matrix W, other clips have a row each.

No torch here: data preparation runs where the videos are.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from avatar_app.atomic import atomic_path
from avatar_app.errors import AvatarAppError, InputFileError, OutputPathError
from avatar_app.face.crop import (CROP_SCALE, MOUTH_CROP_SCALE, box_affine, crop_box, mouth_affine, mouth_crop,
                                  to_affine_crop, to_crop, warp_crop)
from avatar_app.face.landmarks import LIP_OUTER_LOWER, LIP_OUTER_UPPER
from avatar_app.training.config import PrepareConfig

INDEX_FORMAT = "avatar_app.training_data"
INDEX_VERSION = 2  # 2: clips list their warp sources
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
WARP_RENDERER = "mesh-2"  # bumped when the mesh renderer changes what it draws, so warps are made again


@dataclass
class ClipResult:
    id: str
    source: str  # relative to VIDEOS_DIR
    video: str  # the W row this clip belongs to
    status: str  # "prepared" or "skipped"
    frames: int = 0
    reason: str = ""
    reused: bool = False  # found finished by an earlier run
    warps: list[int] = field(default_factory=list)  # frames whose warps to every frame were rendered


@dataclass
class PrepareReport:
    prepared: list[ClipResult] = field(default_factory=list)
    skipped: list[ClipResult] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.prepared)


def find_videos(root: Path) -> list[Path]:
    """Every video under ``root`` (any depth), in a stable order."""
    if not root.is_dir():
        raise InputFileError(f"{root}: no such folder - give the folder that holds your videos")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not videos:
        raise InputFileError(f"{root}: no videos found ({', '.join(VIDEO_SUFFIXES)}, searched in sub-folders too)")
    return videos


def clip_ids(root: Path, videos: list[Path]) -> list[tuple[str, str]]:
    """(clip id, video key) per video: the path without its suffix; the suffix is kept where two would clash."""
    rel = [v.relative_to(root) for v in videos]
    stems = [r.with_suffix("").as_posix() for r in rel]
    clash = {s for s in stems if stems.count(s) > 1}
    out = []
    for r, s in zip(rel, stems):
        cid = f"{s}_{r.suffix.lstrip('.').lower()}" if s in clash else s
        parts = r.parts
        out.append((cid, "/".join(parts[:-1]) if len(parts) >= 3 else cid))
    return out


def stable_box(points: list[np.ndarray], scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """One crop for a whole clip: the median centre and side of the per-frame crops, so the face moves in it."""
    boxes = np.array([crop_box(p, scale) for p in points])  # (N, 3): x0, y0, side
    centres = boxes[:, :2] + boxes[:, 2:3] / 2
    cx, cy = np.median(centres, axis=0)
    side = float(np.median(boxes[:, 2]))
    return float(cx - side / 2), float(cy - side / 2), side


def _source_stamp(path: Path) -> dict:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _settings_stamp(config: PrepareConfig) -> dict:
    settings = {k: v for k, v in config.to_dict().items() if k != "warp_sources"}  # warps have their own stamp
    if config.task == "face":
        del settings["task"]  # face data prepared before there were tasks is still the same data
        return {**settings, "crop_scale": CROP_SCALE}
    return {**settings, "crop_scale": MOUTH_CROP_SCALE}


def crop_scale(config: PrepareConfig) -> float:
    return MOUTH_CROP_SCALE if config.task == "mouth" else CROP_SCALE


def mouth_frames(found: list[tuple[int, np.ndarray]], size: int,
                 frame_shape: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, landmarks in mouth-crop pixels, the crop's affine) for each tracked frame whose lips are all
    inside the picture (a mouth cut by the frame's edge is not a sample)."""
    h, w = frame_shape
    lips = np.concatenate([LIP_OUTER_UPPER, LIP_OUTER_LOWER])
    out = []
    for index, points in found:
        xy = points[lips, :2]
        if xy.min() < 0 or xy[:, 0].max() >= w or xy[:, 1].max() >= h:
            continue
        affine = mouth_affine(points, size)
        out.append((index, to_affine_crop(points, affine), affine))
    return out


def _finished(clip_dir: Path, source: Path, config: PrepareConfig) -> ClipResult | None:
    """The earlier result for this clip when it was made from the same file with the same settings."""
    for name, status in (("clip.json", "prepared"), ("skipped.json", "skipped")):
        marker = clip_dir / name
        if not marker.is_file():
            continue
        try:
            meta = json.loads(marker.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("source_stamp") != _source_stamp(source) or meta.get("settings") != _settings_stamp(config):
            return None
        if status == "prepared" and not (clip_dir / "landmarks.npy").is_file():
            return None
        return ClipResult(meta["id"], meta["source"], meta["video"], status, int(meta.get("frames", 0)),
                          meta.get("reason", ""), reused=True)
    return None


def prepare_clip(source: str, root: str, out: str, clip_id: str, video: str, config: PrepareConfig) -> ClipResult:
    """Track one video, choose its crop, write its frames and landmarks (into a temp folder renamed at the end)."""
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource
    from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

    src, clip_dir = Path(source), Path(out) / "clips" / clip_id
    rel = src.relative_to(root).as_posix()
    result = ClipResult(clip_id, rel, video, "skipped")
    meta = {"id": clip_id, "source": rel, "video": video, "source_stamp": _source_stamp(src),
            "settings": _settings_stamp(config)}

    def skip(reason: str) -> ClipResult:
        result.reason = reason
        if clip_dir.exists():
            shutil.rmtree(clip_dir)
        clip_dir.mkdir(parents=True)
        with atomic_path(clip_dir / "skipped.json") as tmp:
            tmp.write_text(json.dumps({**meta, "reason": reason}, indent=1))
        return result

    # Pass 1: landmarks of every frame (the tracker follows the face from frame to frame).
    found: list[tuple[int, np.ndarray]] = []
    total, shape = 0, (0, 0)
    try:
        with VideoFileSource(SourceSettings(spec=str(src))) as video_in, \
                FaceTracker(TrackerSettings(max_faces=1, smoothing=False)) as tracker:
            fps = video_in.fps
            for frame in video_in:
                face = tracker.process(frame.image, t=frame.t_media)
                if face is not None:
                    found.append((frame.index, face.points))
                shape = frame.image.shape[:2]
                total = frame.index + 1
    except InputFileError as err:
        return skip(f"unreadable video ({str(err).split(': ', 1)[-1]})")
    if not found:
        return skip(f"no face in any of its {total} frames")
    size = config.size
    if config.task == "mouth":  # a crop per frame, turned and scaled with the lips
        kept = mouth_frames(found, size, shape)
        box = None
    else:  # one crop for the whole clip
        box = stable_box([p for _, p in found])
        kept = []
        for index, points in found:
            p = to_crop(points, box, size)
            if p[:, :2].min() >= 0 and p[:, :2].max() < size:  # a face leaving the clip's crop is not a sample
                kept.append((index, p, box_affine(box, size)))
    if len(kept) < config.min_frames:
        why = f"face in only {len(found)} of {total} frames" if len(found) < config.min_frames else \
            f"the face stays inside one crop in only {len(kept)} frames"
        return skip(f"too short: {why}, at least {config.min_frames} needed")
    if config.max_frames and len(kept) > config.max_frames:
        pick = np.unique(np.linspace(0, len(kept) - 1, config.max_frames).round().astype(int))
        kept = [kept[i] for i in pick]

    # Pass 2: decode again and write the chosen frames' crops (holding a clip's frames in memory does not scale).
    tmp_dir = clip_dir.with_name(f".{clip_dir.name}.partial")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    (tmp_dir / "frames").mkdir(parents=True)
    wanted = {index: n for n, (index, _, _) in enumerate(kept)}
    ext = "." + config.image_format
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    written = 0
    try:
        with VideoFileSource(SourceSettings(spec=str(src))) as video_in:
            for frame in video_in:
                n = wanted.get(frame.index)
                if n is None:
                    continue
                cut = warp_crop(frame.image, box, size) if box is not None else mouth_crop(frame.image, kept[n][2], size)
                if not cv2.imwrite(str(tmp_dir / "frames" / f"{n:05d}{ext}"), cut, params):
                    raise OutputPathError(f"{tmp_dir}: cannot write frames (disk full or no permission?)")
                written += 1
    except InputFileError as err:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return skip(f"unreadable video on the second pass ({str(err).split(': ', 1)[-1]})")
    if written != len(kept):
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return skip(f"the video gave {written} of the {len(kept)} frames it had on the first pass")
    np.save(tmp_dir / "landmarks.npy", np.stack([p for _, p, _ in kept]).astype(np.float32), allow_pickle=False)
    # Each frame's affine from the video's pixels to its crop (the renderer's inverse pastes a mouth back).
    np.save(tmp_dir / "affines.npy", np.stack([a for _, _, a in kept]).astype(np.float32), allow_pickle=False)
    meta.update(frames=len(kept), fps=fps, size=size, image_format=config.image_format, task=config.task,
                source_frames=[index for index, _, _ in kept], frames_total=total, frames_with_face=len(found))
    if box is not None:
        meta["box"] = list(box)
    else:  # how many of the video's pixels one crop side spans (below `size`, the crop is upsampled)
        meta["crop_side_px"] = float(np.median([size / np.sqrt(abs(np.linalg.det(a[:, :2].astype(np.float64))))
                                                 for _, _, a in kept]))
    (tmp_dir / "clip.json").write_text(json.dumps(meta, indent=1))
    if clip_dir.exists():
        shutil.rmtree(clip_dir)
    clip_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_dir, clip_dir)
    result.status, result.frames = "prepared", len(kept)
    return result


def warp_sources(frames: int, count: int) -> list[int]:
    """``count`` source frames spread evenly over a clip (its first among them)."""
    return sorted({int(round(i * (frames - 1) / max(count, 1))) for i in range(count)}) if count else []


def _warps_finished(clip_dir: Path, config: PrepareConfig) -> list[int] | None:
    try:
        meta = json.loads((clip_dir / "warps.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("settings") != {"warp_sources": config.warp_sources, "renderer": WARP_RENDERER}:
        return None
    return [int(s) for s in meta["sources"]]


def render_warps(clip_dir: str, config: PrepareConfig) -> list[int]:
    """The mesh renderer's warp of each source frame to every frame of the clip, as the app draws it: an avatar
    made from the source crop and its landmarks, rendered at the crop's size with the frame's landmarks."""
    from avatar_app.pipeline.avatar import Avatar
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer
    from avatar_app.face.mesh_layout import build_mesh

    clip_dir = Path(clip_dir)
    done = _warps_finished(clip_dir, config)
    if done is not None:
        return done
    meta = json.loads((clip_dir / "clip.json").read_text())
    points = np.load(clip_dir / "landmarks.npy", allow_pickle=False)
    ext = "." + meta["image_format"]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    sources = warp_sources(len(points), config.warp_sources)
    shutil.rmtree(clip_dir / "warps", ignore_errors=True)
    renderer = MeshRenderer()
    for s in sources:
        image = cv2.imread(str(clip_dir / "frames" / f"{s:05d}{ext}"), cv2.IMREAD_COLOR)
        if image is None:
            raise OutputPathError(f"{clip_dir}: frame {s} is unreadable - delete the clip's folder and prepare again")
        h, w = image.shape[:2]
        avatar = Avatar(name=f"{clip_dir.name}:{s}", image=image, landmarks=points[s], mesh=build_mesh(points[s], (w, h)))
        renderer.prepare(avatar, RenderSettings(size=max(w, h)))
        folder = clip_dir / "warps" / f"{s:05d}"
        folder.mkdir(parents=True)
        for t in range(len(points)):
            if not cv2.imwrite(str(folder / f"{t:05d}{ext}"), renderer.render(points[t]), params):
                raise OutputPathError(f"{folder}: cannot write warps (disk full or no permission?)")
    with atomic_path(clip_dir / "warps.json") as tmp:
        tmp.write_text(json.dumps({"sources": sources, "settings": {"warp_sources": config.warp_sources,
                                                                    "renderer": WARP_RENDERER}}, indent=1))
    return sources


def write_index(out: Path, config: PrepareConfig, report: PrepareReport) -> Path:
    clips = sorted(report.prepared, key=lambda c: c.id)
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "size": config.size,
        "image_format": config.image_format,
        "task": config.task,
        "crop_scale": crop_scale(config),
        "landmarks": "mediapipe-478, crop pixels (N x 478 x 3 float32, z on x's scale)",
        "warp_sources": config.warp_sources,
        "clips": [{"id": c.id, "video": c.video, "frames": c.frames, "source": c.source, "warps": c.warps}
                  for c in clips],
    }
    summary = {
        "prepared": [{"id": c.id, "source": c.source, "frames": c.frames} for c in clips],
        "skipped": [{"id": c.id, "source": c.source, "reason": c.reason} for c in sorted(report.skipped, key=lambda c: c.id)],
    }
    try:
        with atomic_path(out / "report.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
        with atomic_path(out / "index.json") as tmp:
            tmp.write_text(json.dumps(index, indent=1))
    except OSError as err:
        raise OutputPathError(f"{out}: cannot write the index ({err.strerror or err}) - free some space and run again") from None
    return out / "index.json"


def _run_all(fn, jobs: list[tuple], workers: int, done) -> list:
    """fn(*job) for every job, in order, telling ``done`` each result; in `workers` processes when more than one
    (spawned, not forked: MediaPipe's graphs and threads do not survive a fork)."""
    out = []
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            out.append(fn(*job))
            done(out[-1])
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for f in futures:
                out.append(f.result())
                done(out[-1])
            return out
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def prepare_data(videos_dir: str | Path, out: str | Path, config: PrepareConfig = PrepareConfig(),
                 workers: int = 1, progress: bool = True) -> PrepareReport:
    """Prepare every video under ``videos_dir`` into ``out``; clips finished by an earlier run are kept."""
    from tqdm import tqdm

    root, out = Path(videos_dir).resolve(), Path(out)
    videos = find_videos(root)
    if out.resolve() == root or root in out.resolve().parents:
        raise OutputPathError(f"{out}: is inside the videos folder - write the data somewhere else")
    if not out.parent.is_dir():
        raise OutputPathError(f"{out}: folder '{out.parent}' does not exist - create it first")
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out}: is a file - give a folder for the training data")
    try:
        (out / "clips").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"{out}: cannot create the data folder ({err.strerror or err})") from None
    if workers < 1:
        raise AvatarAppError(f"--workers must be at least 1, got {workers}")

    report = PrepareReport()
    todo = []
    for path, (cid, video) in zip(videos, clip_ids(root, videos)):
        done = _finished(out / "clips" / cid, path, config)
        if done is not None:
            (report.prepared if done.status == "prepared" else report.skipped).append(done)
        else:
            todo.append((str(path), str(root), str(out), cid, video, config))

    bar = tqdm(total=len(videos), initial=len(videos) - len(todo), desc="preparing", unit="clip",
               disable=not progress, dynamic_ncols=True)

    def record(r: ClipResult) -> None:
        (report.prepared if r.status == "prepared" else report.skipped).append(r)
        bar.set_postfix(prepared=len(report.prepared), skipped=len(report.skipped), refresh=False)
        bar.update()

    try:
        _run_all(prepare_clip, todo, workers, record)
        bar.close()
        if config.warp_sources:
            bar = tqdm(total=len(report.prepared), desc="warping", unit="clip", disable=not progress, dynamic_ncols=True)
            jobs = [(str(out / "clips" / c.id), config) for c in report.prepared]
            results = _run_all(render_warps, jobs, workers, lambda _: bar.update())
            for c, sources in zip(report.prepared, results):
                c.warps = sources
    except OSError as err:
        raise OutputPathError(f"{out}: cannot write the clips ({err.strerror or err}) - free some space and run again; "
                              "finished clips are kept") from None
    finally:
        bar.close()
    write_index(out, config, report)
    return report
