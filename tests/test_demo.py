"""The demo source: a face that moves by itself, for a first run without a camera (pipeline/demo.py)."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.pipeline.demo import DemoScript, close_eyes, demo_landmarks
from avatar_app.pipeline.sources import DemoSource
from avatar_app.pipeline.sources import SourceSettings, open_source, probe_video
from tests.conftest import PORTRAITS

# 30 frames at 25 fps: the life cycle without rendering a whole pass (silent, so no painted mouth carries over
# from the end of one pass into the next)
SHORT = DemoScript(period=1.2, speech=())


def test_open_source_demo_gives_a_demo_source_with_the_life_cycle_of_the_others():
    for spec in ("demo", SourceSettings("demo")):
        source = open_source(spec)
        assert isinstance(source, DemoSource) and source.is_open
        assert source.fps == 25 and source.size == (410, 480)  # the painting's aspect, a webcam's height
        first = source.read()
        assert first.index == 0 and first.t_media == 0 and first.image.shape == (480, 410, 3)
        assert first.image.std() > 20  # a picture, not a blank
        source.close()
        with pytest.raises(RuntimeError):
            source.read()


def test_one_pass_ends_unless_it_loops_and_a_loop_goes_on():
    with DemoSource(SourceSettings("demo", height=128), SHORT) as once:
        frames = list(once)
    assert len(frames) == once.frame_count == 30
    assert [f.t_media for f in frames[:3]] == [0.0, 0.04, 0.08]
    assert not np.array_equal(frames[0].image, frames[15].image)  # it moves
    with DemoSource(SourceSettings("demo", height=128, loop=True), SHORT) as looping:
        again = [looping.read() for _ in range(65)]
    assert again[-1].index == 64
    assert np.array_equal(again[30].image, frames[0].image)  # the second pass starts where the first did


def test_the_script_starts_at_rest_loops_without_a_seam_and_does_what_a_face_does():
    script = DemoScript()
    rest = script.pose(0.0)
    assert (rest.yaw, rest.pitch, rest.roll, rest.mouth, rest.blink, rest.shift) == (0, 0, 0, 0, 0, (0, 0))
    end = script.pose(script.period - 1e-4)
    assert max(abs(end.yaw), abs(end.pitch), abs(end.roll), end.mouth, end.blink) < 0.05
    poses = [script.pose(t) for t in np.arange(0, script.period, 0.02)]
    span = {k: np.ptp([getattr(p, k) for p in poses]) for k in ("yaw", "pitch", "roll")}
    assert span["yaw"] >= 18 and span["pitch"] >= 10 and span["roll"] >= 10
    mouth = np.array([p.mouth for p in poses])
    assert mouth.max() > 0.25 and ((mouth[1:] > 0.05) & (mouth[:-1] <= 0.05)).sum() >= 10  # syllables
    blink = np.array([p.blink for p in poses])
    assert ((blink[1:] > 0.5) & (blink[:-1] <= 0.5)).sum() >= 3


def test_closed_eyes_meet_and_the_rest_of_the_face_stays(girl_avatar):
    from avatar_app.face import landmarks as L

    neutral = girl_avatar.landmarks.astype(np.float64)
    shut = close_eyes(neutral, 1.0)
    for eye in (0, 1):
        upper, lower = L.EYE_UPPER[eye][1:-1], L.EYE_LOWER[eye][1:-1]
        assert np.abs(shut[upper] - shut[lower]).max() < 1e-6
    others = np.setdiff1d(np.arange(len(neutral)), np.concatenate([L.EYE_UPPER[0], L.EYE_LOWER[0], L.EYE_UPPER[1],
                                                                   L.EYE_LOWER[1]]))
    assert np.array_equal(shut[others], neutral[others])
    assert np.allclose(demo_landmarks(neutral, DemoScript().pose(0.0)), neutral)


def test_the_tracker_finds_the_demo_face_in_nearly_every_frame_and_follows_its_script():
    from avatar_app.face import landmarks as L
    from avatar_app.face.geometry import fit_similarity, head_pose_angles
    from avatar_app.pipeline.stages import TrackerStage

    script = DemoScript()
    tracker = TrackerStage(media_time=True)
    found, gaps, yaws, scripted = 0, [], [], []
    with DemoSource(SourceSettings("demo")) as source:
        for _ in range(250):  # 10 s
            frame = source.read()
            tracker.process(frame)
            p = frame.driver
            if p is None:
                continue
            found += 1
            if found == 1:
                rest = p
            # The lips' gap over the face's height: a turn foreshortens the mouth's width, not the face's height.
            gaps.append(np.linalg.norm(p[14, :2] - p[13, :2]) / np.linalg.norm(p[L.CHIN, :2] - p[L.FOREHEAD, :2]))
            yaws.append(head_pose_angles(fit_similarity(rest[L.RIGID], p[L.RIGID]).rotation)[0])
            scripted.append(script.pose(frame.t_media))
    tracker.close()
    assert found >= 0.97 * 250
    # What MediaPipe reads off the demo is what the script did: the mouth talks, the head turns.
    assert np.corrcoef(gaps, [s.mouth for s in scripted])[0, 1] > 0.6
    assert np.corrcoef(yaws, [s.yaw for s in scripted])[0, 1] > 0.9
    assert np.ptp(yaws) > 10


def test_render_takes_the_demo_as_its_driver(tmp_path, capsys):
    out = tmp_path / "demo_mona.mp4"
    assert main(["render", "--driver", "demo", "--portrait", str(PORTRAITS / "mona_lisa.jpg"), "--out", str(out),
                 "--size", "128"]) == 0
    printed = capsys.readouterr().out
    assert "300 frames at 25 fps" in printed and "face found in 300/300 frames" in printed
    assert probe_video(out).frame_count == 300


def test_the_gui_command_takes_the_demo_as_its_source(monkeypatch):
    pytest.importorskip("PySide6")
    import avatar_app.ui.app as app

    calls = []
    monkeypatch.setattr(app, "run_app", lambda options: calls.append(options) or 0)
    monkeypatch.setattr(app, "display_problem", lambda: None)
    assert main(["gui", "--source", "demo"]) == 0
    assert calls[0].source == "demo"


def _picker(request, monkeypatch, cameras):
    """A SourcePicker whose camera search finds `cameras`, over a pipeline that only records what it starts."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")
    request.getfixturevalue("qtbot")  # a QApplication
    from PySide6.QtCore import QObject, Signal

    import avatar_app.ui.panels.sources as panel
    from avatar_app.ui.settings import AppSettings

    class Pipeline(QObject):
        started = Signal(str)
        start_failed = Signal(str)

        def __init__(self):
            super().__init__()
            self.starts = []

        def start(self, spec, camera_fps=None):
            self.starts.append(spec)

    class Tasks:  # runs the search at once, on this thread
        def run(self, name, work, done):
            done(work(), None)

    monkeypatch.setattr(panel, "find_cameras", lambda: list(cameras))
    settings, pipeline = AppSettings(), Pipeline()
    return panel.SourcePicker(settings, pipeline, Tasks()), settings, pipeline


def test_the_source_list_offers_the_demo_and_runs_it_when_no_camera_is_found(request, monkeypatch):
    picker, settings, pipeline = _picker(request, monkeypatch, cameras=[])
    picker.look_for_cameras()
    texts = [picker.source_combo.itemText(i) for i in range(picker.source_combo.count())]
    assert "Demo (no camera)" in texts and texts[-1].startswith("Video file")
    assert picker.source_combo.currentText() == "Demo (no camera)"
    picker.avatar_ready()
    assert pipeline.starts == ["demo"]
    assert settings.source == ""  # not remembered: a camera plugged in later is found next time


def test_a_camera_found_wins_over_the_demo_and_the_demo_can_be_chosen(request, monkeypatch):
    picker, settings, pipeline = _picker(request, monkeypatch, cameras=["0"])
    picker.look_for_cameras()
    picker.avatar_ready()
    assert pipeline.starts == ["0"] and picker.source_combo.currentText() == "Camera 0"
    combo = picker.source_combo
    combo.setCurrentIndex(combo.findData("demo"))
    combo.activated.emit(combo.currentIndex())
    assert pipeline.starts == ["0", "demo"] and settings.source == "demo"


def test_until_calibrated_the_demo_holds_still_with_its_mouth_shut_then_it_speaks():
    """A first run's calibration waits for a still, silent face: the demo gives it one, then talks."""
    from avatar_app.pipeline.render.mouth import mouth_opening
    from avatar_app.pipeline.stages import TrackerStage

    talks_at_once = DemoScript(period=4.0, speech=((0.1, 3.9),))  # speech from its start: a face that never waits
    tracker = TrackerStage(media_time=True)
    with DemoSource(SourceSettings("demo", height=256, loop=True), talks_at_once) as source:
        source.set_calibrated(False)
        waiting = [source.read() for _ in range(30)]
        source.set_calibrated(True)
        talking = [source.read() for _ in range(40)]
        for frame in waiting + talking:
            tracker.process(frame)
    tracker.close()
    assert all(np.array_equal(f.image, waiting[0].image) for f in waiting)  # still: no turn, no blink, no word
    before = [mouth_opening(f.driver) for f in waiting if f.driver is not None]
    after = [mouth_opening(f.driver) for f in talking if f.driver is not None]
    assert len(before) >= 25 and len(after) >= 35
    # Before: the painting's own mouth at rest (her lips are parted a little), steady once the tracker settles;
    # after: syllables open it well past that and close it again.
    assert np.ptp(before[5:]) < 0.01
    assert max(after) > max(before) + 0.1 and min(after) < max(before)
