"""The two previews side by side, the camera and what the call sees (the avatar framed at the call's size): the
newest frame painted, what to do when there is no picture or no face, and the mirror and alignment-overlay
toggles. Only the camera preview is ever mirrored: the call's picture is shown as the call gets it."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from avatar_app.pipeline.avatar import Avatar
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.base import output_size
from avatar_app.ui.overlay import alignment_overlay
from avatar_app.ui.panels.toolbar import action
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.widgets import FrameView

NO_PICTURE = "No picture from the source - trying to reopen it; the avatar eases to neutral"
NO_FACE = "No face in view - the avatar eases to neutral"
OVERLAY_LEGEND = "Amber: the portrait   Cyan: you   Match them, then press C"


def calibration_banner(seconds_left: float) -> str:
    """What the camera preview says while the reference pose is being taken."""
    if seconds_left >= 0.999:
        return "Calibrating: look straight at the camera and hold still"
    return f"Calibrating: hold still - taking your pose in {seconds_left:.1f} s"


class Previews(QWidget):
    """Paints each frame the pipeline hands over (the newest wins: nothing queues). ``mirror_action`` and
    ``overlay_action`` are for the window's toolbar; ``status(text, ms)`` and ``settings_changed`` as in the
    other panels."""

    status = Signal(str, int)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.pipeline = pipeline
        self.frames_shown = 0
        self.shown_avatar: Avatar | None = None  # the avatar of the frame painted last
        self._was_calibrating = False
        self._closing = False

        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.camera_view = FrameView("Starting\u2026")
        self.avatar_view = FrameView("Choose an avatar")
        for label, view in (("You", self.camera_view), ("What the call sees", self.avatar_view)):
            column = QVBoxLayout()
            column.addWidget(QLabel(f"<b>{label}</b>"))
            column.addWidget(view, 1)
            layout.addLayout(column, 1)
        self.camera_view.set_mirrored(settings.mirror)

        self.mirror_action = action(self, "Mirror previews", checkable=True, checked=settings.mirror,
                                    tip="Show the camera preview as a mirror (the call's picture is never mirrored)")
        self.overlay_action = action(self, "Alignment overlay", "O", checkable=True, checked=settings.overlay,
                                     tip="Ghost the portrait over the camera, to match its pose before calibrating (O)")
        self.mirror_action.toggled.connect(self._mirror_toggled)
        self.overlay_action.toggled.connect(self._overlay_toggled)
        pipeline.frame_ready.connect(self._show_newest)

    # -- what the window asks -----------------------------------------------------------------------------------
    def show_text(self, text: str) -> None:
        """No camera picture (none yet, or the source is gone): ``text`` says why and what to do."""
        self.camera_view.set_image(None)
        self.camera_view.set_banner(None)
        self.camera_view.set_placeholder(text)

    def show_still(self, avatar: Avatar, size: int) -> None:
        """The portrait itself at the avatar's size, until a source drives it."""
        import cv2

        w, h = output_size(avatar.size, size)
        self.avatar_view.set_image(cv2.resize(avatar.image, (w, h), interpolation=cv2.INTER_AREA))

    def shutdown(self) -> None:
        """The window closes: frames still on their way are not painted."""
        self._closing = True

    # -- frames and toggles -------------------------------------------------------------------------------------
    def _show_newest(self) -> None:
        frame: Frame | None = self.pipeline.take_frame()
        if frame is None or self._closing:
            return
        camera = frame.image
        calibrating = frame.calibration_left is not None
        if self.settings.overlay or calibrating:  # the overlay shows what "straight ahead" means for this portrait
            camera = alignment_overlay(camera, frame.avatar.image, frame.avatar.landmarks, frame.driver)
        self.camera_view.set_image(camera)
        if not frame.has_picture:
            banner = NO_PICTURE
        elif not frame.face_found:
            banner = NO_FACE + (" - then look straight at the camera to calibrate" if calibrating else "")
        elif calibrating:
            banner = calibration_banner(frame.calibration_left)
        elif self.settings.overlay:
            banner = OVERLAY_LEGEND
        else:
            banner = None
        self.camera_view.set_banner(banner)
        self.avatar_view.set_image(frame.picture)
        if self._was_calibrating and not calibrating and frame.face_found:
            self.status.emit("Calibrated: your pose now is the portrait's own pose (C to take it again)", 6000)
        self._was_calibrating = calibrating
        self.shown_avatar = frame.avatar
        self.frames_shown += 1

    def _mirror_toggled(self, on: bool) -> None:
        self.settings.mirror = on
        self.camera_view.set_mirrored(on)
        self.settings_changed.emit()

    def _overlay_toggled(self, on: bool) -> None:
        self.settings.overlay = on
        self.settings_changed.emit()
        if on:
            self.status.emit("Overlay: turn until the amber outline (the portrait) matches the cyan one (you), "
                             "then press C", 8000)
