"""A main window on temporary settings, data and recording folders, with messages collected instead of shown."""

from __future__ import annotations

import threading

import pytest

try:  # the desktop app is an extra ([gui]); without it these tests are not collected
    import PySide6  # noqa: F401
    import pytestqt  # noqa: F401
except ImportError:
    collect_ignore_glob = ["test_*.py"]

SMALL = 128  # the avatar's size in these tests: the behaviour is the same, and it is quick on two cores


class FakeVirtualCamera:
    """Stands in for a pyvirtualcam backend (registered under the name 'fakecam')."""

    sent: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height = width, height
        FakeVirtualCamera.sent = []

    def send(self, frame):
        FakeVirtualCamera.sent.append(frame.copy())

    def close(self):
        pass

    def device(self):
        return "/dev/fake0"

    def native_fourcc(self):
        return None


@pytest.fixture
def fake_virtual_camera(monkeypatch):
    import pyvirtualcam.camera

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fakecam": FakeVirtualCamera})
    return FakeVirtualCamera


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    """make_window(**options) -> a shown MainWindow; every call with the same tmp_path shares its settings.

    The generated driver turns her head and never holds still for long: its windows calibrate as soon as it
    holds still for a tenth of a second (tests/ui/test_calibration_flow.py checks the real timing)."""
    from PySide6.QtCore import QSettings

    import avatar_app.ui.pipeline as live
    from avatar_app.pipeline.calibration import CalibrationSettings
    from avatar_app.ui.main_window import MainWindow, StartOptions

    monkeypatch.setattr(live, "CALIBRATION", CalibrationSettings(hold_s=0.05, max_speed=1e9, max_turn=1.0))

    ini = tmp_path / "settings.ini"
    first = not ini.exists()
    store = QSettings(str(ini), QSettings.Format.IniFormat)
    if first:
        store.setValue("size", SMALL)
        store.sync()

    windows = []  # strong references: a window whose wrapper is collected is destroyed without being closed

    def make(notify=True, probe_cameras=False, **options):
        window = MainWindow(
            store=QSettings(str(ini), QSettings.Format.IniFormat),
            data_dir=tmp_path / "data",
            recordings_dir=tmp_path / "recordings",
            options=StartOptions(**options),
            notify=(lambda title, text: None) if notify else None,  # window.messages keeps them all
            probe_cameras=probe_cameras,  # True: with find_cameras patched, or it opens this machine's cameras
        )
        windows.append(window)
        with qtbot.waitActive(window):  # keyboard shortcuts go to the active window only
            window.show()
            window.activateWindow()
        return window

    yield make
    for window in windows:
        window.close()
        window.deleteLater()


def wait_for_avatar(qtbot, window, timeout=20000):
    qtbot.waitUntil(lambda: window.avatar is not None, timeout=timeout)


def wait_for_frames(qtbot, window, n=5, timeout=60000):
    start = window.frames_shown
    qtbot.waitUntil(lambda: window.frames_shown >= start + n, timeout=timeout)


def avatar_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("avatar-") and t.is_alive()]

