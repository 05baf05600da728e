"""Record: the call's picture written to an MP4 in real time while the pipeline runs, with the driver's sound or the
microphone's."""

from __future__ import annotations

import datetime
import wave
from pathlib import Path

import numpy as np

from avatar_app.errors import first_line
from avatar_app.pipeline.frame import Frame, now
from avatar_app.pipeline.microphone import MicrophoneError, MicrophoneRecorder
from avatar_app.pipeline.sinks import VideoFileSink, add_sound, audio_for_frames, check_output_path, decode_audio
from avatar_app.atomic import unused_path
from avatar_app.images import fit_image


def recording_path(folder: Path) -> Path:
    """A new file name in ``folder``, e.g. avatar-2025-01-31-142502.mp4."""
    return unused_path(folder, f"avatar-{datetime.datetime.now().strftime('%Y-%m-%d-%H%M%S')}", ".mp4")


class Recording:
    """An output that writes what the avatar shows, at a fixed rate on the wall clock.

    The live pipeline delivers frames at whatever rate the machine manages, so frames are repeated or skipped
    to keep the file in real time (a minute recorded plays for a minute). The size is fixed when recording
    starts; a later avatar of another shape is fitted into it.

    Sound, added at ``close()`` (a failure there keeps the silent video and says so):

    - ``audio_from`` (the driver video): each written frame remembers the moment of the driver it shows, and
      gets the driver's sound of that moment, so lips and voice stay together whatever the pipeline's delay.
    - ``microphone`` (a camera or the demo): heard from ``open()`` on into a WAV beside the file, and laid under
      the pictures late by the pipeline's latency as this recording measured it (``sound_delay``: from a
      frame's capture to the slot it was written in, the median over the recording), so a word is heard with
      the picture of the lips that said it. A microphone that cannot start leaves the video silent, and
      ``sound_note`` says why in one line.
    """

    name = "record"
    _MAX_REPEAT_S = 1.0  # after a longer stall (a source switch), the gap is not filled frame by frame

    def __init__(self, path: Path, fps: float, size: tuple[int, int], audio_from: Path | None = None,
                 microphone: MicrophoneRecorder | None = None):
        self.path = check_output_path(path)
        self.audio_from = audio_from
        self.microphone = microphone
        self.sound_note: str | None = None  # why a recording that should have sound has none (one line)
        self._moments: list[float | None] = []  # per written frame: the driver's media time it shows
        self._delays: list[float] = []  # per written picture: its slot in the file minus its capture
        self._segments: list[tuple[int, float]] = []  # (first frame, wall time of frame 0's slot) per stretch
        self.fps = float(fps)
        self.size = size
        self._sink = VideoFileSink(path, fps=fps, size=size, fragmented=True)
        self._t0: float | None = None
        self.frames_written = 0

    def open(self) -> None:
        self._sink.open()
        if self.microphone is not None:
            try:
                self.microphone.open()
            except MicrophoneError as err:  # the video is what matters: it is recorded, silent
                self.microphone = None
                self.sound_note = f"recording without sound: {first_line(err)}"

    @property
    def seconds(self) -> float:
        return self.frames_written / self.fps

    @property
    def sound_delay(self) -> float | None:
        """Seconds the microphone's sound is laid late (the measured latency); None before a camera frame."""
        return float(np.median(self._delays)) if self._delays else None

    def process(self, frame: Frame) -> None:
        """The sink stage: the call's picture, the moment of the driver it shows and when it was captured."""
        self.write(frame.picture, frame.t_media, frame.t_capture if frame.has_picture else None)

    def write(self, image_bgr: np.ndarray, media_time: float | None = None, captured: float | None = None) -> None:
        t = now()
        if self._t0 is None:
            self._t0 = t
            self._segments.append((0, t))
        due = int((t - self._t0) * self.fps) + 1 - self.frames_written  # frames that should exist by now
        if due <= 0:
            return
        if due > self._MAX_REPEAT_S * self.fps:
            self._t0 += (due - 1) / self.fps  # skip the stall instead of filling it with one still frame
            self._segments.append((self.frames_written, self._t0))
            due = 1
        if captured is not None:
            self._delays.append(self.frames_written / self.fps - (captured - self._t0))
        image = fit_image(image_bgr, self.size)
        for _ in range(due):
            self._sink.write(image)
            self.frames_written += 1
            self._moments.append(media_time)

    def close(self) -> None:
        """Finish the file (raises an AvatarAppError if no frame ever arrived; nothing is left behind), then add
        its sound when there is some (a failure there keeps the silent video and says so)."""
        microphone, self.microphone = self.microphone, None
        try:
            if microphone is not None:
                microphone.stop()
            self._sink.close()
            if microphone is not None:
                self._add_microphone(microphone)
                return
        finally:
            if microphone is not None:
                microphone.discard()
        if self.audio_from is None or not any(m is not None for m in self._moments):
            return
        sound = decode_audio(self.audio_from)
        if sound is not None:
            add_sound(self.path, audio_for_frames(sound, self._moments, self.fps))

    def _add_microphone(self, microphone: MicrophoneRecorder) -> None:
        if microphone.error is not None:
            self.sound_note = f"recording without sound: writing it failed ({microphone.error})"
            return
        delay = self.sound_delay
        if delay is None or microphone.seconds == 0:
            self.sound_note = "recording without sound: nothing was heard" if delay is not None else None
            return
        try:
            add_sound(self.path, microphone.track(self._segments, delay, self.fps, self.seconds),
                      rate=microphone.settings.rate)
        except wave.Error as err:
            self.sound_note = f"recording without sound: its WAV could not be read ({first_line(err)})"
