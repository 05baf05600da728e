"""Record: the call's picture written to an MP4 in real time while the pipeline runs."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from avatar_app.pipeline.frame import Frame, now
from avatar_app.pipeline.sinks import VideoFileSink, add_sound, audio_for_frames, check_output_path, decode_audio
from avatar_app.images import fit_image


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

    ``audio_from`` (the driver video): each written frame remembers the moment of the driver it shows, and
    ``close()`` adds the driver's sound of those moments, so lips and voice stay together whatever the
    pipeline's delay was (a camera's frames have no such moments: the file is silent).
    """

    name = "record"
    _MAX_REPEAT_S = 1.0  # after a longer stall (a source switch), the gap is not filled frame by frame

    def __init__(self, path: Path, fps: float, size: tuple[int, int], audio_from: Path | None = None):
        self.path = check_output_path(path)
        self.audio_from = audio_from
        self._moments: list[float | None] = []  # per written frame: the driver's media time it shows
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

    def process(self, frame: Frame) -> None:
        """The sink stage: the call's picture, and the moment of the driver it shows."""
        self.write(frame.picture, frame.t_media)

    def write(self, image_bgr: np.ndarray, media_time: float | None = None) -> None:
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
            self._moments.append(media_time)

    def close(self) -> None:
        """Finish the file (raises an AvatarAppError if no frame ever arrived; nothing is left behind), then add
        the driver's sound when there is one (a failure there keeps the silent video and says so)."""
        self._sink.close()
        if self.audio_from is None or not any(m is not None for m in self._moments):
            return
        sound = decode_audio(self.audio_from)
        if sound is not None:
            add_sound(self.path, audio_for_frames(sound, self._moments, self.fps))
