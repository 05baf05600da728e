"""`avatar-app bench`: a documented JSON, one CSV row per frame, a plot; a failing stage ends it, never a hang."""

import csv
import json
import threading

import pytest

from avatar_app.measure import bench
from avatar_app.measure.load import CpuLoad
from avatar_app.pipeline.animator import Animator
from avatar_app.commands.cli import main
from avatar_app.pipeline.render.base import RenderSettings
from tests.conftest import PORTRAITS

MONA = PORTRAITS / "mona_lisa.jpg"


def bench_args(driver, out, *extra):
    return ["bench", "--driver", str(driver), "--portrait", str(MONA), "--size", "128", "--frames", "40",
            "--warmup", "3", "--json", str(out / "bench.json"), *map(str, extra)]


def test_bench_writes_a_documented_json_a_row_per_frame_and_a_plot(tmp_path, generated_driver, capsys):
    code = main(bench_args(generated_driver, tmp_path, "--paced", 25, "--csv", tmp_path / "frames.csv",
                           "--plot", tmp_path / "latency.png"))
    printed = capsys.readouterr().out
    assert code == 0, printed

    doc = json.loads((tmp_path / "bench.json").read_text())
    assert bench.schema_errors(doc) == []
    assert doc["format"] == "avatar_app.bench" and doc["version"] == bench.VERSION == 3 and doc["ok"] is True
    run, result = doc["run"], doc["result"]
    assert run["mode"] == "paced" and run["paced_fps"] == 25 and run["backend"] == "mesh" and run["tracker"] == "region"
    assert run["provider"] == "cpu" and run["runtime"] is None and run["output_size"] == [72, 128] and run["drop_stale"] is True
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["threads"]["pipeline"] == 3
    assert result["frames"] == 40
    assert [s["name"] for s in result["stages"]] == ["tracker", "retarget", "renderer", "sink:null"]
    e2e = result["end_to_end_ms"]
    assert 0 < e2e["p50"] <= e2e["p95"] <= e2e["p99"] <= e2e["max"]
    assert result["audio_delay_ms"] == round(e2e["p50"])

    # The CPU budget: the process's share of the machine, split into capture, each stage and the rest.
    cpu = result["cpu"]
    assert cpu["cpu_count"] == doc["machine"]["cpu_count"] and cpu["frames"] == 40
    assert cpu["percent_of_machine"] == pytest.approx(cpu["percent_of_core"] / cpu["cpu_count"])
    assert cpu["percent_of_core"] == pytest.approx(100 * cpu["cpu_s"] / cpu["window_s"])
    assert cpu["ms_per_frame"] == pytest.approx(1000 * cpu["cpu_s"] / 40)
    parts = {p["name"]: p for p in cpu["parts"]}
    assert list(parts) == ["capture", "tracker", "retarget", "renderer", "sink:null", "other"]
    assert sum(p["cpu_s"] for p in parts.values()) == pytest.approx(cpu["cpu_s"])
    assert sum(p["percent_of_machine"] for p in parts.values()) == pytest.approx(cpu["percent_of_machine"])
    threads = [p for name, p in parts.items() if name != "other"]
    assert all(p["cpu_s"] >= 0 and p["per_frame_ms"]["p50"] >= 0 for p in threads)
    assert sum(p["cpu_s"] for p in threads) <= cpu["cpu_s"]
    assert parts["other"]["per_frame_ms"] is None

    with open(tmp_path / "frames.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 40
    lost = sum(n for queue, n in result["dropped"].items() if queue != "capture")  # capture drops have no frame
    assert len(rows) == 40 + lost + sum(result["failed"].values())
    assert all(float(r["end_to_end_ms"]) > 0 and float(r["renderer_ms"]) > 0 for r in ok)
    assert all(float(r[f"{name}_cpu_ms"]) >= 0 for r in ok for name in ("capture", "tracker", "renderer"))

    png = (tmp_path / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    for figure in ("tracker", "renderer", "capture->sink", "p99", "dropped:", "CPUs", "provider cpu",
                   "profiler overhead", "set your audio delay to", "% of the machine", "ms CPU per delivered frame"):
        assert figure in printed
    assert f"set your audio delay to {result['audio_delay_ms']} ms" in printed


def test_unpaced_bench_waits_for_the_tracker_instead_of_dropping(tmp_path, generated_driver):
    assert main(bench_args(generated_driver, tmp_path, "--unpaced")) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["run"]["mode"] == "unpaced" and doc["run"]["paced_fps"] is None
    assert doc["run"]["drop_stale"] is False
    assert doc["result"]["dropped"].get("tracker", 0) == 0  # the source waits; nothing is read in vain
    assert doc["result"]["fps"] > 0


def test_bench_says_which_tracker_it_ran(tmp_path, generated_driver, capsys):
    assert main(bench_args(generated_driver, tmp_path, "--unpaced", "--tracker", "graph")) == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert bench.schema_errors(doc) == [] and doc["run"]["tracker"] == "graph"
    assert "tracker graph" in capsys.readouterr().out


@pytest.mark.parametrize("stage", ["tracker", "renderer"])
def test_a_stage_that_raises_is_reported_as_a_failure(tmp_path, generated_driver, monkeypatch, capsys, stage):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    if stage == "tracker":
        monkeypatch.setattr("avatar_app.pipeline.tracker.FaceTracker.process", boom)
    else:
        monkeypatch.setattr(Animator, "render", boom)
    code = main(bench_args(generated_driver, tmp_path, "--unpaced"))
    err = capsys.readouterr().err
    assert code == 1
    assert f"bench failed: {stage} failed" in err and "boom" in err
    assert "Traceback" not in err
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert bench.schema_errors(doc) == []
    assert doc["ok"] is False and "boom" in doc["failure"]


def test_a_stage_that_hangs_is_reported_as_stalled(generated_driver, mona_avatar):
    release = threading.Event()
    animator = Animator(mona_avatar, RenderSettings(size=64))
    animator.render = lambda target, driver=None: release.wait(30)  # never returns a picture in time
    settings = bench.BenchSettings(generated_driver, size=64, frames=5, warmup=0, paced_fps=None,
                                   start_s=2.0, stall_s=2.0)
    try:
        result = bench.run_bench(mona_avatar, settings, animator=animator)
    finally:
        release.set()
    assert not result.ok and "stalled" in result.failure
    assert bench.schema_errors(bench.to_json(result)) == []


def test_schema_check_finds_what_is_wrong():
    doc = {"format": "avatar_app.bench", "version": bench.VERSION + 1, "ok": "yes"}
    errors = bench.schema_errors(doc)
    assert any("$.version" in e for e in errors) and any("$.ok" in e for e in errors)
    assert any("missing 'result'" in e for e in errors)


@pytest.mark.parametrize("change", [
    {"--driver": "missing.mp4"},
    {"--json": "report.txt"},
    {"--json": "no_such_folder/report.json"},
    {"--frames": "1"},
    {"--paced": "0"},
    {"--backend": "nonesuch"},
    {"--backend": "neural", "--model": "no_such_model"},  # a model folder that is not there
])
def test_bad_input_ends_in_one_line_and_exit_code_2(tmp_path, generated_driver, capsys, change):
    args = bench_args(generated_driver, tmp_path)
    for flag, value in change.items():
        value = str(tmp_path / value) if flag in ("--driver", "--json") else value
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avatar-app: error:") and "\n" not in err
    assert not (tmp_path / "bench.json").exists()


def test_bench_on_a_text_file_names_it(tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    args = ["bench", "--driver", str(fake), "--portrait", str(MONA), "--json", str(tmp_path / "b.json")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "notes.mp4" in err and len(err.strip().splitlines()) == 1


def test_with_framing_the_call_s_picture_is_made_and_timed_as_its_own_stage(generated_driver, mona_avatar):
    settings = bench.BenchSettings(generated_driver, size=64, frames=8, warmup=2, paced_fps=None, framing="follow")
    result = bench.run_bench(mona_avatar, settings)
    doc = bench.to_json(result)
    assert doc["run"]["framing"] == "follow"
    assert "call" in result.report.stages and result.report.frames == 8
    assert not bench.schema_errors(doc)


def test_bench_with_the_demo_face_as_driver_prints_its_figures(tmp_path, capsys):
    code = main(["bench", "--driver", "demo", "--portrait", str(MONA), "--size", "96", "--frames", "5",
                 "--warmup", "1", "--unpaced", "--json", str(tmp_path / "bench.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no such driver" not in err
    assert "renderer" in out and "capture->sink" in out and "set your audio delay to" in out
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["ok"] is True and doc["result"]["frames"] == 5


def _spinning(pids) -> list[int]:
    """Those of ``pids`` that still run (a reaped child is gone; a zombie no longer spins)."""
    import psutil

    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_bench_with_load_runs_busy_processes_beside_it_and_leaves_none_behind(tmp_path, generated_driver,
                                                                              monkeypatch, capsys):
    started, seen_running = [], []
    real_start = CpuLoad.start

    def start(self):
        real_start(self)
        started.extend(self.pids)
        seen_running.extend(_spinning(self.pids))

    monkeypatch.setattr(CpuLoad, "start", start)
    args = bench_args(generated_driver, tmp_path, "--unpaced", "--load", 1)
    args[args.index("--frames") + 1] = "5"
    code = main(args)
    printed = capsys.readouterr().out
    assert code == 0, printed
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert bench.schema_errors(doc) == [] and doc["run"]["load"] == 1
    assert "1 busy process beside the pipeline" in printed
    assert len(started) == 1 and seen_running == started  # it ran during the bench ...
    assert _spinning(started) == []  # ... and is gone after it


def test_an_interrupted_bench_stops_its_load(generated_driver, mona_avatar, monkeypatch):
    started = []
    real_start = CpuLoad.start
    monkeypatch.setattr(CpuLoad, "start", lambda self: (real_start(self), started.extend(self.pids)))

    def interrupt():
        raise KeyboardInterrupt

    settings = bench.BenchSettings(generated_driver, size=64, frames=5, warmup=0, paced_fps=None, load=2)
    with pytest.raises(KeyboardInterrupt):
        bench.run_bench(mona_avatar, settings, on_start=interrupt)
    assert len(started) == 2 and _spinning(started) == []


def test_the_load_ends_by_itself_when_the_bench_is_killed_or_its_time_is_up(tmp_path):
    import subprocess
    import sys

    import psutil

    with CpuLoad(1, limit_s=0.2) as load:  # its own limit
        child = psutil.Process(load.pids[0])
        child.wait(timeout=30)
    # A bench killed outright (no finally runs): its busy process sees its stdin close and ends.
    parent = subprocess.Popen([sys.executable, "-c", "import sys, time; from avatar_app.measure.load import CpuLoad; "
                               "load = CpuLoad(1); load.start(); print(load.pids[0], flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    orphan = psutil.Process(pid)
    parent.kill()
    parent.wait()
    orphan.wait(timeout=30)  # raises TimeoutExpired if it kept spinning
    assert _spinning([pid]) == []


def test_load_out_of_range_is_refused(generated_driver):
    with pytest.raises(ValueError, match="--load"):
        bench.BenchSettings(generated_driver, load=-1)
