"""The frame-latency profiler: percentiles, durations vs queue waits, drops and failures, warm-up, the HUD."""

import numpy as np
import pytest

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.frame import Frame
from avatar_app.measure.profiler import Profiler, ProfilerSettings, percentiles, timing_of
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.runner import LatestSlot, Runner
from avatar_app.pipeline.sources import SourceSettings, open_source

IMAGE = np.zeros((2, 2, 3), np.uint8)
STAGES = ("tracker", "retarget", "renderer", "sink:cam")


def synthetic_frame(index, t_capture, waits_ms, works_ms, stages=STAGES, entries=True, cpu_ms=None):
    """A frame stamped as the runner stamps it: before each stage it waits, then the stage works (and, given
    ``cpu_ms``, spends that much CPU on its thread; its first item is the capture thread's read)."""
    frame = Frame(IMAGE, index, t_capture)
    t = t_capture
    for stage, wait, work in zip(stages, waits_ms, works_ms):
        t += wait / 1000
        if entries:
            frame.stamps[f"enter:{stage}"] = t
        t += work / 1000
        frame.stamps[stage] = t
    for stage, ms in zip(("capture", *stages), cpu_ms or ()):
        frame.cpu[f"enter:{stage}"] = 100.0 + index
        frame.cpu[stage] = 100.0 + index + ms / 1000
    return frame


def test_percentiles_of_known_values():
    stats = percentiles(np.arange(1, 101, dtype=float))
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p95"] == pytest.approx(95.05)
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["max"] == 100 and stats["mean"] == pytest.approx(50.5) and stats["count"] == 100
    assert percentiles([]) is None


def test_stage_work_and_queue_waits_are_told_apart():
    profiler = Profiler()
    for i in range(100):
        # The renderer's work grows 1..100 ms; it always waited 5 ms in its queue.
        profiler.record(synthetic_frame(i, 10.0 + i, [1, 0, 5, 0], [10, 2, 1 + i, 0.5]))
    report = profiler.report()
    assert report.stages == list(STAGES)
    assert report.frames == 100
    renderer = report.duration_ms["renderer"]
    assert renderer["p50"] == pytest.approx(50.5) and renderer["p95"] == pytest.approx(95.05)
    assert renderer["p99"] == pytest.approx(99.01) and renderer["max"] == pytest.approx(100)
    assert report.wait_ms["renderer"]["p50"] == pytest.approx(5)
    assert report.duration_ms["tracker"]["max"] == pytest.approx(10)
    assert report.wait_ms["tracker"]["p50"] == pytest.approx(1)
    # Capture to sink is every wait plus every stage's work.
    assert report.end_to_end_ms["p50"] == pytest.approx(1 + 10 + 2 + 5 + 50.5 + 0.5)
    assert report.audio_delay_ms == round(69.0)
    assert report.fps == pytest.approx(1.0, rel=0.02)  # one frame a second out
    assert report.dropped == {} and report.failed == {}


def test_a_stage_without_an_entry_stamp_entered_when_the_last_one_left():
    frame = synthetic_frame(0, 1.0, [3, 4, 5, 6], [10, 10, 10, 10], entries=False)
    timing = timing_of(frame)
    assert list(timing.stages) == list(STAGES)
    assert all(w == 0 for w in timing.waits().values())
    assert timing.durations()["tracker"] == pytest.approx(0.013)  # its wait is folded into its work
    assert timing.end_to_end == pytest.approx(0.058)


def test_drops_and_failures_are_counted_per_queue_and_kept_as_rows():
    profiler = Profiler()
    for i in range(10):
        profiler.record(synthetic_frame(i, float(i), [1, 0, 1, 0], [10, 1, 20, 1]))
    for i in range(3):
        profiler.dropped("tracker", Frame(IMAGE, 100 + i, 20.0 + i))  # replaced before the tracker saw it
    profiler.dropped("renderer", synthetic_frame(200, 30.0, [1, 0], [10, 1], stages=STAGES[:2]))
    profiler.dropped("capture")  # a camera frame nobody read: a count, no row
    profiler.failed("renderer", synthetic_frame(300, 40.0, [1, 0], [10, 1], stages=STAGES[:2]))
    report = profiler.report()
    assert report.dropped == {"tracker": 3, "renderer": 1, "capture": 1}
    assert report.failed == {"renderer": 1}
    statuses = [t.status for t in report.timings]
    assert statuses.count("ok") == 10 and statuses.count("dropped:tracker") == 3
    assert statuses.count("dropped:renderer") == 1 and statuses.count("failed:renderer") == 1
    # The tracker's figures count the frame dropped after it, capture->sink only frames that got there.
    assert report.duration_ms["tracker"]["count"] == 12
    assert report.end_to_end_ms["count"] == 10
    hud = profiler.snapshot()
    assert hud.dropped == report.dropped and hud.failed == report.failed


def test_warm_up_is_left_out_and_the_record_stops_at_its_limit():
    profiler = Profiler(ProfilerSettings(window=5, skip_first=3, record_limit=4))
    profiler.dropped("tracker", Frame(IMAGE, 0, 0.0))  # during warm-up
    for i in range(3):
        profiler.record(synthetic_frame(i, float(i), [0, 0, 0, 0], [100, 1, 1, 1]))  # slow first frames
    assert profiler.frames_recorded == 0 and not profiler.complete
    for i in range(3, 7):
        profiler.record(synthetic_frame(i, float(i), [0, 0, 0, 0], [10, 1, 1, 1]))
        profiler.dropped("renderer", synthetic_frame(50 + i, float(i), [0, 0], [10, 1], stages=STAGES[:2]))
    assert profiler.complete and profiler.frames_recorded == 4
    for i in range(7, 20):  # after the limit the record is frozen; the HUD rolls on
        profiler.record(synthetic_frame(i, float(i), [0, 0, 0, 0], [30, 1, 1, 1]))
        profiler.dropped("tracker", Frame(IMAGE, 100 + i, float(i)))
    report = profiler.report()
    assert report.frames == 4
    assert [t.index for t in report.timings if t.status == "ok"] == [3, 4, 5, 6]
    assert report.duration_ms["tracker"]["max"] == pytest.approx(10)
    assert report.dropped == {"renderer": 3}  # the fourth came after the record was complete
    hud = profiler.snapshot()
    assert hud.frames == 5 and hud.stage_ms["tracker"] == pytest.approx(30)
    assert hud.dropped == {"tracker": 14, "renderer": 4}
    assert profiler.frames_seen == 20


def test_the_hud_snapshot_shows_the_last_frames_and_the_audio_delay():
    profiler = Profiler(ProfilerSettings(window=10))
    assert profiler.snapshot().audio_delay_ms is None and profiler.snapshot().frames == 0
    for i in range(30):
        slow = 40 if i >= 20 else 0  # only the last 10 frames are in the window
        profiler.record(synthetic_frame(i, i / 30, [1, 0, 2, 0], [12, 1, 20 + slow, 1]))
    hud = profiler.snapshot()
    assert hud.frames == 10
    assert list(hud.stage_ms) == list(STAGES)
    assert hud.stage_ms["renderer"] == pytest.approx(60)
    assert hud.wait_ms["renderer"] == pytest.approx(2)
    assert hud.latency_ms == pytest.approx(1 + 12 + 1 + 2 + 60 + 1)
    assert hud.latency_p95_ms == pytest.approx(hud.latency_ms)
    assert hud.audio_delay_ms == 77
    assert hud.fps == pytest.approx(30, rel=0.01)
    assert hud.overhead_us > 0
    profiler.reset()
    assert profiler.snapshot().frames == 0 and profiler.report().frames == 0


def test_cpu_per_stage_and_the_process_total_add_up():
    profiler = Profiler()
    for i in range(50):  # the renderer's CPU grows 1..50 ms; capture 0.5, tracker 4, retarget 1, sink 0.1
        profiler.record(synthetic_frame(i, 10.0 + i, [1, 0, 5, 0], [10, 2, 30, 0.5], cpu_ms=[0.5, 4, 1, 1 + i, 0.1]))
    profiler.dropped("renderer", synthetic_frame(99, 70.0, [1, 0], [10, 1], stages=STAGES[:2], cpu_ms=[0.5, 4, 1]))
    cpu = profiler.report().cpu
    assert list(cpu.part_s) == ["capture", *STAGES, "other"]
    assert cpu.per_frame_ms["renderer"]["p50"] == pytest.approx(25.5)
    assert cpu.per_frame_ms["renderer"]["mean"] == pytest.approx(25.5)
    assert cpu.per_frame_ms["tracker"]["count"] == 51  # the frame dropped after it spent tracker CPU too
    assert cpu.part_s["tracker"] == pytest.approx(51 * 0.004)
    assert "other" not in cpu.per_frame_ms  # the rest of the process has no per-frame figure
    # The parts add up to the process's CPU; the per cents and ms per frame are the same figure three ways.
    assert sum(cpu.part_s.values()) == pytest.approx(cpu.cpu_s)
    assert cpu.frames == 50 and cpu.cpu_count >= 1 and cpu.window_s > 0 and cpu.cpu_s >= 0
    assert cpu.percent_of_machine == pytest.approx(cpu.percent_of_core / cpu.cpu_count)
    assert cpu.percent_of_core == pytest.approx(100 * cpu.cpu_s / cpu.window_s)
    assert cpu.ms_per_frame == pytest.approx(1000 * cpu.cpu_s / 50)


def test_the_cpu_window_opens_after_the_warm_up_and_closes_with_the_record():
    profiler = Profiler(ProfilerSettings(skip_first=3, record_limit=5))
    for i in range(2):
        profiler.record(synthetic_frame(i, float(i), [0, 0, 0, 0], [1, 1, 1, 1], cpu_ms=[1, 1, 1, 1, 1]))
    assert profiler.report().cpu is None  # still warming up: nothing measured yet
    for i in range(2, 8):
        profiler.record(synthetic_frame(i, float(i), [0, 0, 0, 0], [1, 1, 1, 1], cpu_ms=[1, 2, 1, 1, 1]))
    first = profiler.report().cpu
    sum(range(200_000))  # CPU spent after the record was complete is not in it
    assert profiler.report().cpu == first
    assert first.frames == 5 and first.per_frame_ms["tracker"]["count"] == 5
    assert first.part_s["tracker"] == pytest.approx(5 * 0.002)  # warm-up frames left out


def test_profiler_settings_are_checked():
    with pytest.raises(ValueError):
        ProfilerSettings(window=1)
    with pytest.raises(ValueError):
        ProfilerSettings(record_limit=0)


def test_a_slot_hands_what_it_drops_to_its_listener():
    gone = []
    slot = LatestSlot(1, on_drop=gone.append)
    for i in range(4):
        slot.put(i)
    assert gone == [0, 1, 2] and slot.dropped == 3 and slot.get() == 3


class ListSink:
    name = "list"

    def __init__(self):
        self.count = 0

    def process(self, frame):
        self.count += 1

    def close(self):
        pass


def test_the_runner_reports_every_frame_to_the_profiler(generated_driver, mona_avatar):
    profiler = Profiler()
    outputs = []
    runner = Runner(
        open_source(SourceSettings(str(generated_driver), paced=True)),
        Animator(mona_avatar, RenderSettings(size=96)),
        [ListSink()],
        on_frame=outputs.append,
        observer=profiler,
    )
    runner.start()
    assert runner.wait(timeout=120)
    report = profiler.report()
    stats = runner.stats
    assert report.frames == stats.frames_rendered == len(outputs) > 20
    assert report.stages == ["tracker", "retarget", "renderer", "sink:list"]
    assert sum(report.dropped.values()) == sum(stats.dropped.values())
    assert stats.frames_captured == report.frames + sum(report.dropped.values())
    for out in outputs:  # exit stamps as before, and an entry stamp before each
        s = out.stamps
        assert out.t_capture <= s["enter:tracker"] <= s["tracker"] <= s["retarget"]
        assert s["retarget"] <= s["enter:renderer"] <= s["renderer"] <= s["enter:sink:list"] <= s["sink:list"]
        # and each thread's CPU clock at the same places, the capture thread's around its read
        assert all(out.cpu[f"enter:{name}"] <= out.cpu[name] for name in ("capture", *report.stages))
    assert report.overhead_us["count"] == report.frames and report.overhead_us["mean"] > 0
    cpu = report.cpu
    assert list(cpu.part_s) == ["capture", *report.stages, "other"]
    assert all(cpu.per_frame_ms[n]["count"] >= report.frames and cpu.per_frame_ms[n]["p50"] >= 0
               for n in ("capture", *report.stages))
    measured = [cpu.part_s[n] for n in ("capture", *report.stages)]
    assert all(s >= 0 for s in measured) and sum(measured) <= cpu.cpu_s  # the threads' share of the process
    assert cpu.percent_of_machine == pytest.approx(cpu.percent_of_core / cpu.cpu_count) and cpu.percent_of_core > 0
    assert profiler.snapshot().audio_delay_ms > 0


def test_a_runner_without_a_profiler_stamps_exits_only(generated_driver, mona_avatar):
    outputs = []
    runner = Runner(open_source(SourceSettings(str(generated_driver))), Animator(mona_avatar, RenderSettings(size=64)),
                    on_frame=outputs.append)
    runner.start()
    assert runner.wait(timeout=120)
    assert outputs and all(not k.startswith("enter:") for o in outputs for k in o.stamps)
    assert all(not o.cpu for o in outputs)  # nor CPU stamps
