"""The window's Background picker: Green screen and any colour reach the call's picture while it runs, Keep takes
them away again, a cancelled colour dialog changes nothing, and the choice is remembered."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QColor

from tests.ui.conftest import wait_for_avatar, wait_for_frames

GREEN = np.array([0x40, 0xB1, 0x00])  # #00B140 as (B, G, R)


def _choose(window, value) -> None:
    """What a click on that item does (QComboBox emits ``activated`` for a user's choice only)."""
    picker = window.background.background_combo
    picker.activated.emit(picker.findData(value))


def _share(image: np.ndarray, bgr) -> float:
    """How much of the picture is that colour (to a video's rounding)."""
    return float((np.abs(image.astype(int) - np.asarray(bgr)).max(axis=-1) <= 6).mean())


def _call_picture_shows(qtbot, window, bgr, at_least=0.05, timeout=30000) -> None:
    qtbot.waitUntil(lambda: window.avatar_view.image() is not None
                    and _share(window.avatar_view.image(), bgr) >= at_least, timeout=timeout)


def test_green_screen_puts_the_green_behind_the_avatar_in_the_call_s_picture(qtbot, make_window, generated_driver):
    window = make_window(source=str(generated_driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    assert _share(window.avatar_view.image(), GREEN) < 0.01  # keep, the default: her own sky
    _choose(window, "green")
    _call_picture_shows(qtbot, window, GREEN)
    image = window.avatar_view.image()
    assert image.shape[:2] == (720, 1280)  # the framed call picture, as the virtual camera gets it
    assert _share(image, GREEN) < 0.9  # and the avatar in front of it
    assert (window.settings.background, window.settings.background_colour) == ("colour", "#00b140")

    _choose(window, "keep")
    qtbot.waitUntil(lambda: _share(window.avatar_view.image(), GREEN) < 0.01, timeout=30000)
    assert window.pipeline.stages.call.settings.background.mode == "keep"


def test_any_colour_from_the_dialog_and_a_cancelled_dialog_changes_nothing(qtbot, make_window, generated_driver):
    window = make_window(source=str(generated_driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    picker = window.background
    picker.pick_colour = lambda initial, parent, title: QColor("#ff00ff")
    _choose(window, "colour")
    _call_picture_shows(qtbot, window, (255, 0, 255))
    assert window.settings.background_colour == "#ff00ff"

    picker.pick_colour = lambda initial, parent, title: QColor()  # the dialog cancelled
    _choose(window, "colour")
    assert window.settings.background_colour == "#ff00ff"
    assert picker.background_combo.currentData() == "colour"
    window.close()

    again = make_window()  # the same settings file: the colour is remembered
    assert (again.settings.background, again.settings.background_colour) == ("colour", "#ff00ff")
    assert again.background.background_combo.currentData() == "colour"
