"""The virtual camera sink: fixed format whatever comes in, and set-up steps for each OS when there is none."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_app.errors import DeviceError
from avatar_app.pipeline.virtual_camera import (
    LINUX_MODPROBE,
    VirtualCameraSettings,
    VirtualCameraSink,
    fit_image,
    setup_instructions,
)


class FakeBackend:
    frames: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        FakeBackend.frames = []
        self.size = (width, height)

    def send(self, frame):
        FakeBackend.frames.append(frame.copy())

    def close(self):
        pass

    def device(self):
        return "/dev/video9"

    def native_fourcc(self):
        return None


@pytest.fixture
def fake_backend(monkeypatch):
    import pyvirtualcam.camera

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fake": FakeBackend})
    return FakeBackend


def test_fit_image_keeps_the_aspect_and_centres_on_black():
    tall = np.full((512, 288, 3), 200, np.uint8)
    out = fit_image(tall, (640, 360))
    assert out.shape == (360, 640, 3)
    assert out[:, :200].max() == 0 and out[:, -200:].max() == 0  # bars at the sides
    assert out[180, 320].tolist() == [200, 200, 200]
    assert fit_image(out, (640, 360)) is not None and fit_image(out, (640, 360)).shape == out.shape


def test_frames_of_any_size_go_out_at_the_camera_size_and_the_backend_is_named(fake_backend):
    sink = VirtualCameraSink(VirtualCameraSettings(width=640, height=480, fps=25))
    sink.open()
    assert sink.backend == "fake" and sink.device == "/dev/video9"
    assert sink.describe() == "fake /dev/video9, 640x480 at 25 fps"
    for shape in ((512, 288, 3), (256, 256, 3), (480, 640, 3)):
        sink.write(np.full(shape, 90, np.uint8))
    sink.close()
    assert len(fake_backend.frames) == 3
    assert all(f.size == 640 * 480 * 3 for f in fake_backend.frames)  # BGR, as the sink declared
    assert not sink.is_open and sink.describe() == "off"


def test_no_backend_is_a_device_error_with_the_linux_steps(monkeypatch):
    import pyvirtualcam

    def no_device(*args, **kwargs):
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. "
                           "Did you run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")

    monkeypatch.setattr(pyvirtualcam, "Camera", no_device)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    with pytest.raises(DeviceError) as caught:
        VirtualCameraSink().open()
    err = caught.value
    assert "\n" not in str(err) and LINUX_MODPROBE in str(err)
    assert "v4l2loopback-dkms" in err.instructions and "Secure Boot" in err.instructions
    assert "No v4l2 loopback device" in err.reason


@pytest.mark.parametrize("system, words", [
    ("Windows", ["OBS", "Start Virtual Camera", "Unity Capture"]),
    ("Darwin", ["OBS", "Start Virtual Camera", "System Settings"]),
    ("Linux", [LINUX_MODPROBE, "v4l2loopback-dkms", "Secure Boot", "card_label=avatar_app"]),
])
def test_each_os_gets_its_own_steps(system, words):
    text = setup_instructions(system)
    for word in words:
        assert word in text


def test_settings_refuse_sizes_call_apps_cannot_take():
    with pytest.raises(ValueError):
        VirtualCameraSettings(width=641, height=480)
    with pytest.raises(ValueError):
        VirtualCameraSettings(fps=0)
