"""The avatar gallery: the portraits and avatars to choose from, adding the user's own (by button or by dropping
files on the window) and removing them; the chosen one is remembered in the settings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from avatar_app.errors import first_line
from avatar_app.pipeline.avatar import Avatar
from avatar_app.ui.library import FILE, AvatarLibrary, GalleryEntry, thumbnail
from avatar_app.ui.panels.toolbar import action
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.tasks import BackgroundTasks
from avatar_app.ui.widgets import to_pixmap

PORTRAIT_FILTER = "Portraits (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff *.avatar);;All files (*)"
THUMBNAIL = 72  # pixels, the longer side of a gallery picture
DEFAULT_PORTRAIT = "mona_lisa"  # chosen when the settings name none (or one that is gone)


class AvatarGallery(QWidget):
    """The list of avatars and its Add / Remove buttons. Loading an avatar and adding a picture (faces are
    found) run on ``tasks``; ``avatar_loaded`` says when the chosen one is ready to animate.

    ``status(text, ms)``: for the status bar (0: until replaced); ``message(title, text, details, technical)``:
    tell the user; ``settings_changed``: ``settings`` was changed and should be saved.
    """

    avatar_loaded = Signal(object)  # Avatar
    status = Signal(str, int)
    message = Signal(str, str, object, object)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, library: AvatarLibrary, tasks: BackgroundTasks,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.library = library
        self.tasks = tasks
        self.avatar: Avatar | None = None  # the last one loaded: what is animated
        self._request = 0  # bumped per choice, so a slow load of an earlier choice is dropped
        self._fallback: str | None = None  # chosen instead of a file from the command line that cannot be used
        self._closing = False

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(QLabel("<b>Avatars</b>"))
        self.list_widget = QListWidget()
        self.list_widget.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
        self.list_widget.setSpacing(2)
        self.list_widget.setWordWrap(True)
        self.list_widget.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list_widget.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the window's shortcuts keep the keyboard
        self.list_widget.setToolTip("Click a portrait (or press 1-9) to animate it. Drop photos on the window to add"
                                    " your own.")
        layout.addWidget(self.list_widget, 1)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add\u2026")
        self.add_button.setToolTip("Add photos or paintings with a face (or drop them on the window)")
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Remove one of your own avatars")
        for button in (self.add_button, self.remove_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(button)
        layout.addLayout(buttons)
        # Keys 1-9 pick the gallery's first nine avatars (the window adds these actions, so they work anywhere).
        self.pick_actions = [action(self, f"Avatar {n}", str(n), tip=f"Animate the gallery's avatar number {n}")
                             for n in range(1, 10)]
        for n, pick in enumerate(self.pick_actions):
            pick.triggered.connect(lambda _=False, row=n: self._pick(row))
        hint = QLabel("Drop photos here to add them")
        hint.setStyleSheet("color: gray")
        layout.addWidget(hint)

        self.list_widget.currentItemChanged.connect(self._chosen)
        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self._remove_clicked)

    # -- what the window asks -----------------------------------------------------------------------------------
    def refresh(self, select: str | None = None, fallback: str | None = None) -> None:
        """Fill the list again and choose ``select`` (an entry's key), else the default portrait, and load it.
        ``fallback``: the entry to choose instead if ``select`` is a file given on the command line that turns out
        not to be a usable portrait (the one chosen before it; none: the default portrait)."""
        if fallback is not None:
            self._fallback = fallback
        extra = [self.settings.avatar] if self.settings.avatar else []
        entries = self.library.entries(extra=extra)
        self.list_widget.blockSignals(True)
        self.list_widget.clear()
        chosen = None
        for entry in entries:
            item = QListWidgetItem(entry.name)
            thumb = thumbnail(entry.path, THUMBNAIL)
            if thumb is not None:
                item.setIcon(QIcon(to_pixmap(thumb)))
            item.setData(Qt.ItemDataRole.UserRole, entry)
            item.setToolTip(str(entry.path))
            self.list_widget.addItem(item)
            if select is not None and entry.key == select:
                chosen = item
        if chosen is None and self.list_widget.count():
            names = [entry.path.stem for entry in self.entries()]
            chosen = self.list_widget.item(names.index(DEFAULT_PORTRAIT) if DEFAULT_PORTRAIT in names else 0)
        self.list_widget.blockSignals(False)
        if chosen is not None:
            self.list_widget.setCurrentItem(chosen)  # loads it (the signal is live again)

    def _pick(self, row: int) -> None:
        if row < self.list_widget.count():
            self.list_widget.setCurrentRow(row)
        else:
            self.status.emit(f"There is no avatar number {row + 1} in the gallery", 4000)

    def entries(self) -> list[GalleryEntry]:
        return [self.list_widget.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list_widget.count())]

    def choose(self, entry_or_name) -> None:
        """Select a gallery entry (or the first whose name or file name contains the text)."""
        for i, entry in enumerate(self.entries()):
            words = f"{entry.name} {entry.path.name}".lower()
            if entry == entry_or_name or (isinstance(entry_or_name, str) and entry_or_name.lower() in words):
                self.list_widget.setCurrentRow(i)
                return
        raise KeyError(entry_or_name)

    def add_files(self, paths: list[str | Path]) -> None:
        """Make each picture one of the user's avatars (faces are found off the GUI thread)."""
        for path in paths:
            path = Path(path)
            self.status.emit(f"Adding {path.name}\u2026", 0)
            self.tasks.run("add-avatar", lambda p=path: self.library.add(p),
                           lambda entry, err, p=path: self._file_added(p, entry, err))

    def accept_drag(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def drop(self, event: QDropEvent) -> None:
        urls: list[QUrl] = event.mimeData().urls()
        paths = [Path(u.toLocalFile()) for u in urls if u.isLocalFile()]
        if not paths:
            self.message.emit("Cannot add this", "only files from this computer can be dropped here", None, None)
            return
        event.acceptProposedAction()
        self.add_files(paths)

    def shutdown(self) -> None:
        """The window closes: results still on their way are dropped."""
        self._closing = True

    # -- choosing, adding, removing -----------------------------------------------------------------------------
    def _chosen(self, item: QListWidgetItem | None, _previous=None) -> None:
        if item is None:
            return
        entry: GalleryEntry = item.data(Qt.ItemDataRole.UserRole)
        self.remove_button.setEnabled(entry.removable)
        self.settings.avatar = entry.key
        self.settings_changed.emit()
        self._request += 1
        request = self._request
        self.status.emit(f"Loading {entry.name}\u2026", 0)
        self.tasks.run("load-avatar", lambda: self.library.load(entry),
                       lambda avatar, err: self._loaded(request, entry, avatar, err))

    def _loaded(self, request: int, entry: GalleryEntry, avatar: Avatar | None, err) -> None:
        if request != self._request or self._closing:
            return  # another portrait was chosen meanwhile
        if err is not None:
            self.message.emit("Cannot use this portrait", first_line(err), None, None)
            if entry.kind == FILE:  # given on the command line: not left in the gallery as a blank entry
                self.settings.avatar = ""
                self.settings_changed.emit()
                self.refresh(select=self._fallback)  # the portrait chosen before it, else the default
            return
        self.avatar = avatar
        self.status.emit(f"Avatar: {entry.name}", 5000)
        self.avatar_loaded.emit(avatar)

    def _file_added(self, path: Path, entry: GalleryEntry | None, err) -> None:
        if self._closing:
            return
        if err is not None:
            self.message.emit("Cannot add this picture", first_line(err), None, None)
            return
        self.status.emit(f"Added {entry.name} to your avatars", 5000)
        self.refresh(select=entry.key)

    def _add_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add portraits", str(Path.home()), PORTRAIT_FILTER)
        if paths:
            self.add_files(paths)

    def _remove_clicked(self) -> None:
        item = self.list_widget.currentItem()
        if item is None:
            return
        entry: GalleryEntry = item.data(Qt.ItemDataRole.UserRole)
        if not entry.removable:
            return
        self.library.remove(entry)
        self.settings.avatar = ""  # saved by the choice refresh() makes
        self.status.emit(f"Removed {entry.name}", 5000)
        self.refresh()
