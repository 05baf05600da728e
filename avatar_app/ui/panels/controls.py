"""How the avatar follows you: head-pose and expression strength, eyes, mouth and gaze on or off, and how much
the tracked face is smoothed; bound to the settings and handed to the pipeline as it runs."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QSlider, QWidget

from avatar_app.pipeline.retarget import RetargetSettings
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings


def smoothing_cutoff(smoothing: float) -> float:
    """The tracker's One-Euro cutoff at rest (Hz) for a smoothing of 0 (raw) .. 1 (calmest); 0.5 is the default
    0.5 Hz, each tenth of the slider a step of about 1.6 times."""
    return 5.0 * 10.0 ** (-2.0 * min(max(smoothing, 0.0), 1.0))


class MotionControls(QGroupBox):
    """``settings_changed`` as in the other panels; ``motion()`` is what the sliders and switches say."""

    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, parent: QWidget | None = None):
        super().__init__("How the avatar follows you", parent)
        self.settings = settings
        self.pipeline = pipeline
        form = QFormLayout(self)
        self.pose_slider = self._slider(settings.pose_strength, form, "Head pose",
                                        "0 keeps the head still, 100 % follows you, up to 200 % exaggerates")
        self.expression_slider = self._slider(settings.expression_strength, form, "Expression",
                                              "0 keeps the face neutral, 100 % follows you, up to 200 % exaggerates")
        self.smoothing_slider = self._slider(settings.smoothing, form, "Smoothing",
                                             "More: a calmer face that lags a little; less: every twitch", top=100)
        switches = QHBoxLayout()
        self.eyes_box = self._switch("Eyes", settings.follow_eyes, switches, "Blinks and eye opening follow yours")
        self.mouth_box = self._switch("Mouth", settings.follow_mouth, switches, "The mouth and jaw follow yours")
        self.gaze_box = self._switch("Gaze", settings.follow_gaze, switches, "The irises look where you look")
        form.addRow(switches)
        self._apply()

    def motion(self) -> RetargetSettings:
        s = self.settings
        return RetargetSettings(pose_strength=s.pose_strength, expression_strength=s.expression_strength,
                                follow_gaze=s.follow_gaze, follow_eyes=s.follow_eyes, follow_mouth=s.follow_mouth)

    # -- inside -------------------------------------------------------------------------------------------------
    def _slider(self, value: float, form: QFormLayout, label: str, tip: str, top: int = 200) -> QSlider:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, top)
        slider.setValue(round(value * 100))
        slider.setToolTip(tip)
        slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the window's keys stay the window's
        shown = QLabel(f"{slider.value()} %")
        shown.setMinimumWidth(44)
        row = QHBoxLayout()
        row.addWidget(slider, 1)
        row.addWidget(shown)
        form.addRow(label, row)
        slider.valueChanged.connect(lambda v: (shown.setText(f"{v} %"), self._changed()))
        return slider

    def _switch(self, label: str, on: bool, row: QHBoxLayout, tip: str) -> QCheckBox:
        box = QCheckBox(label)
        box.setChecked(on)
        box.setToolTip(tip)
        box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        box.toggled.connect(self._changed)
        row.addWidget(box)
        return box

    def _changed(self) -> None:
        s = self.settings
        s.pose_strength = self.pose_slider.value() / 100
        s.expression_strength = self.expression_slider.value() / 100
        s.smoothing = self.smoothing_slider.value() / 100
        s.follow_eyes, s.follow_mouth = self.eyes_box.isChecked(), self.mouth_box.isChecked()
        s.follow_gaze = self.gaze_box.isChecked()
        self._apply()
        self.settings_changed.emit()

    def _apply(self) -> None:
        self.pipeline.set_motion(self.motion(), smoothing_cutoff(self.settings.smoothing))
