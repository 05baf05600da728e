"""What a call user touches: guided calibration on start, the motion sliders and switches, keys 1-9, Ctrl+Q."""

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.ui.conftest import wait_for_avatar, wait_for_frames


@pytest.fixture
def still_face_video(tmp_path, mona_avatar):
    """Two seconds of a face holding perfectly still (the Mona Lisa, who looks a little aside)."""
    from avatar_app.pipeline.sinks import VideoFileSink

    h, w = mona_avatar.image.shape[:2]
    size = (320, round(h * 320 / w / 2) * 2)
    image = cv2.resize(mona_avatar.image, size, interpolation=cv2.INTER_AREA)
    path = tmp_path / "still.mp4"
    with VideoFileSink(path, fps=25, size=size) as sink:
        for _ in range(50):
            sink.write(image)
    return path


def test_on_start_the_window_asks_for_a_steady_look_and_only_then_takes_the_pose(qtbot, make_window, monkeypatch,
                                                                                   still_face_video):
    import avatar_app.ui.pipeline as live
    from avatar_app.pipeline.calibration import CalibrationSettings

    monkeypatch.setattr(live, "CALIBRATION", CalibrationSettings(hold_s=1.0, patience_s=2.0))  # real steps, quick
    window = make_window(source=str(still_face_video))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    animator = window.pipeline.stages.animator
    assert animator.retargeter.reference is None  # the first frame with a face was not taken silently
    assert window.camera_view.banner().startswith("Calibrating")
    qtbot.waitUntil(lambda: animator.retargeter.reference is not None, timeout=15000)
    qtbot.waitUntil(lambda: "Calibrated" in window.statusBar().currentMessage(), timeout=5000)
    wait_for_frames(qtbot, window, 2)
    assert not (window.camera_view.banner() or "").startswith("Calibrating")
    window.calibrate()  # C: the countdown runs again, with the avatar still following
    qtbot.waitUntil(lambda: (window.camera_view.banner() or "").startswith("Calibrating"), timeout=5000)
    assert animator.retargeter.reference is not None


def test_sliders_and_switches_reach_the_running_avatar_and_are_remembered(qtbot, make_window, generated_driver):
    window = make_window(source=str(generated_driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    controls = window.controls
    controls.pose_slider.setValue(50)
    controls.expression_slider.setValue(150)
    controls.mouth_box.setChecked(False)
    controls.smoothing_slider.setValue(100)
    motion = window.pipeline.stages.animator.motion
    assert (motion.pose_strength, motion.expression_strength, motion.follow_mouth) == (0.5, 1.5, False)
    assert motion.follow_eyes and motion.follow_gaze
    window.close()
    again = make_window()
    assert (again.controls.pose_slider.value(), again.controls.expression_slider.value()) == (50, 150)
    assert not again.controls.mouth_box.isChecked() and again.settings.smoothing == 1.0


def test_keys_1_to_9_pick_gallery_avatars_and_ctrl_q_quits(qtbot, make_window):
    window = make_window()
    wait_for_avatar(qtbot, window)
    names = [e.name for e in window.entries()]
    assert len(names) >= 2
    qtbot.keyClick(window, Qt.Key.Key_2)
    qtbot.waitUntil(lambda: window.avatars.avatar is not None and window.avatars.avatar.name != "", timeout=10000)
    assert window.gallery.currentRow() == 1
    qtbot.keyClick(window, Qt.Key.Key_1)
    assert window.gallery.currentRow() == 0
    qtbot.keyClick(window, Qt.Key.Key_9)  # no ninth avatar: said, nothing else
    assert window.gallery.currentRow() == 0 and "number 9" in window.statusBar().currentMessage()
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


def test_the_call_picture_follows_the_chosen_framing(qtbot, make_window, generated_driver):
    window = make_window(source=str(generated_driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    combo = window.outputs.framing_combo
    combo.setCurrentIndex(combo.findData("fit"))  # its layers are made off the renderer's thread, then swapped in
    qtbot.waitUntil(lambda: window.avatar_view.image()[:, :200].max() == 0, timeout=5000)  # bars beside a tall portrait
    picture = window.avatar_view.image()
    assert picture.shape[:2] == (720, 1280)
    combo.setCurrentIndex(combo.findData("follow"))
    qtbot.waitUntil(lambda: window.avatar_view.image()[:, :200].max() > 0, timeout=5000)
    assert window.settings.framing == "follow"
    assert np.asarray(window.avatar_view.image()).std() > 10


def test_recordings_go_to_the_folder_chosen_and_it_is_remembered(qtbot, make_window, generated_driver, tmp_path,
                                                                monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    chosen = tmp_path / "my recordings"
    chosen.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(chosen))
    window = make_window(source=str(generated_driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    window.outputs.folder_action.trigger()
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.wait(800)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: any(chosen.glob("avatar-*.mp4")), timeout=10000)
    assert not any((tmp_path / "recordings").glob("avatar-*.mp4"))
    window.close()
    assert make_window().outputs.recordings_dir == chosen


def test_a_recording_from_a_driver_video_keeps_its_sound_in_step(qtbot, make_window, tmp_path):
    from avatar_app.pipeline.sinks import AUDIO_RATE, decode_audio
    from avatar_app.pipeline.sources import probe_video
    from tests.test_recording_sound import _driver_with_sound

    driver = _driver_with_sound(tmp_path / "talk.mp4")  # a second of silence, then a tone; looped
    window = make_window(source=str(driver))
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.wait(2500)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: any((tmp_path / "recordings").glob("avatar-*.mp4")), timeout=10000)
    video = next((tmp_path / "recordings").glob("avatar-*.mp4"))
    qtbot.waitUntil(lambda: probe_video(video).has_audio, timeout=10000)  # the sound is added as it finishes
    info = probe_video(video)
    sound = decode_audio(video)
    assert abs(sound.shape[1] / AUDIO_RATE - info.duration) < 0.15
    assert np.abs(sound).max() > 0.2  # the driver's tone came along (the driver loops: tone and silence)
