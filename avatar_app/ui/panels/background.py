"""What shows behind the avatar, for streamers who key it over a scene: the portrait's own background, blurred, a
green screen or any colour; bound to the settings and handed to the pipeline as it runs."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QColorDialog, QFormLayout, QGroupBox, QWidget

from avatar_app.call.background import GREEN_SCREEN, BackgroundSettings
from avatar_app.ui.panels.toolbar import combo, select_quietly
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings

CHOICES = [("Keep", "keep"), ("Blur", "blur"), ("Green screen", "green"), ("Colour\u2026", "colour")]


class BackgroundPicker(QGroupBox):
    """``background_combo``: Keep / Blur / Green screen / Colour… (a colour dialog), bound to
    ``settings.background`` and ``settings.background_colour``. ``pick_colour(initial, parent, title)`` returns a
    QColor, invalid when cancelled (QColorDialog.getColor; tests give their own). ``settings_changed`` as in the
    other panels."""

    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, parent: QWidget | None = None,
                 pick_colour: Callable[[QColor, QWidget, str], QColor] = QColorDialog.getColor):
        super().__init__("Background", parent)
        self.settings = settings
        self.pipeline = pipeline
        self.pick_colour = pick_colour
        self.background_combo = combo(CHOICES, self._choice(),
                                      "What shows behind the avatar: the portrait's own background, blurred, or a "
                                      "colour for keying it over your scene (a green screen)")
        QFormLayout(self).addRow("Behind the avatar", self.background_combo)
        self.background_combo.activated.connect(self._chosen)  # every choice, "Colour…" again included
        self._show_colour()
        self._apply()

    def background_settings(self) -> BackgroundSettings:
        return BackgroundSettings(mode=self.settings.background, colour=self.settings.background_colour)

    # -- inside -------------------------------------------------------------------------------------------------
    def _choice(self) -> str:
        s = self.settings
        if s.background != "colour":
            return s.background
        return "green" if s.background_colour.lower() == GREEN_SCREEN else "colour"

    def _chosen(self, index: int) -> None:
        s = self.settings
        value = self.background_combo.itemData(index)
        if value == "colour":
            colour = self.pick_colour(QColor(s.background_colour), self.window(), "Background colour")
            if not colour.isValid():  # cancelled: what was chosen before stays
                select_quietly(self.background_combo, self._choice())
                return
            s.background, s.background_colour = "colour", colour.name()
        elif value == "green":
            s.background, s.background_colour = "colour", GREEN_SCREEN
        else:
            s.background = value
        select_quietly(self.background_combo, self._choice())
        self._show_colour()
        self._apply()
        self.settings_changed.emit()

    def _show_colour(self) -> None:
        """A swatch of the colour in use beside "Colour…" (and its hex code in the tooltip)."""
        index = self.background_combo.findData("colour")
        swatch = QPixmap(12, 12)
        swatch.fill(QColor(self.settings.background_colour))
        self.background_combo.setItemIcon(index, QIcon(swatch))
        self.background_combo.setItemData(index, f"Any colour (now {self.settings.background_colour})",
                                          Qt.ItemDataRole.ToolTipRole)

    def _apply(self) -> None:
        self.pipeline.set_background(self.background_settings())
