"""The main window: avatar gallery, camera and avatar side by side, and the controls a video call needs.

The window binds to settings and to the LivePipeline; it never touches landmarks or images beyond painting
them. Everything slow runs on worker threads and comes back by signal; closing stops it all within a second.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings, QSize, QStandardPaths, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from avatar_app.pipeline.avatar import Avatar
from avatar_app.errors import AvatarAppError, first_line
from avatar_app.pipeline.render.base import BACKENDS, RenderSettings, output_size
from avatar_app.pipeline.render.neural import shipped_models_dir
from avatar_app.pipeline.virtual_camera import VirtualCameraError, VirtualCameraSettings, VirtualCameraSink
from avatar_app.ui.cameras import find_cameras
from avatar_app.ui.library import FILE, AvatarLibrary, GalleryEntry, thumbnail
from avatar_app.ui.outputs import Recording, recording_path
from avatar_app.ui.overlay import alignment_overlay
from avatar_app.pipeline.frame import Frame
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import CAMERA_SIZES, FRAME_RATES, RENDER_SIZES, AppSettings
from avatar_app.ui.tasks import BackgroundTasks
from avatar_app.ui.widgets import FrameView, to_pixmap

log = logging.getLogger(__name__)

PICK_VIDEO = "\x00pick-video"  # the source list's "Video file…" entry
VIDEO_FILTER = "Videos (*.mp4 *.mov *.mkv *.avi *.webm *.m4v);;All files (*)"
PORTRAIT_FILTER = "Portraits (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.avatar);;All files (*)"
NO_SOURCE_TEXT = ("No camera found.\n\nChoose \u201cVideo file\u2026\u201d in the Source list to drive the avatar "
                  "with a video of a face (it plays in a loop).")
# Besides the shipped models (package data): a checkout's export/ folder, where `avatar-app export` puts them.
MODELS_IN_REPO = Path(__file__).resolve().parents[2] / "export"
HUD_INTERVAL_MS = 500
WARM_UP_MS = 2000


def renderer_choices(model_dirs: list[Path]) -> list[tuple[str, str | None]]:
    """(label, setting) for each renderer that can run: the mesh always, the neural one once per exported
    model folder found in ``model_dirs`` (a folder with a manifest.json); setting None: listed, not usable."""
    out: list[tuple[str, str | None]] = []
    for backend in BACKENDS:
        if backend != "neural":
            out.append((backend, backend))
            continue
        found = {m.parent.resolve(): m.parent for d in model_dirs if d.is_dir() for m in d.glob("*/manifest.json")
                 if not m.parent.name.startswith(".")}  # hidden: an export's temp or old folder
        models = sorted(found.values(), key=lambda m: (m.name, str(m)))
        out += [(f"neural: {m.name}", f"neural:{m}") for m in models]
        if not models:
            out.append(("neural (no exported model)", None))
    return out


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


class MainWindow(QMainWindow):
    """``store``: where settings live (tests give an ini file in a temporary folder). ``notify(title, text)``:
    how messages are shown (default: a non-modal message box; every message is also kept in ``messages``).
    ``probe_cameras``: look for cameras at start (off in tests)."""

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
        self.settings = AppSettings.load(self.store)
        if options.source is not None:
            self.settings.source = str(options.source)
        if options.avatar is not None:
            self.settings.avatar = str(Path(options.avatar).resolve())
        if options.size is not None:
            self.settings.size = int(options.size)
        self.library = AvatarLibrary(data_dir if data_dir is not None else default_data_dir())
        self.recordings_dir = recordings_dir if recordings_dir is not None else default_recordings_dir()
        self.notify = notify
        self.messages: list[tuple[str, str]] = []
        self.tasks = BackgroundTasks(self)
        self.pipeline = LivePipeline(self)
        self.avatar: Avatar | None = None
        self._avatar_request = 0
        self._cameras: list[str] = []
        self._source_running: str | None = None  # the spec last started, until it fails or ends
        self._vcam: VirtualCameraSink | None = None
        self._vcam_request = 0
        self._recording: Recording | None = None
        self._closing = False
        self.frames_shown = 0
        self.last_hud: list[str] = []

        self.setWindowTitle("avatar_app")
        self.setAcceptDrops(True)
        self._build()
        self._connect()
        self._refresh_gallery(select=self.settings.avatar or None)

        self._timer = QTimer(self)
        self._timer.setInterval(HUD_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

        if probe_cameras:
            self.camera_view.set_placeholder("Looking for cameras\u2026")
            self.tasks.run("find-cameras", find_cameras, self._cameras_found)
        else:
            self._cameras_found([], None)
        if options.virtual_camera:
            self.vcam_action.setChecked(True)

    # -- layout -------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.settings
        bar = QToolBar("Driver", self)
        bar.setObjectName("driver-bar")
        bar.setMovable(False)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, bar)
        bar.addWidget(QLabel(" Source: "))
        self.source_combo = QComboBox()
        self.source_combo.setMinimumContentsLength(30)
        self.source_combo.setToolTip("A camera, or a video file played in a loop")
        bar.addWidget(self.source_combo)
        self.mirror_action = self._action("Mirror previews", checkable=True, checked=s.mirror,
                                          tip="Show the previews as a mirror (what call apps send is never mirrored)")
        bar.addAction(self.mirror_action)
        bar.addSeparator()
        self.calibrate_action = self._action("Calibrate", "C",
                                             tip="Your current pose becomes the portrait's own pose (C)")
        bar.addAction(self.calibrate_action)
        self.overlay_action = self._action("Alignment overlay", "O", checkable=True, checked=s.overlay,
                                           tip="Ghost the portrait over the camera, to match its pose before"
                                               " calibrating (O)")
        bar.addAction(self.overlay_action)
        self.hud_action = self._action("HUD", "H", checkable=True, checked=s.hud,
                                       tip="Frames per second and milliseconds per stage over the avatar (H)")
        bar.addAction(self.hud_action)

        out = QToolBar("Output", self)
        out.setObjectName("output-bar")
        out.setMovable(False)
        self.addToolBarBreak()
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, out)
        out.addWidget(QLabel(" Renderer: "))
        self.renderer_combo = QComboBox()
        self.renderer_combo.setToolTip("mesh: warps the portrait, no model needed. neural: an exported model"
                                       " (export/NAME or the data folder's models/NAME)")
        choices = renderer_choices([shipped_models_dir(), MODELS_IN_REPO, self.library.folder.parent / "models"])
        for label, value in choices:
            self.renderer_combo.addItem(label, value)
            if value is None:  # listed so the user knows it exists, but there is nothing to run it with
                item = self.renderer_combo.model().item(self.renderer_combo.count() - 1)
                item.setEnabled(False)
        if self.renderer_combo.findData(s.renderer) < 0:
            s.renderer = "mesh"
        self._select_data(self.renderer_combo, s.renderer)
        self._render_ok = (s.renderer, s.size)  # what last worked, to fall back to when a choice fails
        out.addWidget(self.renderer_combo)
        out.addWidget(QLabel(" Size: "))
        self.size_combo = QComboBox()
        for size in sorted(set(RENDER_SIZES) | {s.size}):
            self.size_combo.addItem(f"{size} px", size)
        self._select_data(self.size_combo, s.size)
        self.size_combo.setToolTip("The avatar's longer side in pixels: smaller is faster")
        out.addWidget(self.size_combo)
        out.addSeparator()
        self.vcam_action = self._action("Virtual camera", "Space", checkable=True,
                                        tip="Send the avatar to a virtual camera that call apps can choose (Space)")
        out.addAction(self.vcam_action)
        self.camera_size_combo = QComboBox()
        for size in CAMERA_SIZES:
            self.camera_size_combo.addItem(size.replace("x", " \u00d7 "), size)
        self._select_data(self.camera_size_combo, s.camera_size)
        self.camera_size_combo.setToolTip("The virtual camera's picture size")
        out.addWidget(self.camera_size_combo)
        self.fps_combo = QComboBox()
        for fps in FRAME_RATES:
            self.fps_combo.addItem(f"{fps} fps", fps)
        self._select_data(self.fps_combo, s.fps)
        self.fps_combo.setToolTip("Frame rate of the virtual camera and of recordings")
        out.addWidget(self.fps_combo)
        out.addSeparator()
        self.record_action = self._action("Record", "R", checkable=True,
                                          tip="Record the avatar to an MP4 while it runs (R)")
        out.addAction(self.record_action)
        for combo in (self.source_combo, self.renderer_combo, self.size_combo, self.camera_size_combo, self.fps_combo):
            # Keyboard focus stays on the window, so C, O, H, R and Space always reach their actions.
            combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)

        # Gallery on the left, the two previews beside it.
        gallery = QWidget()
        g = QVBoxLayout(gallery)
        g.setContentsMargins(6, 6, 6, 6)
        title = QLabel("<b>Avatars</b>")
        g.addWidget(title)
        self.gallery = QListWidget()
        self.gallery.setIconSize(self._icon_size())
        self.gallery.setSpacing(2)
        self.gallery.setWordWrap(True)
        self.gallery.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.gallery.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.gallery.setToolTip("Click a portrait to animate it. Drop photos on the window to add your own.")
        g.addWidget(self.gallery, 1)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add\u2026")
        self.add_button.setToolTip("Add photos or paintings with a face (or drop them on the window)")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove one of your own avatars")
        for b in (self.add_button, self.remove_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(b)
        g.addLayout(buttons)
        hint = QLabel("Drop photos here to add them")
        hint.setStyleSheet("color: gray")
        g.addWidget(hint)

        previews = QWidget()
        p = QHBoxLayout(previews)
        p.setContentsMargins(6, 6, 6, 6)
        self.camera_view = FrameView("Starting\u2026")
        self.avatar_view = FrameView("Choose an avatar")
        for label, view in (("You", self.camera_view), ("Avatar", self.avatar_view)):
            column = QVBoxLayout()
            column.addWidget(QLabel(f"<b>{label}</b>"))
            column.addWidget(view, 1)
            p.addLayout(column, 1)
        self.camera_view.set_mirrored(s.mirror)
        self.avatar_view.set_mirrored(s.mirror)

        split = QSplitter()
        split.addWidget(gallery)
        split.addWidget(previews)
        split.setStretchFactor(1, 1)
        split.setSizes([190, 1000])
        self.setCentralWidget(split)

        self.vcam_label = QLabel("Virtual camera: off")
        self.record_label = QLabel("")
        self.statusBar().addPermanentWidget(self.record_label)
        self.statusBar().addPermanentWidget(self.vcam_label)
        self.resize(1280, 760)

    def _action(self, text: str, shortcut: str | None = None, checkable: bool = False, checked: bool = False,
                tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.setText(f"{text} ({shortcut})")
        action.setCheckable(checkable)
        action.setChecked(checked)
        action.setToolTip(tip or text)
        self.addAction(action)
        return action

    def _icon_size(self) -> QSize:
        return QSize(72, 72)

    @staticmethod
    def _select_data(combo: QComboBox, value) -> None:
        index = combo.findData(value)
        if index >= 0:
            combo.setCurrentIndex(index)

    def _connect(self) -> None:
        self.source_combo.activated.connect(self._source_activated)
        self.mirror_action.toggled.connect(self._mirror_toggled)
        self.calibrate_action.triggered.connect(self.calibrate)
        self.overlay_action.toggled.connect(self._overlay_toggled)
        self.hud_action.toggled.connect(self._hud_toggled)
        self.renderer_combo.currentIndexChanged.connect(self._render_changed)
        self.size_combo.currentIndexChanged.connect(self._render_changed)
        self.vcam_action.toggled.connect(self._vcam_toggled)
        self.camera_size_combo.currentIndexChanged.connect(self._vcam_format_changed)
        self.fps_combo.currentIndexChanged.connect(self._vcam_format_changed)
        self.record_action.toggled.connect(self._record_toggled)
        self.gallery.currentItemChanged.connect(self._gallery_changed)
        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self._remove_clicked)
        p = self.pipeline
        p.frame_ready.connect(self._show_newest)
        p.started.connect(self._started)
        p.start_failed.connect(self._start_failed)
        p.problem.connect(self._problem)
        p.output_failed.connect(self._output_failed)
        p.avatar_switched.connect(self._avatar_switched)
        p.avatar_failed.connect(self._avatar_failed)

    # -- messages -----------------------------------------------------------------------------------------------
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

    # -- gallery ------------------------------------------------------------------------------------------------
    def _refresh_gallery(self, select: str | None = None) -> None:
        extra = [self.settings.avatar] if self.settings.avatar else []
        entries = self.library.entries(extra=extra)
        self.gallery.blockSignals(True)
        self.gallery.clear()
        chosen = None
        for entry in entries:
            item = QListWidgetItem(entry.name)
            thumb = thumbnail(entry.path, 72)
            if thumb is not None:
                item.setIcon(QIcon(to_pixmap(thumb)))
            item.setData(Qt.ItemDataRole.UserRole, entry)
            item.setToolTip(str(entry.path))
            self.gallery.addItem(item)
            if select is not None and entry.key == select:
                chosen = item
        if chosen is None and self.gallery.count():
            names = [self.gallery.item(i).data(Qt.ItemDataRole.UserRole).path.stem for i in range(self.gallery.count())]
            chosen = self.gallery.item(names.index("mona_lisa") if "mona_lisa" in names else 0)
        self.gallery.blockSignals(False)
        if chosen is not None:
            self.gallery.setCurrentItem(chosen)  # loads it (the signal is live again)

    def entries(self) -> list[GalleryEntry]:
        return [self.gallery.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.gallery.count())]

    def choose(self, entry_or_name) -> None:
        """Select a gallery entry (or the first whose name or file name contains the text)."""
        for i in range(self.gallery.count()):
            entry = self.gallery.item(i).data(Qt.ItemDataRole.UserRole)
            words = f"{entry.name} {entry.path.name}".lower()
            if entry == entry_or_name or (isinstance(entry_or_name, str) and entry_or_name.lower() in words):
                self.gallery.setCurrentRow(i)
                return
        raise KeyError(entry_or_name)

    def _gallery_changed(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        entry: GalleryEntry = item.data(Qt.ItemDataRole.UserRole)
        self.remove_button.setEnabled(entry.removable)
        self.settings.avatar = entry.key
        self._save_settings()
        self._avatar_request += 1
        request = self._avatar_request
        self.statusBar().showMessage(f"Loading {entry.name}\u2026")
        self.tasks.run("load-avatar", lambda: self.library.load(entry),
                       lambda avatar, err: self._avatar_loaded(request, entry, avatar, err))

    def _avatar_loaded(self, request: int, entry: GalleryEntry, avatar: Avatar | None, err) -> None:
        if request != self._avatar_request or self._closing:
            return  # another portrait was chosen meanwhile
        if err is not None:
            self.show_message("Cannot use this portrait", first_line(err))
            if entry.kind == FILE:  # given on the command line: not offered again next time
                self.settings.avatar = ""
                self._save_settings()
            return
        self.avatar = avatar
        self.statusBar().showMessage(f"Avatar: {entry.name}", 5000)
        if not self.pipeline.running:
            self._show_still_portrait()
        self.pipeline.set_avatar(avatar, self.render_settings())
        self._ensure_running()

    def _show_still_portrait(self) -> None:
        import cv2

        if self.avatar is None:
            return
        w, h = output_size(self.avatar.size, self.settings.size)
        self.avatar_view.set_image(cv2.resize(self.avatar.image, (w, h), interpolation=cv2.INTER_AREA))

    def add_files(self, paths: list[str | Path]) -> None:
        """Make each picture one of the user's avatars (faces are found off the GUI thread)."""
        for path in paths:
            path = Path(path)
            self.statusBar().showMessage(f"Adding {path.name}\u2026")
            self.tasks.run("add-avatar", lambda p=path: self.library.add(p),
                           lambda entry, err, p=path: self._file_added(p, entry, err))

    def _file_added(self, path: Path, entry: GalleryEntry | None, err) -> None:
        if self._closing:
            return
        if err is not None:
            self.show_message("Cannot add this picture", first_line(err))
            return
        self.statusBar().showMessage(f"Added {entry.name} to your avatars", 5000)
        self._refresh_gallery(select=entry.key)

    def _add_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add portraits", str(Path.home()), PORTRAIT_FILTER)
        if paths:
            self.add_files(paths)

    def _remove_clicked(self) -> None:
        item = self.gallery.currentItem()
        if item is None:
            return
        entry: GalleryEntry = item.data(Qt.ItemDataRole.UserRole)
        if not entry.removable:
            return
        self.library.remove(entry)
        self.settings.avatar = ""
        self.statusBar().showMessage(f"Removed {entry.name}", 5000)
        self._refresh_gallery()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        urls: list[QUrl] = event.mimeData().urls()
        paths = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
        if not paths:
            self.show_message("Cannot add this", "only files from this computer can be dropped here")
            return
        event.acceptProposedAction()
        self.add_files(paths)

    # -- source and pipeline ------------------------------------------------------------------------------------
    def _cameras_found(self, cameras: list[str] | None, err) -> None:
        if self._closing:
            return
        self._cameras = list(cameras or [])
        if not self.settings.source and self._cameras:
            self.settings.source = self._cameras[0]
        self._fill_sources()
        if not self.settings.source:
            self.camera_view.set_placeholder(NO_SOURCE_TEXT)
        self._ensure_running()

    def _fill_sources(self) -> None:
        combo = self.source_combo
        combo.blockSignals(True)
        combo.clear()
        current = self.settings.source
        if not current:
            combo.addItem("(no source)", "")
        for index in self._cameras:
            combo.addItem(f"Camera {index}", index)
        if current and current.isdigit() and current not in self._cameras:
            combo.addItem(f"Camera {current} (not found)", current)
        if current and not current.isdigit():
            combo.addItem(f"Video: {Path(current).name}", current)
        combo.addItem("Video file\u2026", PICK_VIDEO)
        self._select_data(combo, current)
        combo.blockSignals(False)

    def _source_activated(self, index: int) -> None:
        spec = self.source_combo.itemData(index)
        if spec == PICK_VIDEO:
            path, _ = QFileDialog.getOpenFileName(self, "Drive the avatar with a video", str(Path.home()), VIDEO_FILTER)
            if not path:
                self._fill_sources()  # back to what runs
                return
            spec = path
        if spec:
            self.set_source(spec)

    def set_source(self, spec: str) -> None:
        """Drive the avatar with camera ``spec`` (an index) or a video file (played in a loop)."""
        self.settings.source = str(spec)
        self._save_settings()
        self._fill_sources()
        self._source_running = None
        self._ensure_running()

    def _ensure_running(self) -> None:
        spec = self.settings.source
        if self._closing or not spec or self.avatar is None or self._source_running == spec:
            return
        self._source_running = spec
        self.camera_view.set_placeholder(f"Opening {'camera ' + spec if spec.isdigit() else Path(spec).name}\u2026")
        self.camera_view.set_image(None)
        self.pipeline.start(spec, camera_fps=self.settings.fps)

    def _started(self, description: str) -> None:
        self._render_ok = (self.settings.renderer, self.settings.size)
        self.statusBar().showMessage(f"Driving with {description}", 8000)
        # The first frames wait for the tracker's and renderer's warm-up; the HUD counts from after it.
        QTimer.singleShot(WARM_UP_MS, self.pipeline.profiler.reset)

    def _start_failed(self, text: str) -> None:
        if self._closing:
            return
        self._source_running = None
        self.camera_view.set_image(None)
        self.camera_view.set_placeholder(f"{text}\n\nChoose another source in the Source list.")
        self.statusBar().showMessage(f"Source not opened: {text}", 15000)
        self.messages.append(("Source not opened", text))

    def _problem(self, text: str) -> None:
        self.statusBar().showMessage(text, 15000)

    def _source_ended(self) -> None:
        text = self.pipeline.last_problem or "the source ended"
        self._source_running = None
        self.camera_view.set_image(None)
        self.camera_view.set_banner(None)
        self.camera_view.set_placeholder(f"The source stopped: {text}\n\nChoose a source in the Source list to go on.")
        self.messages.append(("Source stopped", text))

    def render_settings(self) -> RenderSettings:
        backend, _, model = self.settings.renderer.partition(":")
        return RenderSettings(size=self.settings.size, backend=backend, model=model or None)

    def _render_changed(self) -> None:
        self.settings.renderer = self.renderer_combo.currentData()
        self.settings.size = int(self.size_combo.currentData())
        self._save_settings()
        if self.avatar is not None:
            if not self.pipeline.running:
                self._show_still_portrait()
            self.pipeline.set_avatar(self.avatar, self.render_settings())

    def _avatar_failed(self, text: str) -> None:
        """A renderer, size or avatar could not be prepared: say why and go back to what worked."""
        self.show_message("Not changed", text)
        renderer, size = self._render_ok
        if (self.settings.renderer, self.settings.size) != (renderer, size):
            for combo, value in ((self.renderer_combo, renderer), (self.size_combo, size)):
                combo.blockSignals(True)
                self._select_data(combo, value)
                combo.blockSignals(False)
            self.settings.renderer, self.settings.size = renderer, size
            self._save_settings()
            if self.avatar is not None:
                self.pipeline.set_avatar(self.avatar, self.render_settings())

    def _avatar_switched(self, avatar: Avatar) -> None:
        self._render_ok = (self.settings.renderer, self.settings.size)
        self.statusBar().showMessage(f"Animating {avatar.name} - it follows your pose from now on "
                                     "(press C to calibrate again)", 6000)

    def calibrate(self) -> None:
        if self.pipeline.calibrate():
            self.statusBar().showMessage("Calibrated: your current pose is now the portrait's own pose", 5000)
        else:
            self.statusBar().showMessage("Nothing to calibrate: no source is running", 5000)

    # -- frames -------------------------------------------------------------------------------------------------
    def _show_newest(self) -> None:
        frame: Frame | None = self.pipeline.take_frame()
        if frame is None or self._closing:
            return
        camera = frame.image
        if self.settings.overlay:
            camera = alignment_overlay(camera, frame.avatar.image, frame.avatar.landmarks, frame.driver)
        self.camera_view.set_image(camera)
        if not frame.has_picture:
            banner = "No picture from the source - trying to reopen it; the avatar eases to neutral"
        elif not frame.face_found:
            banner = "No face in view - the avatar eases to neutral"
        elif self.settings.overlay:
            banner = "Amber: the portrait   Cyan: you   Match them, then press C"
        else:
            banner = None
        self.camera_view.set_banner(banner)
        self.avatar_view.set_image(frame.output)
        self.frames_shown += 1

    def _tick(self) -> None:
        """Twice a second: the HUD, the recording's clock, and whether the source is still running."""
        if self._closing:
            return
        if self._source_running and self.pipeline.runner is not None and not self.pipeline.running:
            self._source_ended()
        if self.settings.hud:
            self.last_hud = self._hud_lines()
            self.avatar_view.set_hud(self.last_hud)
        if self._recording is not None:
            self.record_label.setText(f"\u25cf REC {int(self._recording.seconds) // 60}:"
                                      f"{int(self._recording.seconds) % 60:02d}  {self._recording.path.name}")

    def _hud_lines(self) -> list[str]:
        snap = self.pipeline.hud()
        if snap.frames < 2:
            return ["HUD: waiting for frames\u2026"]
        has_outputs = len(self.pipeline.hub) > 0
        stages = [(name.removeprefix("sink:"), ms) for name, ms in snap.stage_ms.items()
                  if has_outputs or name != "sink:outputs"]
        lines = [f"{snap.fps:5.1f} fps   latency {snap.latency_ms:.0f} ms (p95 {snap.latency_p95_ms:.0f})",
                 "ms  " + "  ".join(f"{name} {ms:.1f}" for name, ms in stages)]
        waits = [(name.removeprefix("sink:"), ms) for name, ms in snap.wait_ms.items() if ms >= 0.5]
        if waits:
            lines.append("wait " + "  ".join(f"{name} {ms:.1f}" for name, ms in waits))
        if any(snap.dropped.values()):
            lines.append("dropped " + "  ".join(f"{q} {n}" for q, n in snap.dropped.items()))
        size = self.pipeline.output_size
        if size is not None:
            renderer = self.renderer_combo.currentText() or self.settings.renderer
            lines.append(f"{renderer} {size[0]}x{size[1]}   delay audio by {snap.audio_delay_ms} ms")
        return lines

    def _mirror_toggled(self, on: bool) -> None:
        self.settings.mirror = on
        self.camera_view.set_mirrored(on)
        self.avatar_view.set_mirrored(on)
        self._save_settings()

    def _overlay_toggled(self, on: bool) -> None:
        self.settings.overlay = on
        self._save_settings()
        if on:
            self.statusBar().showMessage("Overlay: turn until the amber outline (the portrait) matches the cyan one"
                                         " (you), then press C", 8000)

    def _hud_toggled(self, on: bool) -> None:
        self.settings.hud = on
        self._save_settings()
        self.avatar_view.set_hud(self._hud_lines() if on else [])

    # -- virtual camera -----------------------------------------------------------------------------------------
    def _vcam_settings(self) -> VirtualCameraSettings:
        w, h = self.settings.camera_width_height
        return VirtualCameraSettings(width=w, height=h, fps=float(self.settings.fps))

    def _vcam_toggled(self, on: bool) -> None:
        self._vcam_request += 1
        request = self._vcam_request
        self._close_vcam()
        if not on:
            self.vcam_label.setText("Virtual camera: off")
            return
        sink = VirtualCameraSink(self._vcam_settings())
        self.vcam_label.setText("Virtual camera: starting\u2026")

        def opened(_result, err) -> None:
            if request != self._vcam_request or self._closing:
                sink.close()
                return
            if err is not None:
                self._vcam_off_after_error(err)
                return
            self._vcam = sink
            self.pipeline.hub.add(sink)
            self.vcam_label.setText(f"Virtual camera: {sink.describe()}")

        self.tasks.run("open-virtual-camera", sink.open, opened)

    def _vcam_off_after_error(self, err: BaseException) -> None:
        self.vcam_action.blockSignals(True)
        self.vcam_action.setChecked(False)
        self.vcam_action.blockSignals(False)
        self.vcam_label.setText("Virtual camera: off (none available)")
        if isinstance(err, VirtualCameraError):
            self.show_message("No virtual camera", "No virtual camera could be opened on this computer.",
                              err.instructions, technical=err.reason)
        else:
            self.show_message("No virtual camera", first_line(err))

    def _close_vcam(self) -> None:
        sink, self._vcam = self._vcam, None
        if sink is not None:
            self.pipeline.hub.remove(sink)
            sink.close()

    def _vcam_format_changed(self) -> None:
        self.settings.camera_size = self.camera_size_combo.currentData()
        self.settings.fps = int(self.fps_combo.currentData())
        self._save_settings()
        if self.vcam_action.isChecked():
            self._vcam_toggled(True)  # reopen in the new format

    def _output_failed(self, output, text: str) -> None:
        if output is self._vcam:
            self._vcam = None
            output.close()
            self._vcam_off_after_error(RuntimeError(f"the virtual camera stopped: {text}"))
        elif output is self._recording:
            self._recording = None
            self._finish_recording(output, failed=text)

    # -- recording ----------------------------------------------------------------------------------------------
    def _record_toggled(self, on: bool) -> None:
        if on:
            self._start_recording()
        elif self._recording is not None:
            recording, self._recording = self._recording, None
            self.pipeline.hub.remove(recording)
            self._finish_recording(recording)

    def _start_recording(self) -> None:
        size = self.pipeline.output_size
        if size is None or not self.pipeline.running:
            self._uncheck(self.record_action)
            self.show_message("Nothing to record", "no source is running - choose a camera or a video first")
            return
        try:
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            recording = Recording(recording_path(self.recordings_dir), self.settings.fps, size)
            recording.open()
        except (AvatarAppError, OSError) as err:
            self._uncheck(self.record_action)
            self.show_message("Cannot record", first_line(err))
            return
        self._recording = recording
        self.pipeline.hub.add(recording)
        self.record_label.setText(f"\u25cf REC 0:00  {recording.path.name}")

    def _finish_recording(self, recording: Recording, failed: str | None = None, wait: bool = False) -> None:
        self._uncheck(self.record_action)
        self.record_label.setText("")

        def done(_result, err) -> None:
            if (failed or err is not None) and recording.path.is_file():  # stopped, but what came before plays
                self.show_message("Recording stopped", f"{failed or first_line(err)} - what was recorded until then"
                                  f" is saved in {recording.path}")
            elif failed or err is not None:
                self.show_message("Recording not saved", failed or first_line(err))
            else:
                self.statusBar().showMessage(f"Saved {recording.path}", 15000)

        if wait:
            try:
                recording.close()
            except Exception as err:  # noqa: BLE001 - at shutdown: logged, the window closes anyway
                log.warning("recording not saved: %s", err)
            return
        self.tasks.run("finish-recording", recording.close, done)

    @staticmethod
    def _uncheck(action: QAction) -> None:
        action.blockSignals(True)
        action.setChecked(False)
        action.blockSignals(False)

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
        self._save_settings()
        self.pipeline.shutdown()
        self._close_vcam()
        if self._recording is not None:
            recording, self._recording = self._recording, None
            self.pipeline.hub.remove(recording)
            self._finish_recording(recording, wait=True)

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
