"""The threaded runner: frames flow with per-stage stamps, the newest frame wins, faults stay contained."""

import threading
from pathlib import Path

import numpy as np

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.runner import LatestSlot, Runner
from avatar_app.pipeline.sources import SourceSettings, open_source
from tests.fakes import ListSink

PACKAGE = Path(__file__).resolve().parents[1] / "avatar_app"


def test_latest_slot_keeps_the_newest_and_counts_drops():
    slot = LatestSlot(1)
    for i in range(5):
        slot.put(i)
    assert slot.get() == 4
    assert slot.dropped == 4 and slot.high_water == 1
    assert slot.get(timeout=0.01) is None
    slot.close()
    assert slot.closed_and_empty


def test_frames_flow_through_every_stage_in_order(generated_driver, mona_avatar):
    outputs = []
    sink = ListSink()
    runner = Runner(
        open_source(SourceSettings(str(generated_driver), paced=True)),
        Animator(mona_avatar, RenderSettings(size=128)),
        [sink],
        on_frame=outputs.append,
    )
    runner.start()
    assert runner.wait(timeout=120)
    assert sink.closed
    assert runner.stats.frames_rendered == len(sink.images) == len(outputs) > 20
    for out in outputs:
        s = out.stamps
        assert out.t_capture <= s["tracker"] <= s["retarget"] <= s["renderer"] <= s["sink:list"]
        assert out.output.shape == (128, 72, 3)
        assert out.avatar is mona_avatar and out.driver.shape == (478, 3) and out.target.shape == (478, 3)
    assert all(o.face_found for o in outputs)
    # The newest frame wins: whatever was dropped is counted, and frames leave in capture order.
    indices = [o.index for o in outputs]
    assert indices == sorted(indices)
    assert runner.stats.frames_captured == runner.stats.frames_rendered + sum(runner.stats.dropped.values())


def test_stop_ends_every_thread_of_a_looping_source(generated_driver, mona_avatar):
    sink = ListSink()
    runner = Runner(
        open_source(SourceSettings(str(generated_driver), loop=True)),
        Animator(mona_avatar, RenderSettings(size=96)),
        [sink],
    )
    before = threading.active_count()
    runner.start()
    while len(sink.images) < 5:
        threading.Event().wait(0.02)
    runner.stop()
    assert not runner.running
    assert threading.active_count() <= before
    assert sink.closed


def test_a_failing_sink_is_switched_off_and_the_others_go_on(generated_driver, mona_avatar):
    good, bad = ListSink("good"), ListSink("bad", fail_after=3)
    problems = []
    runner = Runner(
        open_source(SourceSettings(str(generated_driver), paced=True)),
        Animator(mona_avatar, RenderSettings(size=96)),
        [bad, good],
        on_problem=problems.append,
    )
    runner.start()
    assert runner.wait(timeout=120)
    assert len(bad.images) == 3 and bad.closed
    assert len(good.images) == runner.stats.frames_rendered > 3
    assert "bad" in runner.stats.sink_errors and any("bad switched off" in p for p in problems)


def test_a_renderer_error_skips_one_frame_only(generated_driver, mona_avatar):
    animator = Animator(mona_avatar, RenderSettings(size=96))
    real = animator.render
    calls = {"n": 0}

    def flaky(target, driver=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("one bad frame")
        return real(target)

    animator.render = flaky
    sink = ListSink()
    runner = Runner(open_source(SourceSettings(str(generated_driver), paced=True)), animator, [sink])
    runner.start()
    assert runner.wait(timeout=120)
    assert runner.stats.render_errors == 1
    assert len(sink.images) == calls["n"] - 1 > 5


def test_face_lost_keeps_the_sinks_fed(tmp_path, mona_avatar, generated_driver):
    """Blank frames in the middle of the driver: every frame still reaches the sink."""
    from avatar_app.pipeline.sinks import VideoFileSink

    clip = tmp_path / "gap.mp4"
    frames = [f.image for f in open_source(str(generated_driver))]
    h, w = frames[0].shape[:2]
    with VideoFileSink(clip, fps=25, size=(w, h)) as sink:
        for i, f in enumerate(frames[:20]):
            sink.write(f if not 8 <= i < 14 else np.zeros_like(f))
    out = []
    runner = Runner(open_source(SourceSettings(str(clip), paced=True)), Animator(mona_avatar, RenderSettings(size=96)),
                    on_frame=out.append)
    runner.start()
    assert runner.wait(timeout=120)
    assert runner.stats.frames_without_face >= 4
    lost = [o for o in out if not o.face_found]
    assert lost and all(o.output.shape == (96, 54, 3) for o in lost)



def test_the_runner_tells_the_demo_when_the_avatar_is_calibrated_and_only_then_it_moves(mona_avatar):
    from avatar_app.pipeline.calibration import CalibrationSettings
    from avatar_app.pipeline.demo import DemoScript
    from avatar_app.pipeline.sources import DemoSource

    source = DemoSource(SourceSettings("demo", height=192, paced=True), DemoScript(period=3.0, speech=((0.1, 2.9),)))
    animator = Animator(mona_avatar, RenderSettings(size=96), guided=True,
                        calibration=CalibrationSettings(hold_s=0.3, patience_s=0.6))  # her rest pose looks aside
    outputs = []
    runner = Runner(source, animator, [ListSink()], on_frame=outputs.append)
    runner.start()
    assert runner.wait(timeout=120)
    waiting = [o for o in outputs if o.calibration_left is not None]
    moving = [o for o in outputs if o.calibration_left is None]
    assert len(waiting) >= 3 and len(moving) >= 20  # she held still, was calibrated, and went on
    assert all(np.array_equal(o.image, waiting[0].image) for o in waiting)
    assert sum(not np.array_equal(o.image, waiting[0].image) for o in moving) >= 15  # then she moves and talks
