"""The small pieces panels hand the window for its toolbars: actions with shortcuts, and pickers that leave
keyboard focus on the window."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QComboBox


def action(parent: QObject, text: str, shortcut: str | None = None, checkable: bool = False, checked: bool = False,
           tip: str = "") -> QAction:
    """An action whose shortcut works anywhere in the window once the window adds it (``addAction``)."""
    out = QAction(text, parent)
    if shortcut:
        out.setShortcut(QKeySequence(shortcut))
        out.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        out.setText(f"{text} ({shortcut})")
    out.setCheckable(checkable)
    out.setChecked(checked)
    out.setToolTip(tip or text)
    return out


def combo(items: list[tuple[str, object]], current: object = None, tip: str = "") -> QComboBox:
    """A picker of (label, value) items with ``current`` selected."""
    out = QComboBox()
    for label, value in items:
        out.addItem(label, value)
    select_data(out, current)
    out.setToolTip(tip)
    # Keyboard focus stays on the window, so C, O, H, R and Space always reach their actions.
    out.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    return out


def select_data(picker: QComboBox, value: object) -> None:
    index = picker.findData(value)
    if index >= 0:
        picker.setCurrentIndex(index)


def select_quietly(picker: QComboBox, value: object) -> None:
    """Show ``value`` as chosen without it counting as the user's choice."""
    picker.blockSignals(True)
    select_data(picker, value)
    picker.blockSignals(False)


def uncheck_quietly(toggle: QAction) -> None:
    """Show an action as off without it counting as the user's choice (it was switched off for them)."""
    toggle.blockSignals(True)
    toggle.setChecked(False)
    toggle.blockSignals(False)
