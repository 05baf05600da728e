"""The live pipeline as the window sees it: the core Runner on its own threads, newest frames handed over by a
Qt signal, avatars switched and outputs plugged in while it runs.

The GUI thread never waits here except in ``shutdown()`` (closing the window), which returns within about a
second: starting (opening a camera, preparing a renderer) happens on a worker thread, and frames are never
queued: a new frame replaces the one not yet painted, and at most one signal is in flight. A start or an
avatar switch that ``shutdown()`` overtakes gives up at its next step (a step under way, such as a camera
opening, cannot be interrupted: its result is thrown away), and ``shutdown()`` waits for it within its second.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

import shiboken6
from PySide6.QtCore import QObject, Signal

from avatar_app.errors import first_line
from avatar_app.measure.profiler import HudSnapshot, Profiler, ProfilerSettings
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.calibration import CalibrationSettings
from avatar_app.pipeline.avatar import Avatar
from avatar_app.call.background import BackgroundSettings
from avatar_app.call.picture import CallPicture, CallSettings
from avatar_app.pipeline.frame import Frame
from avatar_app.call.framing import FramingSettings
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.retarget import RetargetSettings
from avatar_app.pipeline.runner import Runner
from avatar_app.pipeline.sources import SourceSettings, open_source, probe_video
from avatar_app.pipeline.stages import StageLoop

log = logging.getLogger(__name__)

CALIBRATION = CalibrationSettings()  # how long the user holds still before the reference is taken


class OutputHub:
    """The one sink the runner sees. Outputs (the virtual camera, a recording) are plugged in and out of it
    while frames flow, and outlive a restart of the pipeline (a new source); their owner opens and closes them.

    After ``remove()`` returns, the output is not written again, so it may be closed at once. An output that
    raises is unplugged and handed to ``on_error`` (from the renderer thread).
    """

    name = "outputs"

    def __init__(self, on_error: Callable[[object, Exception], None] | None = None):
        self._outputs: list = []
        self._lock = threading.Lock()
        self.on_error = on_error

    def add(self, output) -> None:
        with self._lock:
            if output not in self._outputs:
                self._outputs.append(output)

    def remove(self, output) -> bool:
        with self._lock:  # waits for a write in progress, so the caller may close the output afterwards
            if output in self._outputs:
                self._outputs.remove(output)
                return True
            return False

    def __contains__(self, output) -> bool:
        with self._lock:
            return output in self._outputs

    def __len__(self) -> int:
        with self._lock:
            return len(self._outputs)

    def process(self, frame: Frame) -> None:
        """The sink stage: every plugged-in output gets the call's picture (the framed avatar)."""
        failed = []
        with self._lock:
            for output in list(self._outputs):
                try:  # every output is a sink stage: it takes the frame (a recording keeps its driver moment)
                    output.process(frame)
                except Exception as err:  # that output is unplugged; the others, and the previews, go on
                    self._outputs.remove(output)
                    failed.append((output, err))
        for output, err in failed:
            log.warning("%s switched off: %s", getattr(output, "name", output), err)
            if self.on_error is not None:
                self.on_error(output, err)

    def close(self) -> None:
        """The runner stops: the outputs stay with their owner (they may go on with the next pipeline)."""


class LivePipeline(QObject):
    """Owns one Runner at a time. Signals arrive on the GUI thread:

    ``frame_ready``: a new frame waits in ``take_frame()`` (at most one signal is pending at a time);
    ``started(str)``: the pipeline runs (a description of the source); ``start_failed(str)``: the source or the
    avatar could not be opened (one line); ``problem(str)``: something went wrong while running (a source
    that stopped, an output switched off); ``output_failed(object, str)``: that output was unplugged;
    ``avatar_switched(object)`` / ``avatar_failed(str)``: a new avatar, size or renderer is (not) in use.
    """

    frame_ready = Signal()
    started = Signal(str)
    start_failed = Signal(str)
    problem = Signal(str)
    output_failed = Signal(object, str)
    avatar_switched = Signal(object)
    avatar_failed = Signal(str)

    def __init__(self, parent: QObject | None = None, hud_window: int = 60):
        super().__init__(parent)
        self.hub = OutputHub(self._output_error)
        self.profiler = Profiler(ProfilerSettings(window=hud_window, keep_record=False))
        self._lock = threading.Lock()
        self._control = threading.Lock()  # one start or switch at a time, in request order
        self._runner: Runner | None = None
        self._stages: StageLoop | None = None
        self._generation = 0  # bumped by every start() and shutdown(); a start that finds it moved gives up
        self._workers: set[threading.Thread] = set()  # start and switch threads not yet ended
        self._avatar_generation = 0
        self._avatar: Avatar | None = None
        self._render = RenderSettings()
        self._call = CallPicture(CallSettings())  # the call's picture: framing, background, compositing
        self._motion = RetargetSettings()
        self._smoothing: float | None = None  # the tracker's cutoff at rest (Hz); None: its default
        self._newest: Frame | None = None
        self._signal_pending = False
        self.last_problem: str | None = None

    # -- what the window asks ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        with self._lock:
            runner = self._runner
        return runner is not None and runner.running

    @property
    def runner(self) -> Runner | None:
        with self._lock:
            return self._runner

    @property
    def stages(self) -> StageLoop | None:
        """The running stage loop (None when nothing runs); its ``animator`` is the avatar animated now."""
        with self._lock:
            return self._stages

    @property
    def output_size(self) -> tuple[int, int] | None:
        stages = self.stages
        return None if stages is None else stages.animator.output_size

    @property
    def renderer(self):
        """The renderer animating now (None when nothing runs)."""
        stages = self.stages
        return None if stages is None else stages.animator.renderer

    def set_avatar(self, avatar: Avatar, render: RenderSettings) -> None:
        """Animate ``avatar`` with ``render`` settings: now if running (prepared off the GUI thread), else at
        the next start()."""
        with self._lock:
            self._avatar, self._render = avatar, render
            self._avatar_generation += 1
            generation, running = self._avatar_generation, self._stages is not None
        if running:
            self._spawn("switch", lambda: self._switch(generation))

    def set_framing(self, framing: FramingSettings) -> None:
        """The call's picture from now on (the running stage loop switches once its layers are ready)."""
        with self._lock:
            settings = CallSettings(framing, self._call.settings.background)
        self._use_call(settings)

    def set_background(self, background: BackgroundSettings) -> None:
        """What shows behind the avatar from now on. The still layers are made once per avatar and choice
        (cutting out the person, the first time, takes a tenth of a second or so): a worker does it and the
        running stage loop swaps to the new stage once it is ready, so no frame waits for it."""
        with self._lock:
            settings = CallSettings(self._call.settings.framing, background)
        self._use_call(settings)

    def _use_call(self, settings: CallSettings) -> None:
        with self._lock:
            stage = self._call = self._call.with_settings(settings)
            stages = self._stages
        if stages is not None:
            self._spawn("call picture", lambda: self._swap_call(stage, stages))

    def _swap_call(self, stage: CallPicture, stages: StageLoop) -> None:
        stage.prepare(stages.animator)
        with self._lock:  # not if another choice was made meanwhile, or the pipeline restarted
            if self._call is stage and self._stages is stages:
                stages.call = stage  # one reference swap: the renderer thread takes old or new

    def set_motion(self, motion: RetargetSettings, smoothing: float | None = None) -> None:
        """How the avatar follows (strengths, eyes, mouth, gaze) and how much the tracker smooths (cutoff, Hz):
        from the next frame on, and for every avatar after."""
        with self._lock:
            self._motion, self._smoothing = motion, smoothing
            stages = self._stages
        if stages is not None:
            self._apply_motion(stages)

    def _apply_motion(self, stages: StageLoop) -> None:
        stages.animator.set_motion(self._motion)
        if self._smoothing is not None:
            stages.tracker.set_smoothing(self._smoothing)

    @property
    def sound_source(self) -> Path | None:
        """The running driver video when it has sound (recordings take it), else None (a camera, the demo)."""
        runner = self.runner
        path = getattr(runner.source, "path", None) if runner is not None else None
        if path is None or not Path(path).is_file():
            return None
        try:
            return Path(path) if probe_video(path).has_audio else None
        except Exception:  # noqa: BLE001 - a file that cannot be probed records silently
            return None

    @property
    def source_fps(self) -> float | None:
        """The running source's frame rate (what the pipeline delivers at most), None when nothing runs."""
        runner = self.runner
        return None if runner is None else runner.source.fps

    def start(self, spec: str, camera_fps: float | None = None) -> None:
        """Stop what runs and start reading ``spec`` (a camera index or a video file, played in a loop)."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        self._spawn("start", lambda: self._start(generation, spec, camera_fps))

    def calibrate(self) -> bool:
        """The next driver frame with a face becomes the reference pose; False when nothing runs."""
        stages = self.stages
        if stages is None:
            return False
        stages.calibrate()
        return True

    def take_frame(self) -> Frame | None:
        """The newest frame not yet taken (older ones were replaced, never queued)."""
        with self._lock:
            frame, self._newest = self._newest, None
            self._signal_pending = False
        return frame

    def hud(self) -> HudSnapshot:
        return self.profiler.snapshot()

    def shutdown(self, timeout: float = 1.0) -> None:
        """Stop everything; returns within about ``timeout`` seconds. Outputs in the hub stay open (their owner
        closes them).

        A start or switch under way gives up at its next step; it is waited for until the timeout, and one
        stuck in a step that cannot be interrupted (a camera that takes long to open) ends on its own when
        that step returns, having started nothing."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._generation += 1
            self._avatar_generation += 1
            runner, self._runner = self._runner, None
            stages, self._stages = self._stages, None
            workers = list(self._workers)
        if runner is not None:
            runner.stop()
        if stages is not None:
            stages.close()
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))

    # -- worker side ----------------------------------------------------------------------------------------
    def _spawn(self, name: str, work: Callable[[], None]) -> None:
        def body() -> None:
            try:
                work()
            finally:
                with self._lock:
                    self._workers.discard(threading.current_thread())

        thread = threading.Thread(target=body, name=f"avatar-ui-{name}", daemon=True)
        with self._lock:
            self._workers.add(thread)
        try:
            thread.start()
        except BaseException:  # no thread to wait for at shutdown
            with self._lock:
                self._workers.discard(thread)
            raise

    def _current(self, generation: int) -> bool:
        """False once another start() or shutdown() came after the start of this ``generation``."""
        with self._lock:
            return generation == self._generation

    def _start(self, generation: int, spec: str, camera_fps: float | None) -> None:
        with self._control:
            if not self._current(generation):
                return
            with self._lock:
                old_runner, self._runner = self._runner, None
                old_stages, self._stages = self._stages, None
            if old_runner is not None:
                old_runner.stop()
            if old_stages is not None:
                old_stages.close()
            with self._lock:
                avatar, render, avatar_generation = self._avatar, self._render, self._avatar_generation
            if avatar is None:
                self._emit(self.start_failed, "choose an avatar first")
                return
            source = stages = None
            try:
                camera = spec.isdigit()
                source = open_source(SourceSettings(spec, loop=True, paced=True, fps=camera_fps if camera else None))
                # Opening a camera may take seconds: if the window closed or another source was chosen
                # meanwhile, the renderer (slow too: a model to load, numba to compile) is not prepared.
                if self._current(generation):
                    # guided: the reference pose is taken once the user has looked ahead and held still
                    with self._lock:
                        call = self._call
                    stages = StageLoop(Animator(avatar, render, self._motion, guided=True, calibration=CALIBRATION),
                                       call=call)
                    call.prepare(stages.animator)  # the layers made here, not on the renderer's thread
                    self._apply_motion(stages)
            except Exception as err:  # noqa: BLE001 - one line to the window, whatever went wrong
                if source is not None:
                    source.close()
                if self._current(generation):  # nobody waits for a start that was overtaken
                    self._emit(self.start_failed, first_line(err))
                return
            if stages is None:
                source.close()
                return
            runner = Runner(source, stages, [self.hub], on_frame=self._on_frame, on_problem=self._on_problem,
                            observer=self.profiler)
            self.profiler.reset()
            self.last_problem = None
            with self._lock:
                current = generation == self._generation
                if current:
                    runner.start()
                    self._runner, self._stages = runner, stages
                chosen = self._call
            if current and stages.call is not chosen:  # one chosen while this start was under way
                self._spawn("call picture", lambda: self._swap_call(chosen, stages))
            if not current:  # the window closed or another source was chosen meanwhile
                source.close()
                stages.close()
                return
            w, h = source.size
            kind = f"camera {spec}" if camera else _short(spec)
            self._emit(self.started, f"{kind} ({w}x{h} at {source.fps:.3g} fps)")
            with self._lock:  # the avatar, size or renderer changed while this one was prepared?
                pending = generation == self._generation and avatar_generation != self._avatar_generation
                latest = self._avatar_generation
            if pending:
                self._switch_holding_control(latest)  # this thread already holds self._control

    def _switch(self, generation: int) -> None:
        with self._control:
            self._switch_holding_control(generation)

    def _switch_holding_control(self, generation: int) -> None:
        """Animate the avatar of ``generation`` from the next frame on; the caller holds ``self._control``
        (a plain lock: taking it again here would block this thread for ever)."""
        with self._lock:
            if generation != self._avatar_generation or self._stages is None:
                return
            avatar, render = self._avatar, self._render
        try:
            animator = Animator(avatar, render, self._motion, guided=True, calibration=CALIBRATION)
            with self._lock:
                call = self._call
            call.prepare(animator)  # the new avatar's layers made before its first frame
        except Exception as err:  # noqa: BLE001
            with self._lock:
                current = generation == self._avatar_generation
            if current:  # not for an avatar replaced meanwhile, nor after shutdown()
                self._emit(self.avatar_failed, first_line(err))
            return
        with self._lock:
            stages = self._stages
            if generation != self._avatar_generation or stages is None:
                animator.close()
                return
            stages.switch(animator)  # the old animation is closed once its last frame is drawn
        self.profiler.reset()  # the HUD's figures are for the new renderer only
        self._emit(self.avatar_switched, avatar)

    def _on_frame(self, frame: Frame) -> None:  # the renderer thread
        """The frame message as it is: camera picture, driver landmarks, the avatar that was animated, output."""
        with self._lock:
            self._newest = frame
            pending, self._signal_pending = self._signal_pending, True
        if not pending:
            self._emit(self.frame_ready)
        elif not shiboken6.isValid(self):  # destroyed with a frame still untaken: no emit will ever fail
            self._orphaned()

    def _on_problem(self, message: str) -> None:
        self.last_problem = message
        self._emit(self.problem, message)

    def _output_error(self, output, err: Exception) -> None:
        self._emit(self.output_failed, output, first_line(err))

    def _emit(self, signal, *args) -> None:
        """Emit from a worker thread. If the window was destroyed without being closed (so nobody stopped
        this pipeline), stop it from here instead of letting every frame raise."""
        try:
            signal.emit(*args)
        except RuntimeError:  # "Signal source has been deleted"
            self._orphaned()

    def _orphaned(self) -> None:
        """The window is gone without having closed this pipeline: stop the runner from a thread of its own."""
        with self._lock:
            self._generation += 1
            runner, self._runner = self._runner, None
        if runner is not None:  # stop() joins the runner's threads, so not on one of them
            threading.Thread(target=runner.stop, name="avatar-ui-orphan-stop", daemon=True).start()


def _short(path: str) -> str:
    return Path(path).name
