"""The window's "Check set-up…": the same checks as `avatar-app doctor`, off the GUI thread, shown in a message box;
and the Qt check that `doctor` runs in a child process."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from avatar_app.pipeline import checks
from avatar_app.pipeline.checks import Check
from avatar_app.ui import qt
from avatar_app.ui.panels import doctor as panel

FAKE = [
    Check("face tracker", True, True, "MediaPipe starts"),
    Check("virtual camera", False, False, "no v4l2loopback device", "load it: sudo modprobe v4l2loopback",
          "Linux needs the v4l2loopback kernel module.\n    sudo modprobe v4l2loopback"),
    Check("window", True, True, "Qt starts"),
]


def report_box(qtbot, window, timeout=120000) -> QMessageBox:
    qtbot.waitUntil(lambda: window.setup_check.box is not None and window.setup_check.box.isVisible(), timeout=timeout)
    return window.setup_check.box


def test_check_set_up_shows_the_report_in_a_message_box(qtbot, make_window, monkeypatch):
    seen = []
    monkeypatch.setattr(panel, "run_checks", lambda options, window: seen.append((options, window())) or list(FAKE))
    window = make_window()
    action = window.setup_check.action
    assert action.text() == "Check set-up\u2026"
    assert action in [a for menu in window.menuBar().actions() for a in menu.menu().actions()]  # Help
    action.trigger()
    box = report_box(qtbot, window)
    assert box.text().startswith("Ready")  # the virtual camera is optional
    assert box.icon() == QMessageBox.Icon.Information
    assert "no v4l2loopback device" in box.informativeText() and "sudo modprobe" in box.informativeText()
    assert "\u2717 virtual camera: no v4l2loopback device" in box.detailedText()
    assert "Linux needs the v4l2loopback kernel module" in box.detailedText()  # the steps, to copy
    options, window_line = seen[0]
    assert options.recordings_dir == window.outputs.recordings_dir
    assert window_line.ok and "offscreen" in window_line.found  # the running window is the Qt check
    assert action.isEnabled()
    box.close()


def test_a_needed_failure_shows_a_warning(qtbot, make_window, monkeypatch):
    broken = [Check("face tracker", False, True, "MediaPipe's face mesh does not start", "reinstall MediaPipe")]
    monkeypatch.setattr(panel, "run_checks", lambda options, window: broken)
    window = make_window()
    window.setup_check.action.trigger()
    box = report_box(qtbot, window)
    assert box.icon() == QMessageBox.Icon.Warning
    assert box.text().startswith("Not ready: face tracker")
    box.close()


def test_the_real_checks_run_off_the_gui_thread_and_count_the_windows_own_virtual_camera(
        qtbot, make_window, fake_virtual_camera):
    window = make_window()
    window.vcam_action.setChecked(True)
    qtbot.waitUntil(lambda: "fakecam" in window.vcam_label.text(), timeout=10000)
    window.setup_check.action.trigger()
    assert not window.setup_check.action.isEnabled()  # running; a second click is ignored
    box = report_box(qtbot, window)
    by_name = {c.name: c for c in window.setup_check.checks}
    assert by_name["virtual camera"].ok and "in use by this window" in by_name["virtual camera"].found
    assert by_name["face tracker"].ok and by_name["mesh renderer"].ok and by_name["window"].ok
    assert box.text().startswith("Ready")
    box.close()


def test_the_windows_camera_list_uses_the_checks_probe():
    from avatar_app.ui import cameras

    assert cameras.find_cameras is checks.find_cameras


def test_the_recordings_folder_doctor_checks_is_the_windows():
    from avatar_app.ui.main_window import default_recordings_dir

    assert checks.default_recordings_dir() == default_recordings_dir()


# -- the Qt check of `avatar-app doctor` (a child process) ----------------------------------------------------
def test_qt_offscreen_counts_as_working_but_says_so(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    check = qt.window_check()
    assert check.ok and check.needed
    assert "offscreen" in check.line()


def test_a_missing_platform_plugin_is_one_line_not_an_abort(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "nosuchplugin")
    check = qt.window_check()
    assert not check.ok and check.needed
    line = check.line()
    assert "\n" not in line
    assert 'no platform plug-in "nosuchplugin"' in line and "unset QT_QPA_PLATFORM" in line and "offscreen" in line


XCB_CURSOR = """qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.
qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was found.
This application failed to start because no Qt platform plugin could be initialized.

Available platform plugins are: minimal, offscreen, xcb, wayland.
"""


@pytest.mark.parametrize("display, installed, words", [
    (":0", False, ["libxcb-cursor0, which is missing", "sudo apt install libxcb-cursor0"]),
    (None, False, ["libxcb-cursor0", "no display (DISPLAY is not set)", "desktop session"]),
    # Qt names the library whenever xcb fails; with it installed, the missing display is the whole story
    (None, True, ["no display to open a window on (DISPLAY is not set)", "desktop session"]),
])
def test_qts_xcb_complaint_becomes_what_to_install(monkeypatch, display, installed, words):
    monkeypatch.setattr(qt.ctypes.util, "find_library",
                        lambda name: "libxcb-cursor.so.0" if installed and name == "xcb-cursor" else None)
    monkeypatch.setattr(qt.sys, "platform", "linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if display is None:
        monkeypatch.delenv("DISPLAY", raising=False)
    else:
        monkeypatch.setenv("DISPLAY", display)
    found, fix = qt._why_not(XCB_CURSOR, -6)
    for word in words:
        assert word in f"{found} - {fix}"
    assert installed != ("libxcb-cursor0" in found)


def test_no_display_and_other_broken_plugins(monkeypatch):
    monkeypatch.setattr(qt.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":9")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    found, fix = qt._why_not('qt.qpa.xcb: could not connect to display :9\n', -6)
    assert "no display to open a window on (DISPLAY is :9)" in found and "desktop session" in fix
    found, fix = qt._why_not('Could not load the Qt platform plugin "xcb" in "" even though it was found.\n', -6)
    assert '"xcb" platform plug-in does not load' in found and "QT_DEBUG_PLUGINS=1" in fix


def test_no_pyside6_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setattr(qt, "qt_missing", lambda: True)
    check = qt.window_check()
    assert not check.ok and '.[gui]' in check.line()

