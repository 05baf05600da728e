"""Record: the call's picture written to an MP4 in real time while the pipeline runs."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from avatar_app.pipeline.frame import now
from avatar_app.pipeline.sinks import VideoFileSink, check_output_path
from avatar_app.pipeline.framing import fit_image


def recording_path(folder: Path) -> Path:
    """A new file name in ``folder``, e.g. avatar-2025-01-31-142502.mp4."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    path = folder / f"avatar-{stamp}.mp4"
    n = 2
    while path.exists():
        path = folder / f"avatar-{stamp}-{n}.mp4"
        n += 1
    return path


class Recording:
    """An output that writes what the avatar shows, at a fixed rate on the wall clock.

    The live pipeline delivers frames at whatever rate the machine manages, so frames are repeated or skipped
    to keep the file in real time (a minute recorded plays for a minute). The size is fixed when recording
    starts; a later avatar of another shape is fitted into it.
    """

    name = "record"
    _MAX_REPEAT_S = 1.0  # after a longer stall (a source switch), the gap is not filled frame by frame

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        self.path = check_output_path(path)
        self.fps = float(fps)
        self.size = size
        self._sink = VideoFileSink(path, fps=fps, size=size, fragmented=True)
        self._t0: float | None = None
        self.frames_written = 0

    def open(self) -> None:
        self._sink.open()

    @property
    def seconds(self) -> float:
        return self.frames_written / self.fps

    def write(self, image_bgr: np.ndarray) -> None:
        t = now()
        if self._t0 is None:
            self._t0 = t
        due = int((t - self._t0) * self.fps) + 1 - self.frames_written  # frames that should exist by now
        if due <= 0:
            return
        if due > self._MAX_REPEAT_S * self.fps:
            self._t0 += (due - 1) / self.fps  # skip the stall instead of filling it with one still frame
            due = 1
        image = fit_image(image_bgr, self.size)
        for _ in range(due):
            self._sink.write(image)
            self.frames_written += 1

    def close(self) -> None:
        """Finish the file (raises an AvatarAppError if no frame ever arrived; nothing is left behind)."""
        self._sink.close()
