"""Where the avatar goes besides the preview: the virtual camera (on/off, picture size, frame rate) and recording
to an MP4; both are plugged into the pipeline's outputs while it runs and outlive a change of source."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QLabel

from avatar_app.errors import AvatarAppError, first_line
from avatar_app.call.framing import FramingSettings
from avatar_app.pipeline.virtual_camera import VirtualCameraError, VirtualCameraSettings, VirtualCameraSink
from avatar_app.pipeline.microphone import MICROPHONE_OFF, MicrophoneRecorder, input_devices, parse_microphone
from avatar_app.pipeline.recording import Recording, recording_path
from avatar_app.ui.panels.toolbar import action, combo, uncheck_quietly
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import CAMERA_SIZES, FRAME_RATES, FRAMING_CHOICES, AppSettings
from avatar_app.ui.tasks import BackgroundTasks

log = logging.getLogger(__name__)


class Outputs(QObject):
    """The toolbar's ``vcam_action``, ``camera_size_combo``, ``fps_combo`` and ``record_action`` (bound to
    ``settings.camera_size`` and ``settings.fps``), and the status bar's ``vcam_label`` and ``record_label``.
    Opening the virtual camera and finishing a recording run on ``tasks``; recordings go to ``recordings_dir``.

    ``status(text, ms)``, ``message(title, text, details, technical)`` and ``settings_changed`` as in the other
    panels.
    """

    status = Signal(str, int)
    message = Signal(str, str, object, object)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, tasks: BackgroundTasks, recordings_dir: Path,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        self.pipeline = pipeline
        self.tasks = tasks
        # A folder the user chose earlier wins over the default, if it is still there.
        chosen = Path(settings.recordings) if settings.recordings else None
        self.recordings_dir = chosen if chosen is not None and chosen.is_dir() else recordings_dir
        self._vcam: VirtualCameraSink | None = None
        self._vcam_request = 0  # bumped per toggle, so a slow open that was overtaken is closed again
        self._recording: Recording | None = None
        self._closing = False

        self.vcam_action = action(self, "Virtual camera", "Space", checkable=True,
                                  tip="Send the avatar to a virtual camera that call apps can choose (Space)")
        self.camera_size_combo = combo([(size.replace("x", " \u00d7 "), size) for size in CAMERA_SIZES],
                                       settings.camera_size, "The virtual camera's picture size")
        self.fps_combo = combo([(f"{fps} fps", fps) for fps in FRAME_RATES], settings.fps,
                               "Frame rate of the virtual camera")
        self.framing_combo = combo(list(FRAMING_CHOICES), settings.framing,
                                   "How the avatar fills the call's picture: a crop that follows the head, the "
                                   "largest crop around the face held still, or the whole portrait between bars")
        # The sound of recordings from a camera or the demo (a video file's own sound is kept instead).
        devices = input_devices()
        chosen_mic = settings.microphone
        self.microphone_combo = combo(
            [("Mic: default", ""), ("Mic: off", MICROPHONE_OFF)] + [(f"Mic: {name}", name) for name in devices]
            + ([(f"Mic: {chosen_mic} (not found)", chosen_mic)]
               if chosen_mic not in ("", MICROPHONE_OFF, *devices) else []),
            chosen_mic, "The sound recordings from a camera or the demo get, laid late by the pipeline's latency "
                        "so lips and voice stay in step")
        self.record_action = action(self, "Record", "R", checkable=True,
                                    tip="Record what the call sees to an MP4 while it runs (R)")
        self.folder_action = action(self, "Recordings folder\u2026",
                                    tip=f"Where recordings go (now {self.recordings_dir})")
        self.vcam_label = QLabel("Virtual camera: off")
        self.record_label = QLabel("")
        # A red badge, not grey status text: nobody should record a call without seeing it.
        self.record_label.setStyleSheet("QLabel { color: white; background: #c81e1e; font-weight: bold;"
                                        " padding: 2px 10px; border-radius: 4px; }")
        self.record_label.setVisible(False)

        self.vcam_action.toggled.connect(self._vcam_toggled)
        self.camera_size_combo.currentIndexChanged.connect(self._format_changed)
        self.fps_combo.currentIndexChanged.connect(self._format_changed)
        self.framing_combo.currentIndexChanged.connect(self._format_changed)
        self.record_action.toggled.connect(self._record_toggled)
        self.microphone_combo.currentIndexChanged.connect(self._microphone_chosen)
        self.folder_action.triggered.connect(self._choose_folder)
        pipeline.set_framing(self.framing_settings())
        pipeline.output_failed.connect(self._output_failed)

    def tick(self) -> None:
        """Called regularly: the recording's clock."""
        if self._closing or self._recording is None:
            return
        seconds = int(self._recording.seconds)
        self.record_label.setText(f"\u25cf REC {seconds // 60}:{seconds % 60:02d}  {self._recording.path.name}")

    def shutdown(self) -> None:
        """Close the virtual camera and finish a recording (waits for the file: at most about a second)."""
        self._closing = True
        self._close_vcam()
        if self._recording is not None:
            recording, self._recording = self._recording, None
            self.pipeline.hub.remove(recording)
            self._finish_recording(recording, wait=True)

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
        uncheck_quietly(self.vcam_action)
        self.vcam_label.setText("Virtual camera: off (none available)")
        if isinstance(err, VirtualCameraError):
            self.message.emit("No virtual camera", "No virtual camera could be opened on this computer.",
                              err.instructions, err.reason)
        else:
            self.message.emit("No virtual camera", first_line(err), None, None)

    def _close_vcam(self) -> None:
        sink, self._vcam = self._vcam, None
        if sink is not None:
            self.pipeline.hub.remove(sink)
            sink.close()

    def framing_settings(self) -> FramingSettings:
        """The call's picture: the virtual camera's size, filled as chosen (recordings get the same picture)."""
        w, h = self.settings.camera_width_height
        return FramingSettings(width=w, height=h, mode=self.settings.framing)

    def _format_changed(self) -> None:
        self.settings.camera_size = self.camera_size_combo.currentData()
        self.settings.fps = int(self.fps_combo.currentData())
        self.settings.framing = self.framing_combo.currentData()
        self.pipeline.set_framing(self.framing_settings())
        self.settings_changed.emit()
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
    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(None, "Folder for recordings", str(self.recordings_dir))
        if not folder:  # cancelled
            return
        self.recordings_dir = Path(folder)
        self.settings.recordings = folder
        self.folder_action.setToolTip(f"Where recordings go (now {folder})")
        self.settings_changed.emit()
        self.status.emit(f"Recordings go to {folder}", 6000)

    def _microphone_chosen(self) -> None:
        self.settings.microphone = self.microphone_combo.currentData()
        self.settings_changed.emit()

    def _microphone_for(self, path: Path) -> MicrophoneRecorder | None:
        """What the recording at ``path`` hears: nothing for a video file with its own sound, or when off."""
        if self.pipeline.sound_source is not None:
            return None
        mic = parse_microphone(self.settings.microphone)
        return None if mic is None else MicrophoneRecorder(path, mic)

    def _record_toggled(self, on: bool) -> None:
        if on:
            self._start_recording()
        elif self._recording is not None:
            recording, self._recording = self._recording, None
            self.pipeline.hub.remove(recording)
            self._finish_recording(recording)

    def _start_recording(self) -> None:
        size = self.settings.camera_width_height  # the call's picture, as the virtual camera sends it
        fps = self.pipeline.source_fps  # the rate frames really come at (a 25 fps camera gives 25, not 30)
        if fps is None or not self.pipeline.running:
            uncheck_quietly(self.record_action)
            self.message.emit("Nothing to record", "no source is running - choose a camera or a video first",
                              None, None)
            return
        try:
            self.recordings_dir.mkdir(parents=True, exist_ok=True)
            path = recording_path(self.recordings_dir)
            recording = Recording(path, fps, size, self.pipeline.sound_source, microphone=self._microphone_for(path))
            recording.open()
        except (AvatarAppError, OSError) as err:
            uncheck_quietly(self.record_action)
            self.message.emit("Cannot record", first_line(err), None, None)
            return
        if recording.sound_note:  # the video records all the same, silent
            if self.settings.microphone:  # a device the user chose is not there: said, not just shown
                self.message.emit("No microphone", recording.sound_note, None, None)
            else:
                self.status.emit(recording.sound_note, 10000)
            recording.sound_note = None  # said once
        self._recording = recording
        self.pipeline.hub.add(recording)
        self.record_label.setText(f"\u25cf REC 0:00  {recording.path.name}")
        self.record_label.setVisible(True)

    def _finish_recording(self, recording: Recording, failed: str | None = None, wait: bool = False) -> None:
        uncheck_quietly(self.record_action)
        self.record_label.setText("")
        self.record_label.setVisible(False)

        def done(_result, err) -> None:
            if (failed or err is not None) and recording.path.is_file():  # stopped, but what came before plays
                self.message.emit("Recording stopped", f"{failed or first_line(err)} - what was recorded until then"
                                  f" is saved in {recording.path}", None, None)
            elif failed or err is not None:
                self.message.emit("Recording not saved", failed or first_line(err), None, None)
            else:
                note = f" ({recording.sound_note})" if recording.sound_note else ""
                self.status.emit(f"Saved {recording.path}{note}", 15000)

        if wait:
            try:
                recording.close()
            except Exception as err:  # noqa: BLE001 - at shutdown: logged, the window closes anyway
                log.warning("recording not saved: %s", err)
            return
        self.tasks.run("finish-recording", recording.close, done)
