"""The window's "Check set-up…" action: the checks of `avatar-app doctor`, run off the GUI thread, reported in a
message box (what works, what does not and what to do, the set-up steps behind "Show Details")."""

from __future__ import annotations

import html

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from avatar_app.pipeline.checks import Check, DoctorOptions, all_needed_ok, report_lines, run_checks, verdict
from avatar_app.ui.panels.outputs import Outputs
from avatar_app.ui.panels.toolbar import action
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.qt import running_window_check
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.tasks import BackgroundTasks

TITLE = "Set-up check"
_COLOURS = {"ok": "#2e7d32", "needed": "#c62828", "optional": "#b26a00"}


class SetupCheck(QObject):
    """``action`` runs the checks on ``tasks`` and shows the report in ``box`` (non-modal); ``checks`` holds the
    last results. What the window already holds (the running camera, the virtual camera when on) is not opened a
    second time: it counts as working. ``status(text, ms)`` as in the other panels."""

    status = Signal(str, int)

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, outputs: Outputs, tasks: BackgroundTasks,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings
        self.pipeline = pipeline
        self.outputs = outputs
        self.tasks = tasks
        self.checks: list[Check] | None = None
        self.box: QMessageBox | None = None
        self.action = action(self, "Check set-up\u2026",
                             tip="Check the cameras, the virtual camera, onnxruntime, MediaPipe's models, Qt and "
                                 "the disk space for recordings")
        self.action.triggered.connect(self.run)

    def options(self) -> DoctorOptions:
        source = self.settings.source
        camera = source if self.pipeline.running and source and source.isdigit() else None
        vcam = None
        if self.outputs.vcam_action.isChecked():
            vcam = self.outputs.vcam_label.text().removeprefix("Virtual camera: ")
        return DoctorOptions(recordings_dir=self.outputs.recordings_dir, camera_in_use=camera,
                             virtual_camera_in_use=vcam)

    def run(self) -> None:
        """Start the checks (a few seconds); a second request while they run is ignored."""
        if not self.action.isEnabled():
            return
        self.action.setEnabled(False)
        self.status.emit("Checking the set-up\u2026", 0)
        options, window = self.options(), running_window_check()  # Qt is asked here, on the GUI thread
        self.tasks.run("check-setup", lambda: run_checks(options, lambda: window), self._done)

    def _done(self, checks: list[Check] | None, err: BaseException | None) -> None:
        self.action.setEnabled(True)
        if err is not None or not checks:
            self.status.emit(f"The set-up check failed: {err}", 15000)
            return
        self.checks = checks
        self.status.emit(verdict(checks), 15000)
        self.show_report(checks)

    def show_report(self, checks: list[Check]) -> QMessageBox:
        if self.box is not None:  # one report at a time: the newest
            self.box.close()
            self.box.deleteLater()
        ok = all_needed_ok(checks)
        parent = self.parent() if isinstance(self.parent(), QWidget) else None
        box = QMessageBox(QMessageBox.Icon.Information if ok else QMessageBox.Icon.Warning, TITLE, verdict(checks),
                          QMessageBox.StandardButton.Ok, parent)
        box.setInformativeText("".join(_line_html(c) for c in checks))
        steps = [f"{c.name}:\n{c.details}" for c in checks if not c.ok and c.details]
        box.setDetailedText("\n".join(report_lines(checks)) + "".join(f"\n\n{s}" for s in steps))
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()
        self.box = box
        return box


def _line_html(check: Check) -> str:
    kind = "ok" if check.ok else "needed" if check.needed else "optional"
    mark = "\u2713" if check.ok else "\u2717"
    text = html.escape(check.line().split(" ", 1)[1])
    return f'<p style="margin: 3px 0;"><span style="color: {_COLOURS[kind]};">{mark}</span> {text}</p>'
