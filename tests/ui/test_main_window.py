"""The desktop window as a user meets it: gallery, live previews, calibration, overlay, HUD, outputs, settings."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QMessageBox

from avatar_app.pipeline.render.base import RenderSettings
from tests.conftest import PORTRAITS
from tests.ui.conftest import SMALL, avatar_threads, wait_for_avatar, wait_for_frames


def _drop(window, paths):
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)


def _running(qtbot, make_window, generated_driver, **options):
    window = make_window(source=str(generated_driver), **options)
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 5)
    return window


def test_window_opens_with_the_shipped_portraits_and_says_how_to_start_without_a_camera(qtbot, make_window):
    window = make_window()
    names = [e.name for e in window.entries()]
    assert "Mona Lisa" in names and "Girl with a Pearl Earring" in names
    wait_for_avatar(qtbot, window)
    assert window.avatar.name == "Mona Lisa"  # the default
    assert "Video file" in window.camera_view.placeholder()  # no camera here: the way on is named
    assert window.source_combo.itemText(window.source_combo.count() - 1).startswith("Video file")
    assert window.avatar_view.image() is not None  # the still portrait, until a source runs
    assert [window.renderer_combo.itemData(i) for i in range(window.renderer_combo.count())]


def test_choosing_a_gallery_portrait_updates_the_avatar_preview(qtbot, make_window):
    window = make_window()
    wait_for_avatar(qtbot, window)
    before = window.avatar_view.image().copy()
    window.choose("pearl")
    qtbot.waitUntil(lambda: window.avatar is not None and window.avatar.name.startswith("Girl"), timeout=20000)
    after = window.avatar_view.image()
    assert after.shape != before.shape or not np.array_equal(after, before)
    assert max(after.shape[:2]) == SMALL


def test_a_video_source_shows_changing_non_blank_frames_in_both_previews(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    cameras, avatars = [], []
    for _ in range(8):
        wait_for_frames(qtbot, window, 3)
        cameras.append(window.camera_view.image().copy())
        avatars.append(window.avatar_view.image().copy())
    for image in cameras + avatars:
        assert image.std() > 10  # a picture, not a blank
    assert any(not np.array_equal(cameras[0], c) for c in cameras[1:])
    assert any(not np.array_equal(avatars[0], a) for a in avatars[1:])
    assert avatars[0].shape[:2] == (720, 1280)  # what the call sees: the call's picture, framed
    assert max(window.pipeline.output_size) == SMALL  # drawn at the avatar's size


def test_switching_the_avatar_while_running_keeps_the_frames_coming(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    mona = window.previews.shown_avatar
    window.choose("pearl")
    qtbot.waitUntil(lambda: window.previews.shown_avatar is not mona, timeout=20000)
    assert "Pearl" in window.previews.shown_avatar.name
    wait_for_frames(qtbot, window, 3)
    assert window.pipeline.running


def test_calibrate_makes_the_current_pose_the_reference(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    animator = window.pipeline.stages.animator
    first = animator.retargeter.reference
    assert first is not None
    qtbot.keyClick(window, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: animator.retargeter.reference is not first, timeout=10000)
    qtbot.waitUntil(lambda: "Calibrated" in window.statusBar().currentMessage(), timeout=5000)
    # The reference is a driver pose the tracker just saw: driving with it gives the portrait's own landmarks,
    # but for the lips and jaw, which part as far as the driver's do (the mouth is measured from lips together).
    from avatar_app.face import landmarks as L

    own = animator.retargeter(animator.retargeter.reference)
    portrait = animator.avatar.landmarks[:468]
    upper = portrait[:, 1] < portrait[L.NOSE_TIP, 1]  # the face above the mouth: the learned jaw barely moves it
    assert np.allclose(own[:468][upper], portrait[upper], atol=0.5)


def test_a_missing_virtual_camera_shows_the_setup_steps_and_the_app_goes_on(qtbot, make_window, monkeypatch,
                                                                             generated_driver):
    import pyvirtualcam

    def no_device(*args, **kwargs):  # what pyvirtualcam raises on Linux without v4l2loopback
        raise RuntimeError("'v4l2loopback' backend: No v4l2 loopback device found at /dev/video[0-99]. "
                           "Did you run 'modprobe v4l2loopback'? See also pyvirtualcam's documentation.")

    monkeypatch.setattr(pyvirtualcam, "Camera", no_device)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    window = _running(qtbot, make_window, generated_driver, notify=False)  # the real, non-modal message box
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: any(t == "No virtual camera" for t, _ in window.messages), timeout=10000)
    text = dict(window.messages)["No virtual camera"]
    assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=avatar_app" in text
    assert "Secure Boot" in text and "v4l2loopback-dkms" in text
    assert not window.vcam_action.isChecked()
    assert "off" in window.vcam_label.text()
    boxes = [w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()]
    assert boxes and not boxes[0].isModal()  # shown without blocking the window
    for box in boxes:
        box.close()
    wait_for_frames(qtbot, window, 3)  # still running


def test_the_virtual_camera_receives_fixed_size_frames_and_its_backend_is_shown(qtbot, make_window, generated_driver,
                                                                                fake_virtual_camera):
    window = _running(qtbot, make_window, generated_driver)
    window.camera_size_combo.setCurrentIndex(window.camera_size_combo.findData("640x360"))
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: len(fake_virtual_camera.sent) >= 5, timeout=20000)
    assert window.vcam_action.isChecked()
    assert "fakecam" in window.vcam_label.text() and "640x360" in window.vcam_label.text()
    assert all(f.size == 640 * 360 * 3 for f in fake_virtual_camera.sent)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.vcam_label.text() == "Virtual camera: off"


def test_dropping_files_that_are_not_portraits_shows_an_error(qtbot, make_window, tmp_path):
    window = make_window()
    count = window.gallery.count()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a picture")
    _drop(window, [text_file])
    qtbot.waitUntil(lambda: bool(window.messages), timeout=10000)
    title, text = window.messages[-1]
    assert title == "Cannot add this picture" and "notes.txt" in text and "not an image" in text
    # A picture without a face is refused too, with its own reason.
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))
    _drop(window, [blank])
    qtbot.waitUntil(lambda: len(window.messages) >= 2, timeout=30000)
    # Named by its file's stem, as the command line names it, not by its whole path.
    assert window.messages[-1][1].startswith("wall: no face found in the portrait")
    assert window.gallery.count() == count


def test_a_dropped_portrait_becomes_an_avatar_that_is_there_next_time(qtbot, make_window, tmp_path):
    window = make_window()
    count = window.gallery.count()
    mine = tmp_path / "my_portrait.jpg"
    mine.write_bytes((PORTRAITS / "girl_with_a_pearl_earring.jpg").read_bytes())
    _drop(window, [mine])
    qtbot.waitUntil(lambda: window.gallery.count() == count + 1, timeout=30000)
    added = window.entries()[-1]
    assert added.kind == "mine" and added.path.suffix == ".avatar" and added.path.is_file()
    assert window.gallery.currentItem().text() == "My Portrait"
    window.close()
    again = make_window()
    assert [e.path for e in again.entries()][-1] == added.path
    wait_for_avatar(qtbot, again)
    assert again.avatar.name == "My Portrait"  # remembered as the chosen one too


def test_settings_survive_a_restart(qtbot, make_window, generated_driver):
    window = make_window()
    wait_for_avatar(qtbot, window)
    window.choose("pearl")
    window.set_source(str(generated_driver))
    window.mirror_action.setChecked(False)
    window.hud_action.setChecked(True)
    window.overlay_action.setChecked(True)
    window.size_combo.setCurrentIndex(window.size_combo.findData(256))
    window.camera_size_combo.setCurrentIndex(window.camera_size_combo.findData("640x480"))
    window.fps_combo.setCurrentIndex(window.fps_combo.findData(15))
    window.close()

    again = make_window()
    s = again.settings
    assert (s.source, s.mirror, s.hud, s.overlay, s.size, s.camera_size, s.fps, s.renderer) == (
        str(generated_driver), False, True, True, 256, "640x480", 15, "mesh")
    assert again.source_combo.currentData() == str(generated_driver)
    assert not again.mirror_action.isChecked() and not again.camera_view.mirrored
    assert again.hud_action.isChecked() and again.overlay_action.isChecked()
    assert again.size_combo.currentData() == 256 and again.fps_combo.currentData() == 15
    assert again.gallery.currentItem().text().startswith("Girl")


def test_hud_shows_fps_and_milliseconds_per_stage(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    qtbot.keyClick(window, Qt.Key.Key_H)
    qtbot.waitUntil(lambda: bool(window.last_hud) and "fps" in window.last_hud[0], timeout=10000)
    hud = "\n".join(window.avatar_view.hud())
    for word in ("fps", "latency", "tracker", "retarget", "renderer"):
        assert word in hud
    fps = float(window.last_hud[0].split("fps")[0])
    assert 1 < fps < 100


def test_overlay_ghosts_the_portrait_over_the_camera(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    qtbot.keyClick(window, Qt.Key.Key_O)
    assert window.settings.overlay
    wait_for_frames(qtbot, window, 3)
    shown = window.camera_view.image()
    assert shown is not None and shown.shape[1] <= 640
    # Amber landmarks (the portrait's) are drawn on the camera picture.
    amber = (np.abs(shown.astype(int) - (60, 200, 255)).sum(axis=2) < 30).sum()
    assert amber > 50


def test_record_writes_an_mp4_of_what_the_call_sees_at_the_pipeline_s_rate(qtbot, make_window, generated_driver,
                                                                          tmp_path):
    from avatar_app.pipeline.sources import probe_video

    window = _running(qtbot, make_window, generated_driver)
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert window.record_action.isChecked()
    badge = window.outputs.record_label
    assert badge.isVisible() and "REC" in badge.text()  # a red badge while it records
    qtbot.wait(1500)
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert not badge.isVisible()
    qtbot.waitUntil(lambda: any((tmp_path / "recordings").glob("avatar-*.mp4")), timeout=10000)
    video = list((tmp_path / "recordings").glob("avatar-*.mp4"))[0]
    info = probe_video(video)
    assert window.settings.fps == 30 and info.fps == 25  # the driver's 25 fps, not the virtual camera's 30
    assert 0.8 <= info.duration <= 2.5
    assert (info.width, info.height) == (1280, 720)  # the call's picture, not the avatar's 72 x 128


def test_a_source_that_cannot_open_is_a_message_in_the_window(qtbot, make_window, tmp_path):
    window = make_window()
    wait_for_avatar(qtbot, window)
    window.set_source(str(tmp_path / "missing.mp4"))
    qtbot.waitUntil(lambda: "no such file" in window.camera_view.placeholder(), timeout=10000)
    window.set_source("7")
    qtbot.waitUntil(lambda: "camera 7" in window.camera_view.placeholder(), timeout=10000)
    assert window.isVisible()


def test_closing_stops_every_worker_thread_within_a_second(qtbot, make_window, generated_driver, fake_virtual_camera):
    window = _running(qtbot, make_window, generated_driver)
    window.vcam_action.setChecked(True)
    qtbot.waitUntil(lambda: len(fake_virtual_camera.sent) >= 2, timeout=20000)
    assert any(t.name == "avatar-renderer" for t in avatar_threads())
    mine = avatar_threads()
    t0 = time.perf_counter()
    window.close()
    assert time.perf_counter() - t0 < 1.5
    # The pipeline's threads are gone when close() returns; a helper that was finishing a task (opening the
    # virtual camera, loading a portrait) ends on its own moments later, its result dropped.
    pipeline = {"avatar-capture", "avatar-tracker", "avatar-renderer"}
    assert [t.name for t in mine if t.is_alive() and t.name in pipeline] == []
    qtbot.waitUntil(lambda: not any(t.is_alive() for t in mine), timeout=2000)


def test_a_size_chosen_while_the_source_opens_is_used_and_closing_leaves_no_start_thread(
        qtbot, make_window, generated_driver, monkeypatch):
    from avatar_app.pipeline.render.mesh import MeshRenderer

    # Preparing the renderer is slow the first time (numba compiles); here it waits until released, so the
    # size can be changed while the pipeline is starting, as a user may do while a camera opens.
    preparing, release = threading.Event(), threading.Event()
    real_prepare = MeshRenderer.prepare

    def slow_prepare(self, avatar, settings=RenderSettings()):
        preparing.set()
        release.wait(30)
        return real_prepare(self, avatar, settings)

    monkeypatch.setattr(MeshRenderer, "prepare", slow_prepare)
    window = make_window()
    wait_for_avatar(qtbot, window)
    window.set_source(str(generated_driver))
    qtbot.waitUntil(preparing.is_set, timeout=20000)
    starts = [t for t in avatar_threads() if t.name == "avatar-ui-start"]
    assert starts
    window.size_combo.setCurrentIndex(window.size_combo.findData(256))
    release.set()
    # The start finishes with the new size (the avatar is switched to it once the first one runs).
    qtbot.waitUntil(lambda: max(window.pipeline.output_size or (0,)) == 256, timeout=30000)
    wait_for_frames(qtbot, window, 3)
    assert window.avatar_view.image().shape[:2] == (720, 1280)  # the call's picture keeps its size
    window.close()
    for t in starts:
        t.join(5)
    assert [t.name for t in starts if t.is_alive()] == []


def test_a_screenshot_of_the_running_window_is_not_blank(qtbot, make_window, generated_driver, tmp_path):
    window = _running(qtbot, make_window, generated_driver)
    path = tmp_path / "window.png"
    assert window.grab().save(str(path))
    shot = cv2.imread(str(path))
    assert shot is not None and shot.shape[0] > 300 and shot.shape[1] > 600
    assert shot.std() > 20
    # Both previews hold pictures: their areas are not flat.
    for view in (window.camera_view, window.avatar_view):
        top_left = view.mapTo(window, view.rect().topLeft())
        x, y = top_left.x(), top_left.y()
        area = shot[y:y + view.height(), x:x + view.width()]
        assert area.std() > 15


@pytest.mark.parametrize("key", ["C", "O", "H"])
def test_shortcuts_reach_their_actions_whatever_has_focus(qtbot, make_window, key):
    window = make_window()
    window.gallery.setFocus()
    action = {"C": window.calibrate_action, "O": window.overlay_action, "H": window.hud_action}[key]
    fired = []
    action.triggered.connect(lambda *_: fired.append(True))
    # Through the window system, as a real key press travels (the shortcut map first, then the focus widget).
    qtbot.keyClick(window.windowHandle(), getattr(Qt.Key, f"Key_{key}"))
    assert fired


def test_the_renderer_picker_lists_what_can_run(tmp_path):
    from avatar_app.ui.panels.renderer import renderer_choices

    assert renderer_choices([tmp_path]) == [("mesh", "mesh"), ("neural (no exported model)", None)]
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "manifest.json").write_text("{}")
    assert ("neural: tiny", f"neural:{tmp_path / 'tiny'}") in renderer_choices([tmp_path, tmp_path / "missing"])
    (tmp_path / ".tiny.old").mkdir()  # what an interrupted export leaves: never offered as a model
    (tmp_path / ".tiny.old" / "manifest.json").write_text("{}")
    assert not any(".tiny.old" in label for label, _ in renderer_choices([tmp_path]))


def test_the_picker_offers_the_shipped_model_from_package_data(make_window):
    from avatar_app.pipeline.render.neural import shipped_models

    shipped = shipped_models()
    if not shipped:
        pytest.skip("no model is shipped in this checkout")
    window = make_window()
    offered = {window.renderer_combo.itemData(i) for i in range(window.renderer_combo.count())}
    assert f"neural:{shipped[0]}" in offered


def test_a_renderer_that_cannot_run_is_explained_and_the_last_one_comes_back(qtbot, make_window, generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    window.renderer_combo.addItem("neural: broken", f"neural:{generated_driver.parent / 'no_such_model'}")
    window.renderer_combo.setCurrentIndex(window.renderer_combo.count() - 1)
    qtbot.waitUntil(lambda: any(t == "Not changed" for t, _ in window.messages), timeout=20000)
    assert window.settings.renderer == "mesh" and window.renderer_combo.currentData() == "mesh"
    wait_for_frames(qtbot, window, 3)


def test_the_mouth_picker_chooses_where_the_open_mouth_comes_from_and_is_remembered(qtbot, make_window,
                                                                                     generated_driver):
    window = _running(qtbot, make_window, generated_driver)
    assert window.settings.mouth == "mine" and window.mouth_combo.currentData() == "mine"  # the default
    renderer = lambda: window.pipeline.stages.animator.renderer  # noqa: E731
    qtbot.waitUntil(lambda: renderer().mouth_source == "mine", timeout=20000)
    window.mouth_combo.setCurrentIndex(window.mouth_combo.findData("painted"))
    qtbot.waitUntil(lambda: renderer().mouth_source == "painted", timeout=20000)
    assert window.settings.mouth == "painted"
    wait_for_frames(qtbot, window, 3)


def test_a_window_destroyed_without_being_closed_still_stops_its_threads(qtbot, tmp_path, generated_driver):
    import gc

    from PySide6.QtCore import QSettings

    from avatar_app.ui.main_window import MainWindow, StartOptions

    store = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    store.setValue("size", SMALL)
    window = MainWindow(store=store, data_dir=tmp_path / "data", options=StartOptions(source=str(generated_driver)),
                        notify=lambda *_: None, probe_cameras=False)
    window.show()
    wait_for_avatar(qtbot, window)
    wait_for_frames(qtbot, window, 3)
    runner_threads = [t for t in avatar_threads() if t.name in ("avatar-capture", "avatar-tracker", "avatar-renderer")]
    assert len(runner_threads) == 3
    del window
    gc.collect()
    qtbot.waitUntil(lambda: not any(t.is_alive() for t in runner_threads), timeout=5000)


def test_a_source_that_fails_while_running_is_retried_and_the_avatar_keeps_going(qtbot, make_window, generated_driver):
    from avatar_app.errors import InputFileError

    window = _running(qtbot, make_window, generated_driver)
    runner = window.pipeline.runner
    source = runner.source
    broken = {"on": True}
    real_grab, real_open = source._grab, source._open

    def grab():
        if broken["on"]:
            raise InputFileError("driver.mp4: cannot decode frame 12 - the file may be damaged")
        return real_grab()

    def reopen():
        if broken["on"]:
            raise InputFileError("driver.mp4: no such file - check the path")
        real_open()

    source._grab, source._open = grab, reopen
    qtbot.waitUntil(lambda: (window.camera_view.banner() or "").startswith("No picture from the source"),
                    timeout=20000)
    assert "source lost: driver.mp4: cannot decode frame 12" in window.statusBar().currentMessage()
    shown = window.frames_shown
    wait_for_frames(qtbot, window, 5)  # the avatar view goes on while the source is down
    assert window.frames_shown >= shown + 5 and window.messages == []
    broken["on"] = False
    qtbot.waitUntil(lambda: runner.stats.source_recoveries == 1, timeout=20000)
    qtbot.waitUntil(lambda: not (window.camera_view.banner() or "").startswith("No picture"), timeout=20000)
    assert window.pipeline.runner is runner and runner.running  # resumed, not restarted


@pytest.mark.parametrize(("bad", "said"), [("noface.png", "noface: no face found in the portrait"),
                                          ("notes.png", "notes.png: not an image")])
def test_a_bad_portrait_from_the_command_line_is_said_and_not_left_in_the_gallery(qtbot, make_window, tmp_path,
                                                                                  monkeypatch, bad, said):
    monkeypatch.setattr("avatar_app.ui.panels.sources.find_cameras", list)  # no camera: the demo drives
    picture = tmp_path / bad
    if bad == "noface.png":
        cv2.imwrite(str(picture), np.full((240, 320, 3), 180, np.uint8))
    else:
        picture.write_text("not a picture")
    window = make_window(avatar=picture, probe_cameras=True)
    qtbot.waitUntil(lambda: bool(window.messages), timeout=30000)
    title, text = window.messages[0]
    assert title == "Cannot use this portrait" and said in text
    wait_for_avatar(qtbot, window)
    assert window.avatar.name == "Mona Lisa"  # the default is chosen instead, and animated
    assert picture not in [e.path for e in window.entries()]  # no blank entry left behind
    assert window.gallery.currentItem().text() == "Mona Lisa"
    wait_for_frames(qtbot, window, 2)
    assert window.source_combo.currentText() == "Demo (no camera)"
    assert window.camera_view.image() is not None  # the You panel shows the demo, not "Looking for cameras…"
    assert window.settings.avatar != str(picture.resolve())  # not offered again next time


def test_a_chosen_microphone_that_is_not_there_is_a_message_and_the_video_is_recorded_silent(
        qtbot, make_window, generated_driver, tmp_path):
    window = _running(qtbot, make_window, generated_driver)
    messages = []
    window.outputs.message.connect(lambda title, text, *_: messages.append((title, text)))
    window.settings.microphone = "No Such Mic"
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert window.record_action.isChecked()  # recording goes on without sound
    assert messages and messages[0][0] == "No microphone" and "microphone 'No Such Mic'" in messages[0][1]
    assert "\n" not in messages[0][1]
    qtbot.wait(1000)
    qtbot.keyClick(window, Qt.Key.Key_R)
    qtbot.waitUntil(lambda: any((tmp_path / "recordings").glob("avatar-*.mp4")), timeout=10000)
    video = list((tmp_path / "recordings").glob("avatar-*.mp4"))[0]
    import av

    with av.open(str(video)) as c:
        assert len(c.streams.video) == 1 and not c.streams.audio
    assert not list((tmp_path / "recordings").glob(".*partial*"))
