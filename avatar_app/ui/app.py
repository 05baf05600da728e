"""Start the desktop app: the QApplication, the main window, Ctrl+C in the terminal closes it cleanly."""

from __future__ import annotations

import os
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from avatar_app.ui.main_window import MainWindow, StartOptions


def run_app(options: StartOptions = StartOptions()) -> int:
    import cv2

    # The window says in its own words when a camera does not open; OpenCV's warnings would only add noise
    # in the terminal (it logs every camera index it probes).
    cv2.setLogLevel(0)  # 0: silent
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "avatar-app"])
    app.setApplicationName("avatar_app")
    app.setApplicationDisplayName("avatar_app")
    window = MainWindow(options=options)
    window.show()
    # Qt's event loop does not let Python see Ctrl+C; a timer gives it a chance, and the window closes as if
    # its close button were pressed (so threads stop and a recording is finished).
    previous = signal.signal(signal.SIGINT, lambda *_: window.close())
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    try:
        return int(app.exec())
    finally:
        window.shutdown()  # the loop may also end without the window being closed (a session logging out)
        ticker.stop()
        signal.signal(signal.SIGINT, previous)


def display_problem() -> str | None:
    """Why no window can open here, in one line (None when one can): no display, or a missing X library that
    would otherwise make Qt abort with a long message."""
    if sys.platform != "linux" or os.environ.get("QT_QPA_PLATFORM", "") not in ("", "xcb"):
        return None
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no display to open a window on (DISPLAY is not set) - run it in a desktop session"
    if os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY"):
        return None
    import ctypes.util

    if ctypes.util.find_library("xcb-cursor") is None:
        return "Qt needs the X library libxcb-cursor - install it (Debian/Ubuntu: sudo apt install libxcb-cursor0)"
    return None
