"""`avatar-app doctor`: each check's failure is one line naming the thing and what to do; exit codes; --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import namedtuple
from types import SimpleNamespace

import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.pipeline import checks
from avatar_app.pipeline.checks import Check, DoctorOptions, run_checks
from avatar_app.pipeline.virtual_camera import LINUX_MODPROBE

OK_WINDOW = Check("window", True, True, "Qt starts (test)")


def one_line(check: Check, *words: str) -> str:
    """The check's line, asserted to be one line that names the thing (and the given words)."""
    line = check.line()
    assert "\n" not in line
    assert line.split(" ", 1)[1].startswith(f"{check.name}:")
    for word in words:
        assert word in line, line
    return line


# -- cameras --------------------------------------------------------------------------------------------------
class FakeCapture:
    def __init__(self, opens: bool, picture: bool):
        self.opens, self.picture = opens, picture
        self.released = False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opens

    def read(self):
        return self.picture, (np.zeros((4, 4, 3), np.uint8) if self.picture else None)

    def release(self):
        self.released = True


@pytest.fixture
def cameras(monkeypatch):
    """cameras({index: (opens, sends a picture)}): those are the cameras this machine has."""
    def install(table: dict[int, tuple[bool, bool]]):
        opened = []

        def opener(index):
            opened.append(index)
            return FakeCapture(*table[index])

        monkeypatch.setattr(checks, "camera_candidates", lambda max_index=checks.MAX_CAMERA_INDEX: sorted(table))
        monkeypatch.setattr(checks, "open_camera", opener)
        return opened

    return install


def test_no_camera_is_a_warning_that_points_to_a_video_file(cameras):
    cameras({})
    check = checks.check_cameras()
    assert not check.ok and not check.needed  # a video file drives the app as well
    one_line(check, "no camera found", "video file", "(optional)")


def test_cameras_that_do_not_open_are_named_with_what_to_do(cameras):
    cameras({0: (False, False), 1: (True, False)})
    check = checks.check_cameras()
    assert not check.ok
    one_line(check, "camera 0 does not open", "camera 1 opens but sends no picture", "close other programs")


def test_cameras_that_send_a_picture_are_listed_and_the_one_in_use_is_not_opened_again(cameras):
    opened = cameras({0: (True, True), 1: (False, False), 2: (True, True)})
    check = checks.check_cameras(in_use="2")
    assert check.ok
    one_line(check, "camera 2 (in use by this window)", "camera 0")
    assert opened == [0, 1]
    assert checks.find_cameras() == ["0", "2"]  # what the window's source list offers


# -- virtual camera -------------------------------------------------------------------------------------------
class FakeBackend:
    """A pyvirtualcam backend (as tests/ui/conftest.py fakes one) that opens, or raises ``error``."""

    error: Exception | None = None
    closed = 0

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if FakeBackend.error is not None:
            raise FakeBackend.error

    def send(self, frame):
        pass

    def close(self):
        FakeBackend.closed += 1

    def device(self):
        return "/dev/video9"

    def native_fourcc(self):
        return None


@pytest.fixture
def backends(monkeypatch):
    """backends(error=None): pyvirtualcam finds one backend, which opens or raises ``error``; None: no backend."""
    import pyvirtualcam.camera

    def install(error: Exception | None = None, present: bool = True):
        FakeBackend.error, FakeBackend.closed = error, 0
        monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"fakecam": FakeBackend} if present else {})

    return install


def test_a_virtual_camera_that_opens_is_named_and_closed_again(backends):
    backends()
    check = checks.check_virtual_camera()
    assert check.ok
    one_line(check, "fakecam /dev/video9", "1280x720")
    assert FakeBackend.closed == 1


@pytest.mark.parametrize("module, words", [
    ("missing", ["not installed", "apt install v4l2loopback-dkms", LINUX_MODPROBE]),
    ("installed", ["installed but not loaded", f"load it: {LINUX_MODPROBE}"]),
])
def test_no_linux_device_says_what_to_install_and_load(backends, monkeypatch, module, words):
    backends(present=False)
    monkeypatch.setattr(checks, "_v4l2loopback_module", lambda: module)
    check = checks.check_virtual_camera(system="Linux")
    assert not check.ok and not check.needed
    one_line(check, "no v4l2loopback device", *words)
    assert "sudo modprobe v4l2loopback" in check.details  # the whole set-up, for --json and the window


def test_no_virtual_camera_on_windows_says_to_install_obs(backends):
    backends(error=RuntimeError("OBS Virtual Camera device not found! Did you install OBS?"))
    check = checks.check_virtual_camera(system="Windows")
    one_line(check, "no virtual camera", "Install OBS Studio")


def test_a_virtual_camera_taken_by_another_program_says_so(backends):
    backends(error=RuntimeError("Device /dev/video9 could not be opened: Device or resource busy"))
    check = checks.check_virtual_camera(needed=True)
    assert not check.ok and check.needed
    line = one_line(check, "taken by another program", "Device or resource busy", "close the program that feeds it")
    assert "(optional)" not in line


def test_without_pyvirtualcam_the_line_says_to_install_it(monkeypatch):
    real = checks.importlib.util.find_spec
    monkeypatch.setattr(checks.importlib.util, "find_spec",
                        lambda name, *a: None if name == "pyvirtualcam" else real(name, *a))
    one_line(checks.check_virtual_camera(), "pyvirtualcam is not installed", "pip install pyvirtualcam")


def test_the_virtual_camera_the_window_holds_is_not_opened_again(backends):
    backends(error=RuntimeError("busy"))
    check = checks.check_virtual_camera(in_use="fakecam /dev/video9, 1280x720 at 30 fps")
    assert check.ok
    one_line(check, "in use by this window")


# -- onnxruntime and CUDA -------------------------------------------------------------------------------------
def fake_ort(providers, session_providers=None, result=None, error=None):
    """An onnxruntime stand-in offering ``providers``; its sessions run on ``session_providers``."""

    class Session:
        def __init__(self, model, options, providers):
            if error is not None:
                raise error
            self.model = model

        def get_providers(self):
            return list(session_providers or providers)

        def run(self, outputs, feeds):
            return [np.maximum(feeds["x"], 0) if result is None else result]

    return SimpleNamespace(__version__="9.9", get_available_providers=lambda: list(providers),
                           SessionOptions=lambda: SimpleNamespace(log_severity_level=2), InferenceSession=Session)


@pytest.fixture
def ort(monkeypatch):
    """ort(module, dists={name: version}, driver=None): what onnxruntime and the NVIDIA driver look like."""
    def install(module, dists=None, driver=None):
        monkeypatch.setattr(checks, "_onnxruntime", lambda: module)
        wanted = dict(dists or {})
        monkeypatch.setattr(checks, "_distributions", lambda *names: {n: wanted[n] for n in names if n in wanted})
        monkeypatch.setattr(checks, "nvidia_driver", lambda: driver)

    return install


def test_missing_onnxruntime_names_the_extra_and_is_needed_only_for_the_neural_renderer(ort):
    ort(None)
    check = checks.check_onnxruntime()
    assert not check.ok and not check.needed
    one_line(check, "onnxruntime: not installed", 'pip install -e ".[cpu]"')
    assert checks.check_onnxruntime(needed=True).needed


def test_onnxruntime_names_its_build_and_providers(ort):
    ort(fake_ort(["CPUExecutionProvider"]), {"onnxruntime": "1.20.0"})
    check = checks.check_onnxruntime()
    assert check.ok
    one_line(check, "onnxruntime 1.20.0", "[cpu]", "CPUExecutionProvider")


def test_both_onnxruntime_builds_installed_is_a_failure_with_the_fix(ort):
    ort(fake_ort(["CPUExecutionProvider"]), {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"})
    check = checks.check_onnxruntime()
    assert not check.ok
    one_line(check, "both onnxruntime and onnxruntime-gpu", "pip uninstall -y onnxruntime onnxruntime-gpu")


@pytest.mark.parametrize("dists, driver, words", [
    ({"onnxruntime": "1"}, None, ["no NVIDIA driver found", "CPU build", "nothing to do without an NVIDIA GPU"]),
    ({"onnxruntime": "1"}, "NVRM version: 550", ["an NVIDIA driver is present", 'pip install -e ".[gpu]"']),
    ({"onnxruntime-gpu": "1"}, None, ["installed but no NVIDIA driver", "install the NVIDIA driver"]),
    ({"onnxruntime-gpu": "1"}, "NVRM version: 550", ["does not offer CUDA", "cuDNN"]),
])
def test_cuda_missing_says_why(ort, dists, driver, words):
    ort(fake_ort(["CPUExecutionProvider"]), dists, driver)
    check = checks.check_cuda()
    assert not check.ok and not check.needed  # the neural renderer runs on the CPU without it
    one_line(check, "CUDA: not available", *words)


def test_cuda_listed_but_falling_back_to_the_cpu_is_not_usable(ort):
    ort(fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"], session_providers=["CPUExecutionProvider"]),
        {"onnxruntime-gpu": "1"}, "NVRM")
    one_line(checks.check_cuda(), "listed but not usable", "fell back to the CPU", "cuDNN")


def test_cuda_listed_whose_session_fails_is_not_usable(ort):
    ort(fake_ort(["CUDAExecutionProvider"], error=RuntimeError("libcudnn.so.9: cannot open shared object file")),
        {"onnxruntime-gpu": "1"}, "NVRM")
    one_line(checks.check_cuda(), "listed but not usable", "libcudnn.so.9")


def test_cuda_that_runs_the_test_model_is_usable(ort):
    ort(fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"]), {"onnxruntime-gpu": "1"}, "NVRM")
    check = checks.check_cuda()
    assert check.ok
    one_line(check, "a test model ran on CUDAExecutionProvider")


def test_the_cuda_test_model_is_a_valid_onnx_model_for_the_real_onnxruntime():
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(checks._TINY_ONNX, providers=["CPUExecutionProvider"])
    y = session.run(None, {"x": np.array([[-1, 2, -3, 4]], np.float32)})[0]
    assert y.tolist() == [[0, 2, 0, 4]]


# -- MediaPipe and the renderer -------------------------------------------------------------------------------
def test_the_face_tracker_mesh_renderer_and_selfie_segmentation_start_here():
    for check in (checks.check_face_tracker(), checks.check_mesh_renderer(), checks.check_selfie_segmentation()):
        assert check.ok, check.line()
    assert "finds the face in the shipped Mona Lisa" in checks.check_face_tracker().found


def test_a_face_mesh_that_does_not_start_is_a_needed_failure_with_the_fix(monkeypatch):
    import avatar_app.pipeline.tracker as tracker

    def broken(*a, **k):
        raise RuntimeError("ValidatedGraphConfig Initialization failed.\nmore lines")

    monkeypatch.setattr(tracker, "FaceTracker", broken)
    check = checks.check_face_tracker()
    assert not check.ok and check.needed
    one_line(check, "does not start", "ValidatedGraphConfig", "mediapipe==0.10.21")


def test_a_face_mesh_that_finds_no_face_says_so(monkeypatch):
    import avatar_app.pipeline.tracker as tracker

    class Blind:
        def __init__(self, *a, **k):
            pass

        def process(self, image):
            return None

        def close(self):
            pass

    monkeypatch.setattr(tracker, "FaceTracker", Blind)
    one_line(checks.check_face_tracker(), "finds no face in the shipped Mona Lisa", "mediapipe==0.10.21")


def test_a_selfie_segmentation_that_does_not_start_is_optional(monkeypatch):
    from mediapipe.python.solutions import selfie_segmentation

    def broken(*a, **k):
        raise RuntimeError("model file missing")

    monkeypatch.setattr(selfie_segmentation, "SelfieSegmentation", broken)
    check = checks.check_selfie_segmentation()
    assert not check.ok and not check.needed
    one_line(check, "does not start (model file missing)", "mediapipe==0.10.21")


def test_no_shipped_portraits_fails_the_mesh_renderer_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(checks, "shipped_portrait", lambda: tmp_path / "portraits" / "mona_lisa.jpg")
    check = checks.check_mesh_renderer()
    assert not check.ok and check.needed
    one_line(check, "shipped portraits are missing", "reinstall the app")


# -- disk -----------------------------------------------------------------------------------------------------
Usage = namedtuple("Usage", "total used free")


def test_low_disk_space_is_a_warning_naming_the_folder(monkeypatch, tmp_path):
    monkeypatch.setattr(checks.shutil, "disk_usage", lambda path: Usage(100 * checks.GB, 99 * checks.GB, checks.GB))
    check = checks.check_disk_space(tmp_path)
    assert not check.ok and not check.needed
    one_line(check, "only 1.0 GB free", str(tmp_path), "under 2 GB", "free some space")


def test_a_recordings_folder_not_made_yet_is_measured_where_it_will_be(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(checks.shutil, "disk_usage",
                        lambda path: seen.append(path) or Usage(100 * checks.GB, 50 * checks.GB, 50 * checks.GB))
    folder = tmp_path / "Videos" / "avatar_app"
    check = checks.check_disk_space(folder)
    assert check.ok
    one_line(check, "50.0 GB free", "made at the first recording")
    assert seen == [tmp_path]


def test_the_default_recordings_folder_follows_xdg_user_dirs(monkeypatch, tmp_path):
    monkeypatch.setattr(checks, "os_name_of", lambda system: "linux")
    monkeypatch.setattr(checks.Path, "home", lambda: tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert checks.default_recordings_dir() == tmp_path / "Videos" / "avatar_app"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "user-dirs.dirs").write_text('XDG_VIDEOS_DIR="$HOME/Filme"\n')
    assert checks.default_recordings_dir() == tmp_path / "Filme" / "avatar_app"


# -- the report and the command -------------------------------------------------------------------------------
def test_a_check_that_raises_is_a_line_not_a_traceback(monkeypatch):
    monkeypatch.setattr(checks, "check_cuda", lambda: 1 / 0)
    line = next(c for c in run_checks(DoctorOptions(), lambda: OK_WINDOW) if c.name == "CUDA").line()
    assert "the check itself failed (ZeroDivisionError" in line


@pytest.fixture
def outcome(monkeypatch):
    """outcome(failing...): every check passes except those named, so the command's verdict can be tested."""
    import avatar_app.ui.qt as qt

    def install(*failing: str):
        def make(name: str, needed: bool) -> Check:
            broken = name in failing
            return Check(name, not broken, needed, f"{name} {'broken' if broken else 'fine'}", f"fix {name}")

        monkeypatch.setattr(checks, "check_cameras", lambda in_use=None: make("cameras", False))
        monkeypatch.setattr(checks, "check_virtual_camera", lambda needed, in_use: make("virtual camera", needed))
        monkeypatch.setattr(checks, "check_onnxruntime", lambda needed: make("onnxruntime", needed))
        monkeypatch.setattr(checks, "check_cuda", lambda: make("CUDA", False))
        monkeypatch.setattr(checks, "check_face_tracker", lambda: make("face tracker", True))
        monkeypatch.setattr(checks, "check_selfie_segmentation", lambda: make("selfie segmentation", False))
        monkeypatch.setattr(checks, "check_mesh_renderer", lambda: make("mesh renderer", True))
        monkeypatch.setattr(qt, "window_check", lambda: make("window", True))
        monkeypatch.setattr(checks, "check_microphone", lambda: make("microphone", False))
        monkeypatch.setattr(checks, "check_disk_space", lambda folder: make("disk space", False))

    return install


@pytest.mark.parametrize("failing, args, code", [
    ((), [], 0),
    (("cameras", "virtual camera", "CUDA", "onnxruntime", "selfie segmentation", "microphone", "disk space"), [], 0),
    (("virtual camera",), ["--virtual-camera"], 1),
    (("onnxruntime",), ["--neural"], 1),
    (("face tracker",), [], 1),
    (("mesh renderer",), [], 1),
    (("window",), [], 1),
])
def test_exit_code_is_1_only_when_something_needed_fails(outcome, capsys, failing, args, code):
    outcome(*failing)
    assert main(["doctor", *args]) == code
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11  # ten checks, one line each, then the verdict
    assert lines[-1].startswith("Not ready" if code else "Ready")
    for name in failing:
        assert any(line.startswith(f"\u2717 {name}: {name} broken - fix {name}") for line in lines), lines


def test_json_shape(outcome, capsys):
    outcome("virtual camera")
    assert main(["doctor", "--json", "--virtual-camera"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"]] == ["cameras", "virtual camera", "onnxruntime", "CUDA", "face tracker",
                                                     "selfie segmentation", "mesh renderer", "window", "microphone",
                                                     "disk space"]
    for c in report["checks"]:
        assert set(c) == {"name", "ok", "needed", "found", "fix", "details"}
    vcam = report["checks"][1]
    assert vcam["ok"] is False and vcam["needed"] is True and vcam["fix"] == "fix virtual camera"


def test_marks_fall_back_to_ascii_where_the_terminal_cannot_show_them():
    assert checks.output_marks(SimpleNamespace(encoding="cp1252")) == ("+", "x")
    assert checks.output_marks(SimpleNamespace(encoding="utf-8")) == ("\u2713", "\u2717")


def test_doctor_on_this_machine_end_to_end(tmp_path):
    """The real command, offscreen: the tracker, the renderer and the window work here, so it exits 0."""
    pytest.importorskip("PySide6")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run([sys.executable, "-m", "avatar_app", "doctor", "--json", "--recordings", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    report = json.loads(done.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert done.returncode == 0, done.stdout
    assert by_name["window"]["ok"] and "offscreen" in by_name["window"]["found"]
    assert by_name["face tracker"]["ok"] and by_name["mesh renderer"]["ok"]
    assert str(tmp_path) in by_name["disk space"]["found"]


# -- microphone -----------------------------------------------------------------------------------------------
def test_without_portaudio_the_microphone_line_says_what_to_install(monkeypatch):
    from avatar_app.pipeline import microphone

    def missing():
        raise microphone.MicrophoneError(f"no sound input: PortAudio library not found - {microphone.INSTALL_HINT}")

    monkeypatch.setattr(microphone, "sounddevice", missing)
    check = checks.check_microphone()
    assert not check.ok and not check.needed
    line = one_line(check, "PortAudio library not found", "pip install sounddevice", "libportaudio2", "(optional)")
    assert line.count("pip install") == 1


def test_the_default_microphone_is_named(monkeypatch):
    from avatar_app.pipeline import microphone

    devices = [{"name": "Built-in Mic", "max_input_channels": 2}, {"name": "Speakers", "max_input_channels": 0},
               {"name": "USB Headset", "max_input_channels": 1}]
    sd = SimpleNamespace(query_devices=lambda device=None, kind=None: devices[0] if kind == "input" else devices)
    monkeypatch.setattr(microphone, "sounddevice", lambda: sd)
    check = checks.check_microphone()
    assert check.ok
    one_line(check, "default input: Built-in Mic", "USB Headset")
    assert "Speakers" not in check.line()
