"""The virtual camera sink: avatar frames become a camera that Zoom, Teams, OBS or a browser can pick.

pyvirtualcam drives whatever the OS offers (Linux: a v4l2loopback device; Windows: OBS's virtual camera or
Unity Capture; macOS: OBS's camera extension). The camera's size and rate are fixed when it opens, because
call apps do not expect a camera to change format mid-call, so every frame is fitted (scaled and padded) into
that size: switching to a portrait of another shape never breaks the stream.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import numpy as np

from avatar_app.pipeline.frame import Frame
from avatar_app.images import fit_image
from avatar_app.errors import DeviceError

CARD_LABEL = "avatar_app"  # the name the Linux device shows in call apps, as the modprobe line below sets it
LINUX_MODPROBE = f"sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label={CARD_LABEL}"


@dataclass(frozen=True)
class VirtualCameraSettings:
    """``width`` x ``height`` at ``fps`` is what call apps see. ``backend`` / ``device``: None lets
    pyvirtualcam take the first that works (names as in pyvirtualcam: "v4l2loopback", "obs", "unitycapture")."""

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    backend: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        if not (16 <= self.width <= 4096 and 16 <= self.height <= 4096):
            raise ValueError(f"virtual camera size must be 16 to 4096 pixels a side, got {self.width}x{self.height}")
        if self.width % 2 or self.height % 2:  # the devices' YUV formats need even sizes
            raise ValueError(f"virtual camera size must be even, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"virtual camera fps must be 1 to 120, got {self.fps}")


class VirtualCameraError(DeviceError):
    """No virtual camera could be opened. ``str()`` is one line; ``instructions`` holds the set-up steps
    for this OS (what a dialog shows)."""

    def __init__(self, message: str, instructions: str, reason: str = ""):
        super().__init__(message)
        self.instructions = instructions
        self.reason = reason


def os_name_of(system: str | None) -> str:
    system = (system or platform.system()).lower()
    if system.startswith("win"):
        return "windows"
    if system in ("darwin", "macos", "mac"):
        return "macos"
    return "linux"


def setup_instructions(system: str | None = None) -> str:
    """What to do, step by step, so that a virtual camera exists on this OS (or on ``system``). Commands stand
    on their own lines, indented by four spaces, so they can be copied whole."""
    os_name = os_name_of(system)
    if os_name == "windows":
        return (
            "Windows needs a virtual camera driver, installed once:\n"
            "1. Install OBS Studio (obsproject.com), open it, press \"Start Virtual Camera\" once, then stop it and"
            " close OBS. The \"OBS Virtual Camera\" device stays installed.\n"
            "   Or install Unity Capture instead (run its Install.bat as administrator).\n"
            "2. Switch the virtual camera on here again (Space).\n"
            "3. In Zoom, Teams or your browser choose the camera \"OBS Virtual Camera\".\n"
            "Only one program can feed it: if OBS is running its own virtual camera, stop it there first."
        )
    if os_name == "macos":
        return (
            "macOS needs OBS's camera extension, installed once:\n"
            "1. Install OBS Studio 30 or newer (obsproject.com), open it and press \"Start Virtual Camera\" once;"
            " allow the system extension in System Settings > Privacy & Security when asked; then stop it and"
            " close OBS.\n"
            "2. Switch the virtual camera on here again (Space).\n"
            "3. In Zoom, Teams or your browser choose \"OBS Virtual Camera\" (restart the call app if it was open"
            " while the extension was installed).\n"
            "Only one program can feed it: if OBS is running its own virtual camera, stop it there first."
        )
    return (
        "Linux needs the v4l2loopback kernel module. In a terminal:\n"
        "1. Install it (Fedora: v4l2loopback from RPM Fusion; Arch: v4l2loopback-dkms):\n"
        "    sudo apt install v4l2loopback-dkms\n"
        "2. Load it:\n"
        f"    {LINUX_MODPROBE}\n"
        "   To have it after every reboot as well:\n"
        "    echo v4l2loopback | sudo tee /etc/modules-load.d/v4l2loopback.conf\n"
        f"    echo \"options v4l2loopback devices=1 exclusive_caps=1 card_label={CARD_LABEL}\" | sudo tee"
        " /etc/modprobe.d/v4l2loopback.conf\n"
        "3. If modprobe answers \"Key was rejected by service\" or \"Operation not permitted\", Secure Boot is"
        " blocking the unsigned module: enrol the DKMS signing key, reboot and confirm it, or switch Secure Boot"
        " off:\n"
        "    sudo mokutil --import /var/lib/dkms/mok.pub\n"
        "4. Switch the virtual camera on here again (Space).\n"
        f"5. In Zoom, Teams, OBS or your browser choose the camera \"{CARD_LABEL}\".\n"
        "Only one program can feed the device: if another one writes to it, close that one first."
    )


def _one_line_fix(system: str | None = None) -> str:
    os_name = os_name_of(system)
    if os_name == "windows":
        return "install OBS Studio and start its virtual camera once (or install Unity Capture), then try again"
    if os_name == "macos":
        return "install OBS Studio and start its virtual camera once, then try again"
    return f"install v4l2loopback-dkms and run: {LINUX_MODPROBE} (with Secure Boot on, sign the module first)"


class VirtualCameraSink:
    """A sink that sends BGR avatar frames to a virtual camera; ``open()`` before the first ``write()``.

    Opening fails with a VirtualCameraError (a DeviceError) whose message says what to install on this OS.
    ``backend`` and ``device`` name what pyvirtualcam chose, for a status bar.
    """

    name = "virtual-camera"

    def __init__(self, settings: VirtualCameraSettings = VirtualCameraSettings()):
        self.settings = settings
        self._camera = None

    @property
    def size(self) -> tuple[int, int]:
        return self.settings.width, self.settings.height

    @property
    def is_open(self) -> bool:
        return self._camera is not None

    @property
    def backend(self) -> str | None:
        return None if self._camera is None else self._camera.backend

    @property
    def device(self) -> str | None:
        if self._camera is None:
            return None
        try:
            return self._camera.device
        except Exception:  # noqa: BLE001 - some backends cannot name their device; that is only cosmetic
            return None

    def describe(self) -> str:
        """E.g. 'v4l2loopback /dev/video4, 1280x720 at 30 fps' (or 'off')."""
        if self._camera is None:
            return "off"
        s = self.settings
        device = f" {self.device}" if self.device else ""
        return f"{self.backend}{device}, {s.width}x{s.height} at {s.fps:g} fps"

    def open(self) -> None:
        if self._camera is not None:
            return
        s = self.settings
        try:
            import pyvirtualcam
        except ImportError:
            raise VirtualCameraError(
                "virtual camera: pyvirtualcam is not installed - pip install pyvirtualcam",
                "Install pyvirtualcam: pip install pyvirtualcam\n\n" + setup_instructions(),
            ) from None
        try:
            self._camera = pyvirtualcam.Camera(
                s.width, s.height, s.fps, fmt=pyvirtualcam.PixelFormat.BGR, backend=s.backend, device=s.device,
            )
        except (RuntimeError, KeyError, ValueError, OSError) as err:
            # pyvirtualcam lists each backend's reason on its own line (RuntimeError); an unknown backend name
            # is a KeyError. Either way the fix is the same: a device must exist and be free.
            reason = " / ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__
            raise VirtualCameraError(
                f"no virtual camera available ({reason}) - {_one_line_fix()}",
                setup_instructions(),
                reason,
            ) from None

    def process(self, frame: Frame) -> None:
        """The sink stage: the call's picture goes out (the avatar image, fitted, without a framing stage)."""
        self.write(frame.picture)

    def write(self, image_bgr: np.ndarray) -> None:
        if self._camera is None:
            raise RuntimeError("VirtualCameraSink.write() before open()")
        self._camera.send(fit_image(image_bgr, self.size))

    def close(self) -> None:
        if self._camera is not None:
            camera, self._camera = self._camera, None
            camera.close()
