"""Whether Qt is there at all, and whether it can open a window here (the "window" line of `avatar-app doctor`):
asked before anything of the window is imported (this module imports no Qt itself until asked)."""

from __future__ import annotations

import ctypes.util
import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checks (OpenCV, NumPy) are imported when a check runs, not with qt_missing()
    from avatar_app.pipeline.checks import Check

QT_START_TIMEOUT_S = 30.0
GUI_INSTALL = 'pip install -e ".[gui]"'
# Started in a child process: a Qt that finds no usable platform plug-in aborts the whole process.
_PROBE = ("from PySide6.QtCore import qVersion\n"
          "from PySide6.QtWidgets import QApplication\n"
          "app = QApplication(['avatar-app'])\n"
          "print(app.platformName(), qVersion())\n")


def qt_missing() -> bool:
    """True when PySide6 cannot be imported (the [gui] extra is not installed)."""
    try:
        import PySide6  # noqa: F401
    except ImportError:
        return True
    return False


def window_check(timeout: float = QT_START_TIMEOUT_S) -> Check:
    """Can a QApplication start on this display? Tried in a child process, so a missing xcb plug-in or no
    display ends in one line here instead of aborting the caller. Offscreen counts, and is said."""
    from avatar_app.pipeline.checks import Check

    name = "window"
    if qt_missing():
        return Check(name, False, True, "PySide6 (Qt) is not installed", GUI_INSTALL)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                              errors="replace")
    except subprocess.TimeoutExpired:
        return Check(name, False, True, f"Qt did not start within {timeout:g} s",
                     "try again; if it hangs again, run avatar-app in a desktop session")
    words = done.stdout.split()
    if done.returncode == 0 and len(words) >= 2:
        return _started(words[0], words[1])
    found, fix = _why_not(done.stderr, done.returncode)
    return Check(name, False, True, found, fix)


def running_window_check() -> Check:
    """The same line from inside the running window (Qt obviously starts: which plug-in and version)."""
    from PySide6.QtCore import qVersion
    from PySide6.QtGui import QGuiApplication

    return _started(QGuiApplication.platformName(), qVersion())


def _started(platform_name: str, version: str) -> Check:
    from avatar_app.pipeline.checks import Check

    if platform_name == "offscreen":
        return Check("window", True, True, f"Qt {version} starts offscreen (QT_QPA_PLATFORM=offscreen): it works, "
                                           "but no window is shown")
    return Check("window", True, True, f"Qt {version} starts on this display (platform plug-in \"{platform_name}\")")


def _why_not(stderr: str, returncode: int) -> tuple[str, str]:
    """Qt's many-line complaint as what is wrong and what to do, each in a few words."""
    no_display = (sys.platform == "linux" and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
                  and os.environ.get("QT_QPA_PLATFORM", "") in ("", "xcb"))
    display_fix = "run it in a desktop session (QT_QPA_PLATFORM=offscreen only for tests)"
    # Qt names libxcb-cursor0 whenever its xcb plug-in fails, even when the library is there and only the
    # display is missing: blame the library only when it really cannot be found.
    if "xcb-cursor0" in stderr and ctypes.util.find_library("xcb-cursor") is None:
        found = "Qt's xcb plug-in needs libxcb-cursor0, which is missing"
        fix = "sudo apt install libxcb-cursor0 (Fedora: xcb-util-cursor)"
        if no_display:
            return f"{found}, and there is no display (DISPLAY is not set)", f"{fix}, and {display_fix}"
        return found, fix
    if no_display or "could not connect to display" in stderr:
        shown = os.environ.get("DISPLAY") or "not set"
        return f"no display to open a window on (DISPLAY is {shown})", display_fix
    missing = re.search(r'Could not find the Qt platform plugin "([^"]*)"', stderr)
    available = re.search(r"Available platform plugins are: ([^\n]*?)\.?\s*$", stderr, re.MULTILINE)
    if missing:
        choices = f" or set it to one of: {available.group(1)}" if available else ""
        return (f"Qt has no platform plug-in \"{missing.group(1)}\" (QT_QPA_PLATFORM)",
                f"unset QT_QPA_PLATFORM{choices}")
    broken = re.search(r'Could not load the Qt platform plugin "([^"]*)"', stderr)
    if broken:
        return (f"Qt's \"{broken.group(1)}\" platform plug-in does not load (a system library is missing)",
                "run QT_DEBUG_PLUGINS=1 avatar-app to see which library, and install it "
                "(Debian/Ubuntu: sudo apt install libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4)")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1][:200] if lines else f"exit code {returncode}"
    return f"Qt does not start ({reason})", f"reinstall Qt: {GUI_INSTALL}"
