"""The set-up's self-check (`avatar-app doctor`, and "Check set-up…" in the window): one Check per thing the app
relies on, each saying what was found and, when it fails, what to do. No Qt here: the window's check is handed in.

Which checks are *needed* (a failure makes `doctor` exit 1) is decided here and documented in the README: the face
tracker, the mesh renderer and the window always; the virtual camera and onnxruntime only when asked for.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from avatar_app.errors import first_line
from avatar_app.pipeline import microphone
from avatar_app.pipeline.sources import quiet_opencv
from avatar_app.pipeline.virtual_camera import (
    CARD_LABEL,
    LINUX_MODPROBE,
    VirtualCameraError,
    VirtualCameraSettings,
    VirtualCameraSink,
    os_name_of,  # one reading of platform.system() for the set-up steps and for these checks
    setup_instructions,
)

MAX_CAMERA_INDEX = 6  # cameras 0..5
LOW_DISK_BYTES = 2 * 1024 ** 3  # under this much free, a long recording may stop when the disk fills
GB = 1024 ** 3
VIDEO_FILE_FIX = ("drive the avatar with the demo face or a video file instead ('Demo (no camera)' or 'Video file…' "
                  "in the Source list; avatar-app gui --source demo|VIDEO)")
# A Relu on a 1 x 4 float tensor (ONNX IR 7, opset 13): the smallest model that makes an execution provider
# run a kernel, so CUDA is tried for real without shipping a file or needing the onnx package.
_TINY_ONNX = (b'\x08\x07\x12\x00:@\n\x0c\n\x01x\x12\x01y"\x04Relu\x12\x06doctorZ\x13\n\x01x\x12\x0e\n\x0c\x08\x01'
              b'\x12\x08\n\x02\x08\x01\n\x02\x08\x04b\x13\n\x01y\x12\x0e\n\x0c\x08\x01\x12\x08\n\x02\x08\x01\n'
              b'\x02\x08\x04B\x04\n\x00\x10\r')
# How pyvirtualcam's backends say that another program holds the device (v4l2: EBUSY; OBS: "in use", "could
# not be started").
_BUSY = re.compile(r"busy|in use|already|could not be started", re.IGNORECASE)


@dataclass(frozen=True)
class Check:
    """One line of the report. ``needed``: the app cannot run without it (a failure makes `doctor` exit 1);
    ``found``: what was seen, in the user's words; ``fix``: what to do when it fails; ``details``: longer
    steps (the virtual camera's set-up for this OS), for a dialog or --json."""

    name: str
    ok: bool
    needed: bool
    found: str
    fix: str = ""
    details: str = ""

    def line(self, marks: tuple[str, str] = ("\u2713", "\u2717")) -> str:
        """E.g. '✗ virtual camera: no v4l2loopback device - install ... (optional)'."""
        text = f"{marks[0] if self.ok else marks[1]} {self.name}: {self.found}"
        if not self.ok:
            text += f" - {self.fix}" if self.fix else ""
            text += "" if self.needed else " (optional)"
        return text


@dataclass(frozen=True)
class DoctorOptions:
    """What to check. ``recordings_dir``: None is the default folder; ``*_needed``: make that check count for
    the exit code; ``*_in_use``: the window already holds that camera (an index) or the virtual camera (its
    description), so it is not opened a second time and counts as working."""

    recordings_dir: Path | None = None
    virtual_camera_needed: bool = False
    neural_needed: bool = False
    camera_in_use: str | None = None
    virtual_camera_in_use: str | None = None


def run_checks(options: DoctorOptions, window: Callable[[], Check]) -> list[Check]:
    """Every check, in the report's order; one that raises becomes a failed line, never a traceback."""
    folder = options.recordings_dir or default_recordings_dir()
    table: list[tuple[str, bool, Callable[[], Check]]] = [
        ("cameras", False, lambda: check_cameras(in_use=options.camera_in_use)),
        ("virtual camera", options.virtual_camera_needed,
         lambda: check_virtual_camera(options.virtual_camera_needed, options.virtual_camera_in_use)),
        ("onnxruntime", options.neural_needed, lambda: check_onnxruntime(options.neural_needed)),
        ("CUDA", False, check_cuda),
        ("face tracker", True, check_face_tracker),
        ("selfie segmentation", False, check_selfie_segmentation),
        ("mesh renderer", True, check_mesh_renderer),
        ("window", True, window),
        ("microphone", False, check_microphone),
        ("disk space", False, lambda: check_disk_space(folder)),
    ]
    out = []
    for name, needed, check in table:
        try:
            out.append(check())
        except Exception as err:  # noqa: BLE001 - a check must report, whatever breaks inside it
            out.append(Check(name, False, needed, f"the check itself failed ({type(err).__name__}: {first_line(err)})",
                             "report this with the output of avatar-app doctor"))
    return out


def all_needed_ok(checks: list[Check]) -> bool:
    return all(c.ok for c in checks if c.needed)


def report_lines(checks: list[Check], marks: tuple[str, str] = ("\u2713", "\u2717")) -> list[str]:
    """One line per check, then the verdict."""
    return [c.line(marks) for c in checks] + [verdict(checks)]


def verdict(checks: list[Check]) -> str:
    broken = [c.name for c in checks if c.needed and not c.ok]
    optional = [c.name for c in checks if not c.needed and not c.ok]
    if broken:
        return f"Not ready: {', '.join(broken)} must work for the app to run (each line says what to do)."
    if optional:
        return f"Ready: everything the app needs works (optional, not working: {', '.join(optional)})."
    return "Ready: everything works."


def as_json(checks: list[Check]) -> dict:
    return {"ok": all_needed_ok(checks), "checks": [asdict(c) for c in checks]}


# -- cameras --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraProbe:
    index: int
    opens: bool
    picture: bool  # it also sent a frame


def open_camera(index: int):
    """The camera opener (tests put a fake in its place)."""
    return cv2.VideoCapture(index)


def camera_candidates(max_index: int = MAX_CAMERA_INDEX) -> list[int]:
    """The camera indices worth trying. On Linux only existing device nodes (OpenCV warns for every missing
    one), and the v4l2loopback device this app feeds is left out: driving the avatar with itself is a loop."""
    if platform.system() != "Linux":
        return list(range(max_index))
    out = []
    for index in range(max_index):
        if not Path(f"/dev/video{index}").exists():
            continue
        try:
            name = Path(f"/sys/class/video4linux/video{index}/name").read_text().strip()
        except OSError:
            name = ""
        if name != CARD_LABEL:
            out.append(index)
    return out


def probe_cameras(max_index: int = MAX_CAMERA_INDEX, skip: tuple[int, ...] = ()) -> list[CameraProbe]:
    """Open each candidate camera once and read one frame (``skip``: indices not to touch)."""
    with quiet_opencv():  # OpenCV logs each camera that does not open; the report says it instead
        out = []
        for index in camera_candidates(max_index):
            if index in skip:
                continue
            capture = open_camera(index)
            try:
                opens = bool(capture.isOpened())
                out.append(CameraProbe(index, opens, opens and bool(capture.read()[0])))
            finally:
                capture.release()
        return out


def find_cameras(max_index: int = MAX_CAMERA_INDEX) -> list[str]:
    """Indices (as strings) of the cameras that open and send a picture, our own virtual camera excluded."""
    return [str(p.index) for p in probe_cameras(max_index) if p.picture]


def check_cameras(max_index: int = MAX_CAMERA_INDEX, in_use: str | None = None) -> Check:
    """Never needed: a video file drives the app as well as a camera does."""
    held = int(in_use) if in_use is not None and str(in_use).isdigit() else None
    probes = probe_cameras(max_index, skip=() if held is None else (held,))
    working = [str(p.index) for p in probes if p.picture]
    named = ([f"camera {held} (in use by this window)"] if held is not None else []) + [f"camera {i}" for i in working]
    if named:
        return Check("cameras", True, False, f"{', '.join(named)} open{'s' if len(named) == 1 else ''}")
    if probes:
        what = ", ".join(f"camera {p.index} {'opens but sends no picture' if p.opens else 'does not open'}"
                         for p in probes)
        return Check("cameras", False, False, what,
                     f"close other programs that use the camera and check it is connected, or {VIDEO_FILE_FIX}")
    tried = "/dev/video0-" if platform.system() == "Linux" else "indices 0-"
    return Check("cameras", False, False, f"no camera found ({tried}{max_index - 1})",
                 f"connect a camera, or {VIDEO_FILE_FIX}")


# -- virtual camera -------------------------------------------------------------------------------------------
def check_virtual_camera(needed: bool = False, in_use: str | None = None, system: str | None = None) -> Check:
    """Opens the virtual camera for a moment, as switching it on in the window does."""
    name = "virtual camera"
    if in_use:
        return Check(name, True, needed, f"in use by this window ({in_use})")
    steps = setup_instructions(system)
    if importlib.util.find_spec("pyvirtualcam") is None:
        return Check(name, False, needed, "pyvirtualcam is not installed", "pip install pyvirtualcam", steps)
    sink = VirtualCameraSink(VirtualCameraSettings())
    try:
        sink.open()
    except VirtualCameraError as err:
        reason = err.reason or first_line(err)
        if _BUSY.search(reason):
            return Check(name, False, needed, f"the virtual camera is taken by another program ({reason})",
                         "close the program that feeds it (OBS's own virtual camera, another avatar_app), "
                         "then try again", steps)
        found, fix = _no_virtual_camera(system, reason)
        return Check(name, False, needed, found, fix, steps)
    try:
        return Check(name, True, needed, f"{sink.describe()} opens (call apps see it as "
                                         f"\"{_camera_label(system)}\")")
    finally:
        sink.close()


def _camera_label(system: str | None) -> str:
    return CARD_LABEL if os_name_of(system) == "linux" else "OBS Virtual Camera"


def _no_virtual_camera(system: str | None, reason: str) -> tuple[str, str]:
    """What is missing and what to do, from the set-up steps for this OS."""
    steps = setup_instructions(system)
    if os_name_of(system) != "linux":
        first = next((line[3:] for line in steps.splitlines() if line.startswith("1. ")), steps.splitlines()[0])
        return f"no virtual camera ({reason})", first
    install = next((line.strip() for line in steps.splitlines() if "apt install" in line), "")
    module = _v4l2loopback_module()
    if module == "loaded":
        return (f"v4l2loopback is loaded but gave no usable device ({reason})",
                f"reload it with a device: sudo modprobe -r v4l2loopback && {LINUX_MODPROBE}")
    if module == "installed":
        return ("no v4l2loopback device (/dev/video*): the module is installed but not loaded",
                f"load it: {LINUX_MODPROBE}")
    return ("no v4l2loopback device (/dev/video*): the v4l2loopback module is not installed",
            f"install it ({install}; Fedora: v4l2loopback from RPM Fusion) and load it: {LINUX_MODPROBE}")


def _v4l2loopback_module() -> str:
    """'loaded', 'installed' (modinfo knows it) or 'missing'."""
    if Path("/sys/module/v4l2loopback").exists():
        return "loaded"
    modinfo = shutil.which("modinfo") or ("/sbin/modinfo" if Path("/sbin/modinfo").exists() else None)
    if modinfo is None:
        return "missing"
    try:
        done = subprocess.run([modinfo, "v4l2loopback"], capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "missing"
    return "installed" if done.returncode == 0 else "missing"


# -- onnxruntime and CUDA -------------------------------------------------------------------------------------
def _distributions(*names: str) -> dict[str, str]:
    """The installed ones among ``names`` (distribution names) and their versions."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _onnxruntime():
    """The onnxruntime module, or None when it is not installed (tests stand in a fake)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


ORT_BUILDS = {"onnxruntime": "the CPU build ([cpu] extra)", "onnxruntime-gpu": "the GPU build ([gpu] extra)"}


def check_onnxruntime(needed: bool = False) -> Check:
    """onnxruntime runs the neural renderer; the mesh renderer (the default) does not need it."""
    name = "onnxruntime"
    ort = _onnxruntime()
    builds = _distributions(*ORT_BUILDS)
    if ort is None:
        return Check(name, False, needed, "not installed (only the neural renderer needs it)",
                     'pip install -e ".[cpu]" (or ".[gpu]" on a computer with an NVIDIA GPU)')
    providers = ", ".join(ort.get_available_providers())
    if len(builds) > 1:
        return Check(name, False, needed,
                     f"both onnxruntime and onnxruntime-gpu are installed (they overwrite each other); providers: "
                     f"{providers}",
                     'pip uninstall -y onnxruntime onnxruntime-gpu, then pip install -e ".[cpu]" or ".[gpu]"')
    build = next((f"{dist} {version}, {ORT_BUILDS[dist]}" for dist, version in builds.items()),
                 f"onnxruntime {getattr(ort, '__version__', '?')}")  # another build (DirectML, OpenVINO...)
    return Check(name, True, needed, f"{build}; providers: {providers}")


def check_microphone() -> Check:
    """Sound input (sounddevice and PortAudio) for recordings from a camera or the demo; without it they are
    silent."""
    name = "microphone"
    try:
        sd = microphone.sounddevice()
    except microphone.MicrophoneError as err:
        reason = first_line(err).split(" - ")[0].removeprefix("no sound input: ")
        return Check(name, False, False, f"no sound input ({reason}; recordings from a camera are silent)",
                     microphone.INSTALL_HINT)
    inputs = microphone.input_devices()
    try:
        default = sd.query_devices(kind="input")["name"]
    except Exception:  # noqa: BLE001 - PortAudioError: no default input device
        default = None
    if not inputs:
        return Check(name, False, False, "sound input works but no microphone was found",
                     "plug one in (or record without sound: --microphone off)")
    more = f" ({len(inputs)} inputs: {', '.join(inputs)})" if len(inputs) > 1 else ""
    if default is None:
        return Check(name, False, False, f"no default input device{more}",
                     "choose one with --microphone NAME, or set a default in the system's sound settings")
    return Check(name, True, False, f"default input: {default}{more}")


def nvidia_driver() -> str | None:
    """How an NVIDIA driver shows itself here (None: none found)."""
    version = Path("/proc/driver/nvidia/version")
    if version.exists():
        try:
            return version.read_text().splitlines()[0].strip()
        except (OSError, IndexError):
            return "NVIDIA driver"
    if shutil.which("nvidia-smi"):
        return "nvidia-smi"
    return None


def check_cuda() -> Check:
    """Never needed: without CUDA the neural renderer runs on the CPU. Listed CUDA is tried on a tiny model,
    because onnxruntime lists it even when the CUDA or cuDNN libraries it loads are missing."""
    name = "CUDA"
    ort = _onnxruntime()
    if ort is None:
        return Check(name, False, False, "not checked: onnxruntime is not installed",
                     'with an NVIDIA GPU: pip install -e ".[gpu]"')
    gpu_build = "onnxruntime-gpu" in _distributions("onnxruntime-gpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        driver = nvidia_driver()
        if not gpu_build and driver is None:
            return Check(name, False, False, "not available: no NVIDIA driver found, and onnxruntime is the CPU "
                         "build (the neural renderer runs on the CPU)",
                         'nothing to do without an NVIDIA GPU; with one, install its driver and the ".[gpu]" extra')
        if not gpu_build:
            return Check(name, False, False, "not available: an NVIDIA driver is present but onnxruntime is the "
                         "CPU build", 'pip uninstall -y onnxruntime && pip install -e ".[gpu]"')
        if driver is None:
            return Check(name, False, False, "not available: onnxruntime-gpu is installed but no NVIDIA driver "
                         "was found", "install the NVIDIA driver for your GPU")
        return Check(name, False, False, "not available: onnxruntime-gpu does not offer CUDA here",
                     "install the CUDA and cuDNN versions your onnxruntime-gpu release needs (onnxruntime.ai)")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: a CUDA that fails to load is reported below, in one line
    try:
        session = ort.InferenceSession(_TINY_ONNX, options, providers=["CUDAExecutionProvider"])
        if session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError("onnxruntime fell back to the CPU (its CUDA or cuDNN libraries did not load)")
        y = session.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})[0]
        if not np.array_equal(y, [[0, 2, 0, 4]]):
            raise RuntimeError(f"a test model gave a wrong result on CUDA: {y.tolist()}")
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        return Check(name, False, False, f"listed but not usable ({first_line(err, 200)})",
                     "install the CUDA and cuDNN versions your onnxruntime-gpu release needs (onnxruntime.ai), "
                     "or use --provider cpu")
    return Check(name, True, False, "usable: a test model ran on CUDAExecutionProvider")


# -- MediaPipe models and the renderer ------------------------------------------------------------------------
MEDIAPIPE_FIX = ("reinstall MediaPipe 0.10.21 (pip install --force-reinstall mediapipe==0.10.21): later releases "
                 "do not ship these models")


def shipped_portrait() -> Path:
    return Path(str(files("avatar_app.assets") / "portraits" / "mona_lisa.jpg"))


def _test_image() -> tuple[np.ndarray, str]:
    """The shipped Mona Lisa (a face to find), or a grey frame when the app's assets are missing."""
    from avatar_app.images import load_image

    path = shipped_portrait()
    if path.is_file():
        return load_image(path), "the shipped Mona Lisa"
    return np.full((256, 256, 3), 128, np.uint8), ""


def _mediapipe_version() -> str:
    return _distributions("mediapipe").get("mediapipe", "?")


def check_face_tracker() -> Check:
    """Needed: the tracker drives everything. Starts MediaPipe's face mesh and looks for the Mona Lisa's face."""
    name = "face tracker"
    if importlib.util.find_spec("mediapipe") is None:
        return Check(name, False, True, "MediaPipe is not installed", "pip install -e . (it brings mediapipe==0.10.21)")
    try:
        from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

        image, what = _test_image()
        tracker = FaceTracker(TrackerSettings(static_images=True, max_faces=1, smoothing=False))
        try:
            face = tracker.process(image)
        finally:
            tracker.close()
    except Exception as err:  # noqa: BLE001 - MediaPipe's start-up raises RuntimeError, OSError, ValueError...
        return Check(name, False, True, f"MediaPipe's face mesh does not start ({first_line(err, 200)})", MEDIAPIPE_FIX)
    version = _mediapipe_version()
    if not what:
        return Check(name, True, True, f"MediaPipe {version} face mesh starts (the shipped portraits are missing, "
                                       "so no face was looked for)")
    if face is None:
        return Check(name, False, True, f"MediaPipe {version} face mesh starts but finds no face in {what}",
                     MEDIAPIPE_FIX)
    return Check(name, True, True, f"MediaPipe {version} face mesh starts and finds the face in {what} "
                                   f"({len(face.points)} points)")


def check_selfie_segmentation() -> Check:
    """Not needed: the app does not cut out the background (yet); this says whether it could."""
    name = "selfie segmentation"
    try:
        from mediapipe.python import solutions
    except ImportError:
        return Check(name, False, False, "MediaPipe is not installed", "pip install -e .")
    if not hasattr(solutions, "selfie_segmentation"):
        return Check(name, False, False, f"not in MediaPipe {_mediapipe_version()}", MEDIAPIPE_FIX)
    from avatar_app.pipeline.tracker import quiet_native_logs  # the tracker's own silencer for MediaPipe's logs

    try:
        with quiet_native_logs():
            segmenter = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
            try:
                result = segmenter.process(np.full((144, 256, 3), 128, np.uint8))
            finally:
                segmenter.close()
    except Exception as err:  # noqa: BLE001
        return Check(name, False, False, f"MediaPipe's selfie segmentation does not start ({first_line(err, 200)})",
                     MEDIAPIPE_FIX)
    if getattr(result, "segmentation_mask", None) is None:
        return Check(name, False, False, "MediaPipe's selfie segmentation starts but returns no mask", MEDIAPIPE_FIX)
    return Check(name, True, False, f"MediaPipe {_mediapipe_version()} selfie segmentation starts "
                                    "(for the Blur and colour backgrounds)")


def check_mesh_renderer() -> Check:
    """Needed: the mesh renderer is the app's renderer that always works (no weights, any CPU). Draws one
    frame of the shipped Mona Lisa."""
    name = "mesh renderer"
    path = shipped_portrait()
    if not path.is_file():
        return Check(name, False, True, f"the shipped portraits are missing ({path.parent})",
                     "reinstall the app: pip install -e .")
    from avatar_app.errors import AvatarAppError
    from avatar_app.images import load_image
    from avatar_app.pipeline.avatar import create_avatar
    from avatar_app.pipeline.render import RenderSettings
    from avatar_app.pipeline.render.mesh import MeshRenderer

    try:
        avatar = create_avatar(load_image(path), name="Mona Lisa")
    except AvatarAppError as err:
        return Check(name, False, True, f"not checked: no face in the shipped Mona Lisa ({first_line(err)})",
                     "fix the face tracker first (see its line)")
    renderer = MeshRenderer()
    try:
        renderer.prepare(avatar, RenderSettings(size=256))
        image = renderer.render(avatar.landmarks)
    finally:
        renderer.close()
    w, h = renderer.output_size
    if image.shape != (h, w, 3) or not image.any():
        return Check(name, False, True, f"drew a blank or misshapen frame ({image.shape})",
                     "reinstall the app: pip install -e .")
    return Check(name, True, True, f"draws the shipped Mona Lisa ({w}x{h})")


# -- disk -----------------------------------------------------------------------------------------------------
def default_recordings_dir() -> Path:
    """Where the window records to: the user's Videos folder (Movies on macOS), then avatar_app; the same place
    Qt's MoviesLocation gives the window, worked out without Qt."""
    home = Path.home()
    if os_name_of(None) == "macos":
        return home / "Movies" / "avatar_app"
    if os_name_of(None) == "linux":
        return _xdg_videos_dir(home) / "avatar_app"
    return home / "Videos" / "avatar_app"


def _xdg_videos_dir(home: Path) -> Path:
    """XDG_VIDEOS_DIR from user-dirs.dirs (as Qt reads it), else ~/Videos."""
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "user-dirs.dirs"
    try:
        text = config.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return home / "Videos"
    match = re.search(r'^\s*XDG_VIDEOS_DIR\s*=\s*"([^"]*)"', text, re.MULTILINE)
    if not match:
        return home / "Videos"
    value = match.group(1).replace("$HOME", str(home))
    return Path(value) if value.startswith("/") else home / value


def check_disk_space(folder: Path, low: int = LOW_DISK_BYTES) -> Check:
    """Not needed (only recordings use it): free space where recordings go; the folder is made at the first
    recording, so a missing one is measured at its nearest existing parent."""
    name = "disk space"
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    where = str(folder) if existing == folder else f"{folder} (made at the first recording)"
    if not os.access(existing, os.W_OK):
        return Check(name, False, False, f"cannot write to {existing}", "give yourself write access to it, or "
                     "record somewhere else (avatar-app doctor --recordings DIR checks that folder)")
    free = shutil.disk_usage(existing).free
    found = f"{free / GB:.1f} GB free for recordings in {where}"
    if free < low:
        return Check(name, False, False, f"only {found} (under {low / GB:.0f} GB: a long recording stops when the disk "
                     "fills)", "free some space on that disk")
    return Check(name, True, False, found)


def output_marks(stream=None) -> tuple[str, str]:
    """✓ and ✗ where the terminal can show them, else '+' and 'x' (e.g. a Windows console in cp1252)."""
    encoding = getattr(stream or sys.stdout, "encoding", None) or "ascii"
    try:
        "\u2713\u2717".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "+", "x"
    return "\u2713", "\u2717"
