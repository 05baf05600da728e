"""The main window: the avatar gallery beside the camera and avatar previews, with the toolbars a video call needs.

The window only assembles the panels (ui/panels/) and wires them to each other and to the LivePipeline; it owns
the toolbars, the status bar and messages, and closing, which stops everything within about a second.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QMessageBox, QSplitter, QToolBar, QVBoxLayout, QWidget

from avatar_app.ui.library import AvatarLibrary
from avatar_app.ui.panels.background import BackgroundPicker
from avatar_app.ui.panels.controls import MotionControls
from avatar_app.ui.panels.doctor import SetupCheck
from avatar_app.ui.panels.gallery import AvatarGallery
from avatar_app.ui.panels.hud import Hud
from avatar_app.ui.panels.outputs import Outputs
from avatar_app.ui.panels.previews import Previews
from avatar_app.ui.panels.renderer import RendererPicker
from avatar_app.ui.panels.sources import SourcePicker
from avatar_app.ui.panels.toolbar import action
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.tasks import BackgroundTasks

TICK_MS = 500  # the HUD, the recording's clock and the check for a source that ended


@dataclass(frozen=True)
class StartOptions:
    """What `avatar-app gui` was given: each overrides the remembered setting for this run."""

    source: str | None = None
    avatar: Path | None = None  # a portrait or an .avatar file
    virtual_camera: bool = False
    size: int | None = None


def default_store() -> QSettings:
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "avatar_app", "avatar_app")


def default_data_dir() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(location or Path.home() / ".avatar_app")


def default_recordings_dir() -> Path:
    movies = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return Path(movies or Path.home()) / "avatar_app"


def _on_panel(panel: str, name: str) -> property:
    """A window attribute that lives on one of its panels (the app and tests reach it from the window)."""
    return property(lambda self: getattr(getattr(self, panel), name), doc=f"``self.{panel}.{name}``")


class MainWindow(QMainWindow):
    """``store``: where settings live (tests give an ini file in a temporary folder). ``notify(title, text)``:
    how messages are shown (default: a non-modal message box; every message is also kept in ``messages``).
    ``probe_cameras``: look for cameras at start (off in tests)."""

    gallery = _on_panel("avatars", "list_widget")
    entries = _on_panel("avatars", "entries")
    choose = _on_panel("avatars", "choose")
    add_files = _on_panel("avatars", "add_files")
    avatar = _on_panel("avatars", "avatar")
    camera_view = _on_panel("previews", "camera_view")
    avatar_view = _on_panel("previews", "avatar_view")
    frames_shown = _on_panel("previews", "frames_shown")
    mirror_action = _on_panel("previews", "mirror_action")
    overlay_action = _on_panel("previews", "overlay_action")
    source_combo = _on_panel("sources", "source_combo")
    set_source = _on_panel("sources", "set_source")
    renderer_combo = _on_panel("renderers", "renderer_combo")
    size_combo = _on_panel("renderers", "size_combo")
    mouth_combo = _on_panel("renderers", "mouth_combo")
    render_settings = _on_panel("renderers", "render_settings")
    hud_action = _on_panel("hud", "action")
    last_hud = _on_panel("hud", "last_lines")
    vcam_action = _on_panel("outputs", "vcam_action")
    vcam_label = _on_panel("outputs", "vcam_label")
    camera_size_combo = _on_panel("outputs", "camera_size_combo")
    fps_combo = _on_panel("outputs", "fps_combo")
    record_action = _on_panel("outputs", "record_action")

    def __init__(
        self,
        store: QSettings | None = None,
        data_dir: Path | None = None,
        recordings_dir: Path | None = None,
        options: StartOptions = StartOptions(),
        notify: Callable[[str, str], None] | None = None,
        probe_cameras: bool = True,
    ):
        super().__init__()
        self.store = store if store is not None else default_store()
        self.settings = s = AppSettings.load(self.store)
        remembered = s.avatar  # chosen again if options.avatar cannot be used
        if options.source is not None:
            s.source = str(options.source)
        if options.avatar is not None:
            s.avatar = str(Path(options.avatar).resolve())
        if options.size is not None:
            s.size = int(options.size)
        data_dir = data_dir if data_dir is not None else default_data_dir()
        self.notify = notify
        self.messages: list[tuple[str, str]] = []
        self._closing = False
        self.tasks = BackgroundTasks(self)
        self.pipeline = p = LivePipeline(self)

        self.avatars = AvatarGallery(s, AvatarLibrary(data_dir), self.tasks)
        self.previews = Previews(s, p)
        self.sources = SourcePicker(s, p, self.tasks, self)
        self.renderers = RendererPicker(s, p, data_dir, self)
        self.hud = Hud(s, p, self.renderers.label, self)
        self.outputs = Outputs(s, p, self.tasks, recordings_dir if recordings_dir is not None
                               else default_recordings_dir(), self)
        self.setup_check = SetupCheck(s, p, self.outputs, self.tasks, self)  # Help > Check set-up… (doctor)
        self.controls = MotionControls(s, p)
        self.background = BackgroundPicker(s, p)  # what shows behind the avatar (keep, blur, a colour)
        self.background.settings_changed.connect(self._save_settings)
        self.calibrate_action = action(self, "Calibrate", "C",
                                       tip="Look straight at the camera and hold still: that pose becomes the "
                                           "portrait's own pose (C)")
        self.quit_action = action(self, "Quit", "Ctrl+Q", tip="Close the app (Ctrl+Q)")
        self._build()
        self._connect()

        self.avatars.refresh(select=s.avatar or None, fallback=remembered or None)
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        for panel in (self.sources, self.hud, self.outputs):
            self._timer.timeout.connect(panel.tick)
        self._timer.start()
        self.sources.look_for_cameras(probe_cameras)
        if options.virtual_camera:
            self.outputs.vcam_action.setChecked(True)

    # -- layout and wiring --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setWindowTitle("avatar_app")
        self.setAcceptDrops(True)
        previews, outputs = self.previews, self.outputs
        self._toolbar("Driver", [QLabel(" Source: "), self.sources.source_combo, previews.mirror_action, None,
                                 self.calibrate_action, previews.overlay_action, self.hud.action])
        self.addToolBarBreak()
        self._toolbar("Output", [QLabel(" Renderer: "), self.renderers.renderer_combo, QLabel(" Size: "),
                                 self.renderers.size_combo, self.renderers.mouth_combo, None, outputs.vcam_action, outputs.camera_size_combo,
                                 outputs.fps_combo, outputs.framing_combo, None, outputs.record_action,
                                 outputs.microphone_combo, outputs.folder_action])
        left = QWidget()
        column = QVBoxLayout(left)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.avatars, 1)
        column.addWidget(self.controls)
        column.addWidget(self.background)
        for item in (*self.avatars.pick_actions, self.quit_action):
            self.addAction(item)
        self.menuBar().addMenu("&Help").addAction(self.setup_check.action)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(previews)
        split.setStretchFactor(1, 1)
        split.setSizes([190, 1000])
        self.setCentralWidget(split)
        self.statusBar().addPermanentWidget(outputs.record_label)
        self.statusBar().addPermanentWidget(outputs.vcam_label)
        self.resize(1280, 760)

    def _toolbar(self, title: str, items: list[QWidget | QAction | None]) -> None:
        """A fixed toolbar of ``items`` (None: a separator). Its actions are the window's too, so their
        shortcuts work wherever the keyboard focus is."""
        bar = QToolBar(title, self)
        bar.setObjectName(f"{title.lower()}-bar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        for item in items:
            if item is None:
                bar.addSeparator()
            elif isinstance(item, QAction):
                self.addAction(item)
                bar.addAction(item)
            else:
                bar.addWidget(item)

    def _connect(self) -> None:
        panels = (self.avatars, self.previews, self.sources, self.renderers, self.hud, self.outputs, self.controls)
        for panel in panels:
            panel.settings_changed.connect(self._save_settings)
            if hasattr(panel, "status"):
                panel.status.connect(self.statusBar().showMessage)
            if hasattr(panel, "message"):
                panel.message.connect(self.show_message)
        self.avatars.avatar_loaded.connect(self._avatar_loaded)
        self.renderers.changed.connect(self._animate)
        self.renderers.restored.connect(self._animate)
        self.sources.camera_text.connect(self.previews.show_text)
        self.sources.stopped.connect(self._note)
        self.hud.changed.connect(self.previews.avatar_view.set_hud)
        self.calibrate_action.triggered.connect(self.calibrate)
        self.setup_check.status.connect(self.statusBar().showMessage)
        self.quit_action.triggered.connect(self.close)
        self.pipeline.problem.connect(self._problem)

    # -- the avatar ---------------------------------------------------------------------------------------------
    def _avatar_loaded(self, _avatar) -> None:
        self._animate()
        self.sources.avatar_ready()

    def _animate(self) -> None:
        """Hand the chosen avatar, with the chosen renderer and size, to the pipeline; until a source runs,
        the avatar preview shows the portrait itself."""
        avatar = self.avatars.avatar
        if avatar is None:
            return
        if not self.pipeline.running:
            self.previews.show_still(avatar, self.settings.size)
        self.pipeline.set_avatar(avatar, self.renderers.render_settings())

    def calibrate(self) -> None:
        if self.pipeline.calibrate():
            self.statusBar().showMessage("Calibrating: look straight at the camera and hold still", 5000)
        else:
            self.statusBar().showMessage("Nothing to calibrate: no source is running", 5000)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        self.avatars.accept_drag(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        self.avatars.drop(event)

    # -- messages -----------------------------------------------------------------------------------------------
    def _note(self, title: str, text: str) -> None:
        """Kept with the messages, not shown in a box: the panel that saw it already says it."""
        self.messages.append((title, text))

    def _problem(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)

    def show_message(self, title: str, text: str, details: str | None = None, technical: str | None = None) -> None:
        """Tell the user, without blocking: a non-modal box (or the injected ``notify``), and the status bar.

        ``details``: steps to follow (lines indented by four spaces are commands, shown in a fixed font so they
        can be copied whole); ``technical``: the raw reason, behind the box's "Show Details" button."""
        full = "\n\n".join(part for part in (text, details, technical) if part)
        self.messages.append((title, full))
        self.statusBar().showMessage(f"{title}: {text}" if details is None else f"{title}: see the message", 15000)
        if self._closing:
            return
        if self.notify is not None:
            self.notify(title, full)
            return
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setInformativeText(_steps_html(details))
        if technical:
            box.setDetailedText(technical)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.show()

    # -- settings and closing -----------------------------------------------------------------------------------
    def _save_settings(self) -> None:
        self.settings.save(self.store)

    def shutdown(self) -> None:
        """Stop the pipeline and close the outputs (a recording is finished); returns within about a second.
        Closing the window calls it; so does the app after its event loop ends, however that happened."""
        if self._closing:
            return
        self._closing = True
        self._timer.stop()
        self.tasks.cancel_all()
        for panel in (self.avatars, self.previews, self.sources, self.hud):
            panel.shutdown()
        self._save_settings()
        self.pipeline.shutdown()
        self.outputs.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)


def _steps_html(text: str) -> str:
    """Plain steps as rich text: lines indented by four spaces become commands in a fixed font."""
    out = []
    for line in text.splitlines():
        safe = html.escape(line.strip())
        if line.startswith("    "):
            out.append(f'<p style="margin: 2px 0 2px 18px; font-family: monospace; white-space: pre-wrap;">{safe}</p>')
        else:
            out.append(f'<p style="margin: 4px 0;">{safe}</p>')
    return "".join(out)
