"""Each panel against a stand-in pipeline (its signals and the few calls a panel makes), no frames flowing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from avatar_app.measure.profiler import HudSnapshot
from avatar_app.pipeline.frame import Frame
from avatar_app.ui.panels.hud import Hud
from avatar_app.ui.panels.previews import NO_FACE, NO_PICTURE, Previews
from avatar_app.ui.panels.renderer import RendererPicker
from avatar_app.ui.panels.sources import SourcePicker
from avatar_app.ui.settings import AppSettings
from avatar_app.ui.tasks import BackgroundTasks
from avatar_app.ui.widgets import FrameView


class StandInPipeline(QObject):
    """LivePipeline's signals, and what it answers, set by each test."""

    frame_ready = Signal()
    started = Signal(str)
    start_failed = Signal(str)
    problem = Signal(str)
    output_failed = Signal(object, str)
    avatar_switched = Signal(object)
    avatar_failed = Signal(str)

    def __init__(self):
        super().__init__()
        self.frame: Frame | None = None
        self.starts: list[str] = []
        self.snapshot: HudSnapshot | None = None
        self.hub: list = []
        self.output_size: tuple[int, int] | None = None
        self.running = False
        self.runner = None
        self.renderer = None
        self.last_problem = None

    def take_frame(self):
        frame, self.frame = self.frame, None
        return frame

    def start(self, spec: str, camera_fps=None) -> None:
        self.starts.append(spec)

    def hud(self) -> HudSnapshot:
        return self.snapshot


def _frame(avatar, driver=None, has_picture=True) -> Frame:
    frame = Frame(np.full((120, 160, 3), 90, np.uint8), index=3, t_capture=0.0, has_picture=has_picture,
                  driver=driver)
    frame.animator = SimpleNamespace(avatar=avatar)
    frame.output = np.full((128, 96, 3), 200, np.uint8)
    return frame


def test_the_previews_paint_the_newest_frame_and_say_when_there_is_no_face_or_no_picture(qtbot, mona_avatar):
    pipeline = StandInPipeline()
    previews = Previews(AppSettings(), pipeline)
    qtbot.addWidget(previews)
    pipeline.frame = _frame(mona_avatar)
    pipeline.frame_ready.emit()
    assert previews.camera_view.banner() == NO_FACE and previews.frames_shown == 1
    assert previews.avatar_view.image().shape == (128, 96, 3)
    pipeline.frame = _frame(mona_avatar, has_picture=False)
    pipeline.frame_ready.emit()
    assert previews.camera_view.banner() == NO_PICTURE
    pipeline.frame_ready.emit()  # nothing new: nothing painted twice
    assert previews.frames_shown == 2
    previews.show_text("The source stopped")
    assert previews.camera_view.image() is None and previews.camera_view.banner() is None


def test_mirroring_flips_both_previews_and_is_remembered(qtbot):
    settings = AppSettings(mirror=True)
    previews = Previews(settings, StandInPipeline())
    qtbot.addWidget(previews)
    with qtbot.waitSignal(previews.settings_changed):
        previews.mirror_action.setChecked(False)
    assert not settings.mirror and not previews.camera_view.mirrored and not previews.avatar_view.mirrored


def test_the_hud_names_stages_and_leaves_out_the_outputs_while_none_is_plugged_in(qtbot):
    pipeline = StandInPipeline()
    stages = {"tracker": 9.0, "renderer": 4.0, "sink:outputs": 0.1}
    pipeline.snapshot = HudSnapshot(frames=30, fps=29.5, stage_ms=stages, wait_ms={"renderer": 2.0}, latency_ms=40.0,
                                    latency_p95_ms=55.0, audio_delay_ms=40, dropped={"tracker": 0}, failed={},
                                    overhead_us=5.0)
    pipeline.output_size = (96, 128)
    settings = AppSettings(hud=True)
    hud = Hud(settings, pipeline, lambda: "mesh")
    with qtbot.waitSignal(hud.changed) as shown:
        hud.tick()
    lines = shown.args[0]
    assert lines == hud.last_lines and lines[0].split() == ["29.5", "fps", "latency", "40", "ms", "(p95", "55)"]
    assert "tracker 9.0" in lines[1] and "outputs" not in lines[1]
    assert lines[-1] == "mesh 96x128   delay audio by 40 ms"
    with qtbot.waitSignal(hud.changed) as shown:
        hud.action.setChecked(False)
    assert shown.args[0] == [] and not settings.hud


def test_a_renderer_choice_that_fails_is_undone_and_explained(qtbot, tmp_path):
    pipeline = StandInPipeline()
    settings = AppSettings(size=512)
    picker = RendererPicker(settings, pipeline, tmp_path)
    messages = []
    picker.message.connect(lambda title, text, *_: messages.append((title, text)))
    with qtbot.waitSignal(picker.changed):
        picker.size_combo.setCurrentIndex(picker.size_combo.findData(256))
    assert settings.size == 256
    with qtbot.waitSignal(picker.restored):
        pipeline.avatar_failed.emit("out of memory")
    assert messages == [("Not changed", "out of memory")]
    assert settings.size == 512 and picker.size_combo.currentData() == 512


def test_the_renderer_picker_offers_models_in_the_data_folder(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "mine" / "manifest.json").write_text("{}")
    picker = RendererPicker(AppSettings(), StandInPipeline(), tmp_path)
    offered = [picker.renderer_combo.itemData(i) for i in range(picker.renderer_combo.count())]
    assert f"neural:{tmp_path / 'models' / 'mine'}" in offered


def test_the_source_starts_once_an_avatar_is_ready_and_a_failure_is_said_in_the_preview(qtbot):
    pipeline = StandInPipeline()
    sources = SourcePicker(AppSettings(source="clip.mp4"), pipeline, BackgroundTasks())
    texts, stopped = [], []
    sources.camera_text.connect(texts.append)
    sources.stopped.connect(lambda title, text: stopped.append(title))
    sources.look_for_cameras(probe=False)
    assert pipeline.starts == []  # nothing to animate yet
    assert sources.source_combo.currentText() == "Video: clip.mp4"
    sources.avatar_ready()
    assert pipeline.starts == ["clip.mp4"] and texts[-1] == "Opening clip.mp4\u2026"
    pipeline.start_failed.emit("clip.mp4: no such file - check the path")
    assert texts[-1].startswith("clip.mp4: no such file") and stopped == ["Source not opened"]
    sources.avatar_ready()  # a new avatar tries the source again
    assert pipeline.starts == ["clip.mp4", "clip.mp4"]


def _text_pixels(view: FrameView) -> np.ndarray:
    """Where the view's white HUD text is painted: a boolean mask the size of the view."""
    image = view.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return pixels[:, : image.width() * 3].reshape(image.height(), image.width(), 3).min(axis=2) > 160


def test_the_hud_fits_a_narrow_view_instead_of_being_cut_off_at_its_right_edge(qtbot):
    stages = "ms  " + "  ".join(f"{name} {ms:.1f}" for name, ms in
                                 [("tracker", 9.1), ("retarget", 0.4), ("renderer", 4.2), ("outputs", 0.3),
                                  ("virtual-camera", 1.2), ("recording", 2.5)])
    lines = ["29.5 fps   latency 40 ms (p95 55)", stages, "mesh 96x128   delay audio by 40 ms"]
    views = {}
    for width in (1600, 260):  # the stage line fits the wide view and not the narrow one
        view = FrameView()
        qtbot.addWidget(view)
        view.resize(width, 400)
        view.set_hud(lines)
        views[width] = _text_pixels(view)
    wide, narrow = views[1600], views[260]
    assert narrow.shape[1] == 260 and wide.any()
    # Every glyph the wide view shows is painted in the narrow one too (wrapped onto more lines), none past its edge.
    assert narrow.sum() >= 0.97 * wide.sum()
    assert not narrow[:, -6:].any()  # the HUD's own margin stays clear
    rows = np.flatnonzero(narrow.any(axis=1))
    assert rows.max() > np.flatnonzero(wide.any(axis=1)).max()  # the stage line went on below


def test_once_no_camera_is_found_the_camera_preview_names_the_demo_not_the_search(qtbot, monkeypatch):
    monkeypatch.setattr("avatar_app.ui.panels.sources.find_cameras", list)
    pipeline = StandInPipeline()
    sources = SourcePicker(AppSettings(), pipeline, BackgroundTasks())
    texts = []
    sources.camera_text.connect(texts.append)
    sources.look_for_cameras()
    assert texts == ["Looking for cameras\u2026"]
    qtbot.waitUntil(lambda: len(texts) > 1, timeout=10000)
    assert texts[-1] == "Source: the demo, once the avatar is ready\u2026"  # no avatar yet (none could be used)
    assert sources.source_combo.currentText() == "Demo (no camera)"
    sources.avatar_ready()
    assert pipeline.starts == ["demo"] and texts[-1] == "Opening the demo\u2026"


def test_the_hud_and_the_status_bar_say_when_the_neural_renderer_gives_way_under_load(qtbot):
    pipeline = StandInPipeline()
    pipeline.snapshot = HudSnapshot(frames=30, fps=29.5, stage_ms={"renderer": 30.0}, wait_ms={}, latency_ms=40.0,
                                    latency_p95_ms=55.0, audio_delay_ms=40, dropped={}, failed={}, overhead_us=5.0)
    pipeline.output_size = (288, 512)
    pipeline.renderer = SimpleNamespace(degraded="full")
    hud = Hud(AppSettings(hud=False), pipeline, lambda: "neural")
    said = []
    hud.status.connect(lambda text, ms: said.append(text))
    hud.tick()
    assert said == []  # running in full is no news
    pipeline.renderer.degraded = "every other frame"
    hud.tick()  # the HUD is off: the status bar says it anyway
    pipeline.renderer.degraded = "mesh only"
    hud.tick()
    hud.tick()
    pipeline.renderer.degraded = "full"
    hud.tick()
    assert len(said) == 3
    assert "every other frame" in said[0] and "mesh alone" in said[1] and "every frame again" in said[2]

    pipeline.renderer = SimpleNamespace(degraded="full")  # another renderer: starts in full, nothing to say
    hud.tick()
    assert len(said) == 3
    pipeline.renderer.degraded = "mesh only"
    hud.settings.hud = True
    with qtbot.waitSignal(hud.changed) as shown:
        hud.tick()
    assert "generator: mesh only" in shown.args[0][-1] and len(said) == 4

    pipeline.renderer = SimpleNamespace()  # the mesh renderer has no modes: the HUD names none
    hud.tick()
    assert "generator" not in hud.last_lines[-1]
