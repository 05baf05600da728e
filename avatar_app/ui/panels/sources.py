"""The source picker: which camera, video file or the demo face drives the avatar, and starting the pipeline on it
once an avatar is ready; a source that cannot open or stops is said in the camera preview."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from avatar_app.pipeline.sources import DEMO_SPEC
from avatar_app.ui.cameras import find_cameras
from avatar_app.ui.panels.toolbar import combo, select_data
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.tasks import BackgroundTasks

PICK_VIDEO = "\x00pick-video"  # the source list's "Video file…" entry
DEMO_TEXT = "Demo (no camera)"  # the source list's entry for the demo face (pipeline/demo.py)
VIDEO_FILTER = "Videos (*.mp4 *.mov *.mkv *.avi *.webm *.m4v);;All files (*)"
NO_SOURCE_TEXT = ("No camera found.\n\nChoose \u201cDemo (no camera)\u201d in the Source list to see the avatar move "
                  "by itself, or \u201cVideo file\u2026\u201d to drive it with a video of a face (it plays in a loop).")


class SourcePicker(QObject):
    """``source_combo`` lists the cameras found, the demo and the video chosen. The pipeline starts on the chosen
    source once ``avatar_ready()`` was called, and again whenever another source is chosen. With nothing chosen
    before and no camera found, the demo runs (not remembered, so a camera plugged in later wins next time).

    ``camera_text(text)``: there is no camera picture, say this instead; ``stopped(title, text)``: the source
    could not open or ended (for the window's record of messages: the camera preview already says it);
    ``status(text, ms)`` and ``settings_changed`` as in the other panels.
    """

    camera_text = Signal(str)
    stopped = Signal(str, str)
    status = Signal(str, int)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, tasks: BackgroundTasks,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        self.pipeline = pipeline
        self.tasks = tasks
        self._cameras: list[str] = []
        self._running: str | None = None  # the spec last started, until it fails or ends
        self._fallback = ""  # what runs while nothing is chosen: the demo, once a search found no camera
        self._has_avatar = False
        self._closing = False
        self.source_combo = combo([], tip="A camera, the demo face, or a video file played in a loop")
        self.source_combo.setMinimumContentsLength(30)
        self.source_combo.activated.connect(self._activated)
        pipeline.started.connect(self._started)
        pipeline.start_failed.connect(self._start_failed)

    # -- what the window asks -----------------------------------------------------------------------------------
    def look_for_cameras(self, probe: bool = True) -> None:
        """Fill the list with the cameras that open (``probe`` False: assume none and start nothing by itself, as
        tests do)."""
        if probe:
            self.camera_text.emit("Looking for cameras\u2026")
            self.tasks.run("find-cameras", find_cameras, self._cameras_found)
        else:
            self._cameras_found([], None, searched=False)

    def set_source(self, spec: str) -> None:
        """Drive the avatar with camera ``spec`` (an index), the demo ("demo") or a video file (played in a loop)."""
        self.settings.source = str(spec)
        self.settings_changed.emit()
        self._fill()
        self._running = None
        self._ensure_running()

    def avatar_ready(self) -> None:
        """An avatar is chosen and loaded: the source can drive it."""
        self._has_avatar = True
        self._ensure_running()

    def tick(self) -> None:
        """Called regularly: notices a source that ended (a video that cannot loop, a camera unplugged)."""
        if self._closing:
            return
        if self._running and self.pipeline.runner is not None and not self.pipeline.running:
            text = self.pipeline.last_problem or "the source ended"
            self._running = None
            self.camera_text.emit(f"The source stopped: {text}\n\nChoose a source in the Source list to go on.")
            self.stopped.emit("Source stopped", text)

    def shutdown(self) -> None:
        """The window closes: nothing starts any more."""
        self._closing = True

    # -- the list and the pipeline ------------------------------------------------------------------------------
    def _cameras_found(self, cameras: list[str] | None, _err, searched: bool = True) -> None:
        if self._closing:
            return
        self._cameras = list(cameras or [])
        if not self.settings.source and self._cameras:
            self.settings.source = self._cameras[0]
        self._fallback = DEMO_SPEC if searched and not self._cameras else ""
        self._fill()
        if not self._spec():
            self.camera_text.emit(NO_SOURCE_TEXT)
        elif not self._has_avatar:  # the search is over: say what will drive the avatar, not "Looking for cameras"
            self.camera_text.emit(f"Source: {_what(self._spec())}, once the avatar is ready\u2026")
        self._ensure_running()

    def _spec(self) -> str:
        return self.settings.source or self._fallback

    def _fill(self) -> None:
        picker = self.source_combo
        picker.blockSignals(True)
        picker.clear()
        current = self._spec()
        if not current:
            picker.addItem("(no source)", "")
        for index in self._cameras:
            picker.addItem(f"Camera {index}", index)
        if current and current.isdigit() and current not in self._cameras:
            picker.addItem(f"Camera {current} (not found)", current)
        picker.addItem(DEMO_TEXT, DEMO_SPEC)
        if current and not current.isdigit() and current != DEMO_SPEC:
            picker.addItem(f"Video: {Path(current).name}", current)
        picker.addItem("Video file\u2026", PICK_VIDEO)
        select_data(picker, current)
        picker.blockSignals(False)

    def _activated(self, index: int) -> None:
        spec = self.source_combo.itemData(index)
        if spec == PICK_VIDEO:
            parent = self.parent() if isinstance(self.parent(), QWidget) else None
            path, _ = QFileDialog.getOpenFileName(parent, "Drive the avatar with a video", str(Path.home()),
                                                  VIDEO_FILTER)
            if not path:
                self._fill()  # back to what runs
                return
            spec = path
        if spec:
            self.set_source(spec)

    def _ensure_running(self) -> None:
        spec = self._spec()
        if self._closing or not spec or not self._has_avatar or self._running == spec:
            return
        self._running = spec
        self.camera_text.emit(f"Opening {_what(spec)}\u2026")
        self.pipeline.start(spec, camera_fps=self.settings.fps)

    def _started(self, description: str) -> None:
        self.status.emit(f"Driving with {description}", 8000)

    def _start_failed(self, text: str) -> None:
        if self._closing:
            return
        self._running = None
        self.camera_text.emit(f"{text}\n\nChoose another source in the Source list.")
        self.status.emit(f"Source not opened: {text}", 15000)
        self.stopped.emit("Source not opened", text)


def _what(spec: str) -> str:
    """A source in the user's words: "camera 0", "the demo", "clip.mp4"."""
    return "camera " + spec if spec.isdigit() else "the demo" if spec == DEMO_SPEC else Path(spec).name
