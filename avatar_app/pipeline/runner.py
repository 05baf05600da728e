"""The live pipeline: source -> tracker -> retarget -> renderer -> sinks, each on its own thread.

The newest frame wins: between stages sits a bounded slot, and a frame that arrives while the slot is full
replaces the waiting one (the stale one is dropped and counted, never queued). Every frame carries the time
it was captured and the time it left each stage, so latency per stage is a difference of stamps; given an
observer (the profiler), the runner also stamps when a frame enters each stage ("enter:<stage>") and reports every
finished, dropped and failed frame to it. stop() returns within a second.

The threads wrap the stage loop's own calls (stages.py): ``track`` on the tracker thread, ``render`` and
``deliver`` on the renderer thread, the same calls `render` and `evaluate` make in one thread.

Faults stay inside their stage. A source that fails (a camera unplugged, a file cut short) is closed and
reopened with back-off while the capture thread keeps sending "no picture" frames at the source's rate, so the
avatar eases to neutral and the sinks stay fed; when the source opens again, frames resume without a restart.
A sink that fails is switched off and closed (a recording keeps what was written); a frame the renderer cannot
draw is skipped and counted.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from avatar_app.errors import first_line
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.frame import CAPTURE, ENTER, Frame, FrameObserver, now, thread_cpu
from avatar_app.pipeline.sources import FrameSource
from avatar_app.pipeline.stages import Sink, Stage, StageLoop, TrackerStage
from avatar_app.pipeline.tracker import TrackerSettings

log = logging.getLogger(__name__)

_POLL_S = 0.05  # how often a waiting thread looks at the stop flag


@dataclass(frozen=True)
class RunnerSettings:
    slot_size: int = 1  # frames that may wait between two stages
    # Live sources drop stale frames (the newest wins). A file read unpaced for throughput may instead have
    # every stage wait for the next, so that no frame is decoded or tracked for nothing.
    drop_stale: bool = True
    stop_timeout_s: float = 1.0
    tracker: TrackerSettings = TrackerSettings()
    # A failed source is reopened after retry_first_s, then after twice as long each time, up to retry_max_s
    # between tries; after give_up_s without a picture (None: never) the runner ends as if the source had.
    retry_first_s: float = 0.5
    retry_max_s: float = 5.0
    give_up_s: float | None = None

    def __post_init__(self) -> None:
        if self.slot_size < 1:
            raise ValueError("slot_size must be at least 1")
        if not 0 < self.retry_first_s <= self.retry_max_s:
            raise ValueError("retry_first_s must be positive and at most retry_max_s")


class LatestSlot:
    """A bounded hand-over between two threads where the newest item wins.

    put() never blocks: when full, the oldest waiting item is dropped and counted (and handed to ``on_drop``,
    outside the slot's lock).
    """

    def __init__(self, size: int = 1, on_drop: Callable[[object], None] | None = None):
        self._items: collections.deque = collections.deque()
        self._size = size
        self._cond = threading.Condition()
        self.dropped = 0
        self.high_water = 0
        self._closed = False
        self._on_drop = on_drop

    def put(self, item, wait_for_room: bool = False, stop: threading.Event | None = None) -> None:
        """Hand over an item; when full, drop the oldest (or, with wait_for_room, wait until taken)."""
        gone = None
        with self._cond:
            while wait_for_room and len(self._items) >= self._size and not self._closed:
                if stop is not None and stop.is_set():
                    return
                self._cond.wait(_POLL_S)
            if len(self._items) >= self._size:
                gone = self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify()
        if gone is not None and self._on_drop is not None:
            self._on_drop(gone)

    def get(self, timeout: float = _POLL_S):
        """The oldest waiting item, or None after `timeout` (or once closed and empty)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            item = self._items.popleft() if self._items else None
            self._cond.notify_all()  # room for a waiting put()
            return item

    def close(self) -> None:
        """No more items will come; waiting readers wake up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed_and_empty(self) -> bool:
        with self._cond:
            return self._closed and not self._items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class RunnerStats:
    frames_captured: int = 0
    frames_tracked: int = 0
    frames_rendered: int = 0
    frames_without_face: int = 0
    render_errors: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    sink_errors: dict[str, str] = field(default_factory=dict)
    source_error: str | None = None  # the last reason the source failed
    source_outages: int = 0  # times the source failed while running
    source_recoveries: int = 0  # times it came back
    frames_without_source: int = 0  # "no picture" frames sent while it was down


class Runner:
    """Owns the pipeline's threads. Use start(), then stop() (or wait() for a finite source).

    ``animation`` is the avatar's Animator, or a StageLoop that holds it (the window's, which switches avatars
    while frames flow); ``tracker`` replaces the MediaPipe stage (settings.tracker) with another Stage.
    ``on_frame`` gets every finished frame message on the renderer thread.
    """

    def __init__(
        self,
        source: FrameSource,
        animation: Animator | StageLoop,
        sinks: list[Sink] | tuple[Sink, ...] = (),
        settings: RunnerSettings = RunnerSettings(),
        on_frame: Callable[[Frame], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
        observer: FrameObserver | None = None,
        tracker: Stage | None = None,
    ):
        self.source = source
        if isinstance(animation, StageLoop):
            self.stages = animation
            self.stages.sinks = list(sinks) or self.stages.sinks
        else:
            self.stages = StageLoop(animation, tracker or TrackerStage(settings.tracker), sinks)
        self.stages.timed = observer is not None  # without an observer, frames carry exit stamps only
        self.settings = settings
        self.on_frame = on_frame
        self.on_problem = on_problem
        self.stats = RunnerStats()
        self.observer = observer
        o = observer
        self._to_tracker = LatestSlot(settings.slot_size, None if o is None else lambda f: o.dropped("tracker", f))
        self._to_renderer = LatestSlot(settings.slot_size, None if o is None else lambda f: o.dropped("renderer", f))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._latest: Frame | None = None
        self._lock = threading.Lock()

    @property
    def animator(self) -> Animator:
        return self.stages.animator

    @property
    def sinks(self) -> list[Sink]:
        return self.stages.sinks

    # -- control ------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._threads:
            raise RuntimeError("the runner is already started")
        self.source.open()
        self._tell_source()  # before the first frame: the demo holds still until the avatar is calibrated
        for name, target in (("capture", self._capture), ("tracker", self._track), ("renderer", self._render)):
            t = threading.Thread(target=self._guard, args=(name, target), name=f"avatar-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def stop(self) -> None:
        """Stop every thread and close source and sinks; returns within stop_timeout_s (about a second)."""
        self._stop.set()
        self._to_tracker.close()
        self._to_renderer.close()
        deadline = now() + self.settings.stop_timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - now()))
        self._finish()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until a finite source has been played through (True) or timeout passes (False)."""
        end = None if timeout is None else now() + timeout
        for t in self._threads:
            t.join(None if end is None else max(0.0, end - now()))
        done = not any(t.is_alive() for t in self._threads)
        if done:
            self._finish()
        return done

    def calibrate(self) -> None:
        """The driver's next pose with a face becomes the reference (the avatar shows the portrait's own pose)."""
        self.stages.calibrate()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    def queue_lengths(self) -> dict[str, int]:
        return {"tracker": len(self._to_tracker), "renderer": len(self._to_renderer)}

    def queue_high_water(self) -> dict[str, int]:
        """The most frames that ever waited in each queue (never above ``slot_size``)."""
        return {"tracker": self._to_tracker.high_water, "renderer": self._to_renderer.high_water}

    def queue_drops(self) -> dict[str, int]:
        """Frames each queue dropped so far (a newer one replaced them)."""
        return {"tracker": self._to_tracker.dropped, "renderer": self._to_renderer.dropped}

    # -- threads ------------------------------------------------------------------------------------------
    def _guard(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as err:  # a stage that dies must not hang the others
            log.exception("%s stage failed", name)
            if self.observer is not None:
                self.observer.failed(name)
            self._problem(f"{name} stopped: {err}")
            self._stop.set()
            self._to_tracker.close()
            self._to_renderer.close()

    def _capture(self) -> None:
        last: np.ndarray | None = None
        timed = self.stages.timed
        try:
            while not self._stop.is_set():
                started = thread_cpu() if timed else 0.0
                try:
                    frame = self.source.read()
                except Exception as err:  # an unplugged camera, a truncated file: ride it out, then go on
                    if not self._ride_out_outage(err, last):
                        break
                    continue
                if frame is None:
                    break
                if timed:  # this thread's CPU for the read (decoding; a paced source's sleep does not count)
                    frame.cpu[ENTER + CAPTURE] = started
                    frame.cpu_stamp(CAPTURE)
                last = frame.image
                self.stats.frames_captured += 1
                self._to_tracker.put(frame, wait_for_room=not self.settings.drop_stale, stop=self._stop)
        finally:
            self._to_tracker.close()

    def _ride_out_outage(self, err: Exception, last: np.ndarray | None) -> bool:
        """Reopen the source with back-off, sending "no picture" frames meanwhile. True once it is back."""
        s = self.settings
        self.stats.source_error = first_line(err)
        self.stats.source_outages += 1
        _close_quietly(self.source)
        if s.give_up_s == 0:  # no retries wanted (a benchmark): stop as before, with the source's own reason
            self._problem(f"source stopped: {self.stats.source_error}")
            return False
        period = 1.0 / (self.source.fps or 30.0)
        if last is None:
            w, h = self.source.size
            last = np.zeros((max(h, 1), max(w, 1), 3), np.uint8)
        lost_at = now()
        delay = s.retry_first_s
        next_try = lost_at + delay
        self._problem(f"source lost: {self.stats.source_error} - retrying in {delay:.1f} s")
        tick = lost_at
        while not self._stop.is_set():
            if s.give_up_s is not None and now() - lost_at >= s.give_up_s:
                self._problem(f"source stopped: no picture for {s.give_up_s:g} s ({self.stats.source_error}) - choose"
                              " another source")
                return False
            if now() >= next_try:
                try:
                    self.source.open()
                except Exception as again:  # still gone: wait twice as long (up to retry_max_s)
                    delay = min(delay * 2.0, s.retry_max_s)
                    next_try = now() + delay
                    self.stats.source_error = first_line(again)
                    log.info("source still unavailable (%s); next try in %.1f s", self.stats.source_error, delay)
                else:
                    self.stats.source_recoveries += 1
                    self._problem(f"source is back after {now() - lost_at:.1f} s")
                    return True
            # The avatar goes on: a frame without a picture tells the tracker "no face" at the source's rate.
            placeholder = Frame(image=last, index=-1, t_capture=now(), has_picture=False)
            self.stats.frames_without_source += 1
            self._to_tracker.put(placeholder)
            tick += period
            self._stop.wait(max(0.0, min(tick, next_try) - now()))
        return False

    def _track(self) -> None:
        self.stages.open()  # on this thread, which is the one that uses and closes it
        try:
            while not self._stop.is_set():
                frame = self._to_tracker.get()
                if frame is None:
                    if self._to_tracker.closed_and_empty:
                        break
                    continue
                self.stages.track(frame)
                self.stages.retarget(frame)
                self._tell_source()
                self.stats.frames_tracked += frame.has_picture
                self.stats.frames_without_face += frame.driver is None and frame.has_picture
                self._to_renderer.put(frame, wait_for_room=not self.settings.drop_stale, stop=self._stop)
        finally:
            _close_quietly(self.stages.tracker)
            self._to_renderer.close()

    def _tell_source(self) -> None:
        """Tell a source that wants to know (the demo face) whether the avatar has taken the driver's pose."""
        tell = getattr(self.source, "set_calibrated", None)
        if tell is not None:
            tell(self.stages.animator.calibrated)

    def _render(self) -> None:
        while not self._stop.is_set():
            frame = self._to_renderer.get()
            if frame is None:
                if self._to_renderer.closed_and_empty:
                    break
                continue
            try:
                self.stages.render(frame)
            except Exception as err:  # one bad frame is skipped and counted, the next one renders
                self.stats.render_errors += 1
                log.warning("frame %d not rendered: %s", frame.index, err)
                if self.observer is not None:
                    self.observer.failed("renderer", frame)
                continue
            self.stages.deliver(frame, on_error=self._sink_failed)
            with self._lock:
                self._latest = frame
            self.stats.frames_rendered += 1
            if self.observer is not None:
                self.observer.record(frame)
            if self.on_frame is not None:
                self.on_frame(frame)

    def _sink_failed(self, sink: Sink, err: Exception) -> None:
        """That sink is switched off; the frame goes on to the others (counted, not a row of its own)."""
        self.stats.sink_errors[sink.name] = str(err)
        if self.observer is not None:
            self.observer.failed(f"sink:{sink.name}")
        self._problem(f"{sink.name} switched off: {err}")
        try:  # a recording keeps what was written before the failure
            sink.close()
        except Exception as close_err:  # e.g. "the first 12.0 s were saved": worth telling
            self._problem(f"{sink.name}: {first_line(close_err)}")

    # -- helpers ------------------------------------------------------------------------------------------
    def _problem(self, message: str) -> None:
        log.warning(message)
        if self.on_problem is not None:
            self.on_problem(message)

    def _finish(self) -> None:
        self.stats.dropped = self.queue_drops()
        if any(t.is_alive() for t in self._threads):
            log.warning("a pipeline thread did not stop in time")
        _close_quietly(self.source)
        for sink in self.sinks:
            _close_quietly(sink)
        self.stages.sinks = []


def _close_quietly(thing) -> None:
    try:
        thing.close()
    except Exception as err:  # closing must not turn a stop into a crash
        log.warning("closing %s failed: %s", getattr(thing, "name", thing), err)
