"""Offline rendering: a driving video in, the animated portrait out, one output frame per driver frame.

Two passes over the driver: tracking first (so a driver with no face at all is refused before anything is
written, and any frame can be the reference pose), then rendering, with the same stages the live runner uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.avatar import Avatar
from avatar_app.errors import InputFileError, NoFaceError
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.retarget import RetargetSettings
from avatar_app.pipeline.sinks import VideoFileSink, check_output_path
from avatar_app.pipeline.sources import SourceSettings, VideoFileSource, probe_video
from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings


@dataclass(frozen=True)
class RenderReport:
    frames: int
    frames_with_face: int
    fps: float
    size: tuple[int, int]
    audio: bool


def track_video(path: Path, progress: bool = False) -> tuple[list[np.ndarray | None], list[float]]:
    """Landmarks (478 x 3, or None) and media time of every frame of a video."""
    points, times = [], []
    source = VideoFileSource(SourceSettings(str(path)))
    source.open()
    total = source.frame_count
    with source, FaceTracker(TrackerSettings()) as tracker:
        for frame in tqdm(source, total=total, desc="tracking", unit="frame", disable=not progress, leave=False):
            t = frame.t_media if frame.t_media is not None else frame.index / source.fps
            face = tracker.process(frame.image, t)
            points.append(None if face is None else face.points)
            times.append(t)
    return points, times


def render_video(
    driver: Path,
    avatar: Avatar,
    out: Path,
    render: RenderSettings = RenderSettings(),
    motion: RetargetSettings = RetargetSettings(),
    reference_frame: int | None = None,
    side_by_side: bool = False,
    progress: bool = False,
) -> RenderReport:
    driver, out = Path(driver), Path(out)
    check_output_path(out)
    info = probe_video(driver)
    if reference_frame is not None and info.frame_count and not 0 <= reference_frame < info.frame_count:
        raise InputFileError(f"{driver}: --reference-frame {reference_frame} is outside the video's {info.frame_count} frames")
    points, times = track_video(driver, progress=progress)
    if not points:
        raise InputFileError(f"{driver}: the video has no frames - give a video of a face")
    found = [i for i, p in enumerate(points) if p is not None]
    if not found:
        raise NoFaceError(f"{driver}: no face found in any of its {len(points)} frames - use a video where your face is clearly visible")
    if reference_frame is None:
        reference_frame = found[0]
    elif not 0 <= reference_frame < len(points):
        raise InputFileError(f"{driver}: --reference-frame {reference_frame} is outside the video's {len(points)} frames")
    elif points[reference_frame] is None:
        raise NoFaceError(f"{driver}: no face in frame {reference_frame} - pick another --reference-frame (e.g. {found[0]})")

    animator = Animator(avatar, render, motion)
    animator.calibrate(points[reference_frame])
    w, h = animator.output_size
    dh = h
    dw = int(round(info.width * dh / info.height / 2)) * 2 if side_by_side else 0
    sink = VideoFileSink(out, fps=info.fps, size=(w + dw, h), audio_from=driver)
    source = VideoFileSource(SourceSettings(str(driver)))
    written = 0
    with sink, source:
        for frame in tqdm(source, total=len(points), desc="rendering", unit="frame", disable=not progress, leave=False):
            i = frame.index
            if i >= len(points):  # the decoder found more frames than the tracking pass: hold the last pose
                i = len(points) - 1
            image = animator.render(animator.target(points[i], times[i]))
            if side_by_side:
                image = np.concatenate([cv2.resize(frame.image, (dw, dh), interpolation=cv2.INTER_AREA), image], 1)
            sink.write(image)
            written += 1
    animator.close()
    return RenderReport(
        frames=written, frames_with_face=len(found), fps=info.fps, size=(w + dw, h), audio=sink.has_audio
    )
