"""The one stage loop: what happens to a frame after its source (tracker → retarget → renderer → sinks).

Every stage has the same life cycle, open / process one frame / close, and fills its part of the frame
message. The live runner's threads, `render` and `evaluate` all make these same calls: the runner splits them
over its threads (``track`` and ``retarget`` on one, ``render`` and ``deliver`` on the next), `evaluate` calls
``run``, and `render` tracks the whole video before it retargets (any frame may be the reference pose).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Callable, Protocol

import numpy as np

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.frame import ENTER, Frame
from avatar_app.pipeline.render.mouth_sources import DriverView
from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings


class Stage(Protocol):
    """A room of the pipeline: opened once, then one frame at a time, then closed."""

    name: str

    def open(self) -> None: ...

    def process(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Where finished frames go (a video file, a virtual camera, the window's outputs): ``process`` writes the
    frame's ``picture``."""

    name: str

    def process(self, frame: Frame) -> None: ...

    def close(self) -> None: ...


class TrackerStage:
    """MediaPipe's face mesh on each frame's image: fills ``frame.driver`` (None: no face, or no picture)."""

    name = "tracker"

    def __init__(self, settings: TrackerSettings = TrackerSettings(), media_time: bool = False):
        # Live sources smooth over capture time; offline jobs over the media's own time, so that what they
        # compute does not depend on how fast this machine decodes.
        self.settings = settings
        self.media_time = media_time
        self._tracker: FaceTracker | None = None

    def open(self) -> None:
        if self._tracker is None:
            self._tracker = FaceTracker(self.settings)

    def process(self, frame: Frame) -> None:
        if self._tracker is None:
            self.open()
        t = frame.time if self.media_time else frame.t_capture
        face = self._tracker.process(frame.image, t) if frame.has_picture else None
        frame.driver = None if face is None else face.points

    def set_smoothing(self, min_cutoff: float) -> None:
        """How much the tracked face is smoothed (the One-Euro cutoff at rest, Hz), now and after a reopen."""
        self.settings = dataclasses.replace(self.settings, min_cutoff=min_cutoff)
        tracker = self._tracker
        if tracker is not None:
            tracker.set_smoothing(min_cutoff)

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None


class StageLoop:
    """The stages after the source, for the avatar being animated now.

    ``switch()`` (from any thread) hands a new animation to the retarget stage; frames already on their way
    are still drawn by the animation that made their target (the frame names it), and an animation is closed by
    the renderer stage once no frame of it can come any more (frames travel in order).
    """

    def __init__(
        self,
        animator: Animator,
        tracker: Stage | None = None,
        sinks: list[Sink] | tuple[Sink, ...] = (),
        media_time: bool = False,
        timed: bool = False,
        call: Stage | None = None,
    ):
        self.media_time = media_time
        # The call's picture (avatar_app/call/), drawn from the renderer's drawing for every sink; without one
        # the renderer draws its own image at the working size (frame.output).
        self.call = call
        self.tracker = tracker or TrackerStage(media_time=media_time)
        self.sinks = list(sinks)
        self.timed = timed  # also stamp when a frame enters each stage, and the CPU clock (for the profiler)
        self._lock = threading.Lock()
        self._animator = animator
        self._retired: list[Animator] = []  # switched away from; closed by the renderer stage

    # -- control (any thread) -----------------------------------------------------------------------------
    @property
    def animator(self) -> Animator:
        with self._lock:
            return self._animator

    def switch(self, animator: Animator) -> None:
        """Animate with ``animator`` from the next frame the retarget stage sees."""
        with self._lock:
            if animator is not self._animator:
                self._retired = [a for a in self._retired if a is not animator] + [self._animator]
                self._animator = animator

    def calibrate(self) -> None:
        """Take the reference pose again: the next face (or, with guided calibration, the next steady look)."""
        self.animator.calibrate()

    def open(self) -> None:
        self.tracker.open()

    def close(self) -> None:
        """Close the tracker and every animation (call once the stages' threads have stopped)."""
        self.tracker.close()
        with self._lock:
            animators, self._retired = [self._animator, *self._retired], []
        for animator in animators:
            animator.close()

    # -- the stages ---------------------------------------------------------------------------------------
    def track(self, frame: Frame) -> None:
        """Tracker stage: fills ``driver``."""
        self._enter(frame, "tracker")
        self.tracker.process(frame)
        self._leave(frame, "tracker")

    def retarget(self, frame: Frame) -> None:
        """Retarget stage: fills ``target`` and ``animator`` (the animation that will draw it)."""
        self._enter(frame, "retarget")
        self.animator.retarget(frame, frame.time if self.media_time else frame.t_capture)
        self._leave(frame, "retarget")

    def render(self, frame: Frame) -> None:
        """Renderer stage: the animation that made the target draws it: with a call stage, as a drawing that
        stage turns into ``call_image``; without one, as ``output`` at the working size."""
        call = self.call  # read once: the window may swap it meanwhile
        self._enter(frame, "renderer")
        animator = frame.animator
        # The camera picture for a mouth drawn from the driver's own (none: a frame without one, or the
        # evaluation's landmark-only protocol, whose frames carry no pixels).
        driver = DriverView(frame.image, frame.driver) if frame.has_picture and frame.image.size else None
        if call is None:
            frame.output = animator.render(frame.target, driver)
        else:
            frame.drawing = animator.draw(frame.target, driver)
        self._leave(frame, "renderer")
        self._retire_older_than(animator)
        if call is not None:
            self._enter(frame, "call")
            call.process(frame)
            self._leave(frame, "call")

    def deliver(self, frame: Frame, on_error: Callable[[Sink, Exception], None] | None = None) -> None:
        """Each sink takes the frame. A sink that raises is removed and handed to ``on_error`` (the others go
        on); without ``on_error`` the error propagates (an offline job stops)."""
        for sink in list(self.sinks):
            stage = f"sink:{sink.name}"
            self._enter(frame, stage)
            try:
                sink.process(frame)
            except Exception as err:
                if on_error is None:
                    raise
                self.sinks.remove(sink)
                on_error(sink, err)
                continue
            self._leave(frame, stage)

    def run(self, frame: Frame) -> Frame:
        """All the stages, one after the other (the offline commands)."""
        self.track(frame)
        self.retarget(frame)
        self.render(frame)
        self.deliver(frame)
        return frame

    # -- inside -------------------------------------------------------------------------------------------
    def _enter(self, frame: Frame, stage: str) -> None:
        if self.timed:  # wall clock first, CPU last: the CPU span lies inside the wall one
            frame.enter(stage)
            frame.cpu_stamp(ENTER + stage)

    def _leave(self, frame: Frame, stage: str) -> None:
        if self.timed:
            frame.cpu_stamp(stage)
        frame.stamp(stage)

    def _retire_older_than(self, animator: Animator) -> None:
        with self._lock:
            done = [a for a in self._retired if a.generation < animator.generation]
            self._retired = [a for a in self._retired if a.generation >= animator.generation]
        for old in done:  # no frame made by these is left: they were switched away from before this one
            old.close()


def track_video(path, progress: bool = False) -> tuple[list[np.ndarray | None], list[float]]:
    """The tracker stage over a whole video file: landmarks (478 x 3, or None) and media time of every frame."""
    frames = track_frames(path, progress=progress)
    return [f.driver for f in frames], [f.time for f in frames]


def track_frames(path, progress: bool = False, keep: Callable[[Frame], object] | None = None) -> list[Frame]:
    """Decode a video once and track it: one frame message per frame, its image dropped (``keep(frame)``, when
    given, runs first and may hold on to what it needs, e.g. a thumbnail)."""
    from tqdm import tqdm

    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource

    tracker = TrackerStage(media_time=True)
    frames: list[Frame] = []
    source = VideoFileSource(SourceSettings(str(path)))
    source.open()
    with source:
        for frame in tqdm(source, total=source.frame_count, desc="tracking", unit="frame", disable=not progress,
                          leave=False):
            if frame.t_media is None:
                frame.t_media = frame.index / source.fps
            tracker.process(frame)
            frame.stamp("tracker")
            if keep is not None:
                keep(frame)
            frame.image = _NO_IMAGE  # a long video's pictures are not kept in memory
            frames.append(frame)
    tracker.close()
    return frames


_NO_IMAGE = np.zeros((0, 0, 3), np.uint8)
