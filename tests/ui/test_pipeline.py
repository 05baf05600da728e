"""The window's side of the pipeline: outputs plugged in and out while frames flow, avatars switched mid-run."""

from __future__ import annotations

import threading

import numpy as np

from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.frame import Frame
from avatar_app.ui.pipeline import OutputHub


class ListOutput:
    def __init__(self, fail=False):
        self.images, self.fail = [], fail

    def process(self, frame):
        self.write(frame.picture)

    def write(self, image):
        if self.fail:
            raise OSError("device went away")
        self.images.append(image)


def test_the_hub_feeds_its_outputs_and_unplugs_one_that_fails():
    failed = []
    hub = OutputHub(on_error=lambda output, err: failed.append((output, str(err))))
    good, bad = ListOutput(), ListOutput(fail=True)
    hub.add(good)
    hub.add(bad)
    hub.process(_frame((4, 4)))
    hub.process(_frame((4, 4)))
    assert len(good.images) == 2 and bad not in hub and failed == [(bad, "device went away")]
    assert hub.remove(good) and not hub.remove(good)
    hub.process(_frame((4, 4)))
    assert len(good.images) == 2  # not written after remove() returned
    hub.close()  # the runner's close leaves the outputs to their owner


def test_remove_waits_for_a_write_in_progress():
    hub = OutputHub()
    entered, release = threading.Event(), threading.Event()

    class Slow:
        def process(self, frame):
            entered.set()
            release.wait(2)

    slow = Slow()
    hub.add(slow)
    writer = threading.Thread(target=hub.process, args=(_frame((2, 2)),))
    writer.start()
    entered.wait(2)
    removed = []
    remover = threading.Thread(target=lambda: removed.append(hub.remove(slow)))
    remover.start()
    remover.join(0.1)
    assert remover.is_alive()  # blocked until the write is over, so closing afterwards is safe
    release.set()
    remover.join(2)
    writer.join(2)
    assert removed == [True]


def _frame(size: tuple[int, int]) -> Frame:
    """A finished frame message whose avatar image is black."""
    frame = Frame(image=np.zeros((*size, 3), np.uint8), index=0, t_capture=0.0)
    frame.output = np.zeros((*size, 3), np.uint8)
    return frame


def _start_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "avatar-ui-start" and t.is_alive()]


def _runner_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("avatar-capture", "avatar-tracker", "avatar-renderer")
            and t.is_alive()]


def test_closing_while_the_source_opens_abandons_the_start_before_preparing_the_renderer(
        qtbot, monkeypatch, mona_avatar, generated_driver):
    import avatar_app.ui.pipeline as live
    from avatar_app.pipeline.render.mesh import MeshRenderer

    opening, release = threading.Event(), threading.Event()
    opened, prepared = [], []
    real_open, real_prepare = live.open_source, MeshRenderer.prepare

    def slow_open(settings):  # a camera can take seconds to open
        opening.set()
        release.wait(30)
        source = real_open(settings)
        opened.append(source)
        return source

    def counting_prepare(self, *args, **kwargs):
        prepared.append(self)
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(live, "open_source", slow_open)
    monkeypatch.setattr(MeshRenderer, "prepare", counting_prepare)
    before = set(_start_threads())
    pipeline = live.LivePipeline()
    pipeline.set_avatar(mona_avatar, RenderSettings(size=96))
    pipeline.start(str(generated_driver))
    assert opening.wait(20)
    starts = [t for t in _start_threads() if t not in before]
    assert len(starts) == 1
    threading.Timer(0.2, release.set).start()  # the source opens just after the window closed
    pipeline.shutdown()
    release.set()
    starts[0].join(5)
    assert not starts[0].is_alive()
    assert prepared == []  # nothing more was prepared for a window that is gone
    assert len(opened) == 1 and not opened[0].is_open
    assert pipeline.runner is None and pipeline.stages is None and _runner_threads() == []


def test_a_start_that_finishes_as_the_window_closes_ends_and_leaves_nothing_running(
        qtbot, monkeypatch, mona_avatar, generated_driver):
    import avatar_app.ui.pipeline as live

    pipeline = live.LivePipeline()
    real_emit = pipeline._emit

    def emit(signal, *args):
        if signal is pipeline.started:  # the window closes just as the pipeline says it runs
            pipeline.shutdown()
        real_emit(signal, *args)

    monkeypatch.setattr(pipeline, "_emit", emit)
    before = set(_start_threads())
    pipeline.set_avatar(mona_avatar, RenderSettings(size=96))
    pipeline.start(str(generated_driver))
    starts = [t for t in _start_threads() if t not in before]
    assert len(starts) == 1
    starts[0].join(20)
    assert not starts[0].is_alive()
    assert pipeline.runner is None and _runner_threads() == []
