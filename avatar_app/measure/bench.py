"""Frame latency through the real threaded pipeline, from a video file standing in for a camera.

``run_bench`` drives the same ``Runner`` the desktop app uses, with a ``Profiler`` attached: paced at a
camera's rate it measures latency (and the audio delay that lines lips and voice up); unpaced it measures
throughput. The result is a table, a versioned JSON document (``REPORT_SCHEMA`` below is its definition), a
CSV with one row per frame and a PNG of the distributions. `avatar-app bench` is the command for it.
"""

from __future__ import annotations

import csv
import datetime
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from avatar_app import __version__
from avatar_app.pipeline.animator import Animator
from avatar_app.atomic import atomic_path
from avatar_app.pipeline.avatar import Avatar
from avatar_app.errors import AvatarAppError
from avatar_app.measure import cpu
from avatar_app.measure.load import CpuLoad
from avatar_app.pipeline.frame import now
from avatar_app.measure.profiler import LatencyReport, Profiler, ProfilerSettings
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.tracker import TrackerSettings
from avatar_app.pipeline.runner import Runner, RunnerSettings
from avatar_app.call.framing import FramingSettings
from avatar_app.call.picture import CallPicture, CallSettings
from avatar_app.pipeline.sources import FrameSource, SourceSettings, open_source
from avatar_app.pipeline.stages import StageLoop, TrackerStage

FORMAT = "avatar_app.bench"
VERSION = 3  # 2: result.cpu, the CPU budget; 3: run.load (busy processes beside it), result.renderer_modes
PIPELINE_THREADS = 3  # capture; tracker + retarget; renderer + sinks (see runner.py)


@dataclass(frozen=True)
class BenchSettings:
    """``paced_fps``: release driver frames at this rate, as a camera does (None: unpaced, as fast as the
    pipeline takes them). ``frames``: frames that reach the sinks and are measured, after ``warmup`` frames
    that are not (model loading, JIT compilation). A run that stalls for ``stall_s`` seconds (``start_s``
    before the first frame) fails instead of hanging. ``load``: busy processes, each spinning a CPU, run beside
    the pipeline from its start to its end, as a video-call program loads the machine (measure/load.py); each
    stops by itself after ``load_limit_s`` at the latest."""

    driver: Path
    size: int = 512
    backend: str = "mesh"
    model: str | None = None  # neural: the exported model folder; runtime and provider as in RenderSettings
    runtime: str = "onnx"
    mouth: str = "painted"  # RenderSettings.mouth and mouth_model
    mouth_model: str | None = None
    provider: str | None = None
    trust_code: bool = False
    frames: int = 300
    warmup: int = 30
    paced_fps: float | None = 30.0
    slot_size: int = 1
    start_s: float = 120.0
    stall_s: float = 20.0
    # The call's picture as the window makes it for the virtual camera (avatar_app/call/), or None: none
    framing: str | None = None
    call_size: tuple[int, int] = (1280, 720)
    load: int = 0
    load_limit_s: float = 900.0
    tracker: str = "region"  # TrackerSettings.backend: "region" or "graph" (MediaPipe's FaceMesh graph)

    def __post_init__(self) -> None:
        object.__setattr__(self, "driver", Path(self.driver))
        if self.frames < 2:
            raise ValueError(f"--frames must be at least 2, got {self.frames}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.paced_fps is not None and not 1 <= self.paced_fps <= 240:
            raise ValueError(f"--paced must be between 1 and 240 frames per second, got {self.paced_fps:g}")
        if not 0 <= self.load <= 64:
            raise ValueError(f"--load must be between 0 and 64 busy processes, got {self.load}")

    @property
    def mode(self) -> str:
        return "unpaced" if self.paced_fps is None else "paced"


@dataclass
class BenchResult:
    settings: BenchSettings
    avatar: str
    backend: str
    runtime: str | None
    provider: str
    output_size: tuple[int, int]
    driver_info: dict
    machine: dict
    runner: dict
    report: LatencyReport
    failure: str | None = None
    # Frames the renderer drew in each of its modes (neural under load: "full", "every other frame", "mesh only");
    # None for a renderer that has a single mode.
    renderer_modes: dict[str, int] | None = None
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                         .strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def ok(self) -> bool:
        return self.failure is None


class CameraClock:
    """A (looping) file source read like a camera: frame k is delivered at start + k / fps, whatever the
    file's own rate. A reader that falls more than a frame behind does not get a burst of old frames: the
    frames it missed are counted (``on_missed``) and the clock moves on, as a camera's would."""

    is_live = True

    def __init__(self, source: FrameSource, fps: float, on_missed=None):
        self.source = source
        self.fps = fps
        self.on_missed = on_missed
        self._period = 1.0 / fps
        self._due: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.source.size

    def open(self) -> None:
        self.source.open()

    def read(self):
        frame = self.source.read()  # decoding stands for a camera's exposure and transfer
        if frame is None:
            return None
        t = now()
        if self._due is None:
            self._due = t
        late = t - self._due
        if late < 0:
            time.sleep(-late)
        elif late >= self._period:
            missed = int(late / self._period)
            self._due += missed * self._period
            if self.on_missed is not None:
                for _ in range(missed):
                    self.on_missed()
        frame.t_capture = now()
        self._due += self._period
        return frame

    def close(self) -> None:
        self.source.close()


class NullSink:
    """Takes frames and keeps none: the pipeline's end when no virtual camera or file is wanted."""

    name = "null"

    def process(self, frame) -> None:
        pass

    def close(self) -> None:
        pass


class _LogCollector(logging.Handler):
    """Keeps the runner's warnings (a stage's error text) for the failure line, instead of a traceback."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            text = f"{text}: {type(err).__name__}: {err}"
        self.messages.append(text)


def thread_settings() -> dict:
    """The thread counts that shape the figures: the pipeline's own, OpenCV's, numba's and the env's."""
    import cv2
    import numba

    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    return {
        "pipeline": PIPELINE_THREADS,
        "opencv": int(cv2.getNumThreads()),
        "numba": int(numba.get_num_threads()),
        "env": {k: os.environ[k] for k in names if k in os.environ},
    }


def machine_info() -> dict:
    # The load average says whether other work shared the CPUs during the run (figures are then pessimistic).
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count() or 0,
        "load_average_1min": load,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "threads": thread_settings(),
    }


def run_bench(avatar: Avatar, settings: BenchSettings, animator: Animator | None = None,
              on_start: Callable[[], None] | None = None) -> BenchResult:
    """Run the threaded pipeline from ``settings.driver`` (looping) until ``settings.frames`` frames are
    measured, a stage fails, or it stalls; never raises for a stage's error, returns it in ``failure``.
    Bad input (an unreadable driver, an unknown backend) raises AvatarAppError before anything runs;
    ``on_start`` is called once the pipeline runs."""
    profiler = Profiler(ProfilerSettings(skip_first=settings.warmup, record_limit=settings.frames))
    paced = settings.paced_fps is not None
    video = open_source(SourceSettings(str(settings.driver), loop=True))  # a bad file fails here, in one line
    driver_info = {"path": str(settings.driver), "size": list(video.size), "fps": video.fps}
    source = CameraClock(video, settings.paced_fps, lambda: profiler.dropped("capture")) if paced else video
    try:
        animator = animator or Animator(avatar, RenderSettings(
            size=settings.size, backend=settings.backend, model=settings.model, runtime=settings.runtime,
            provider=settings.provider, trust_code=settings.trust_code, mouth=settings.mouth,
            mouth_model=settings.mouth_model, live_fps=settings.paced_fps))  # paced: held as live
    except BaseException:
        video.close()
        raise
    # Live, the newest frame wins; unpaced, the file waits for the tracker instead of decoding frames that
    # would be dropped, so decoding does not take CPU from the stages being measured.
    # A benchmark stops at a source failure (give_up_s=0) rather than measuring the retries.
    runner_settings = RunnerSettings(slot_size=settings.slot_size, drop_stale=paced, give_up_s=0.0,
                                     tracker=TrackerSettings(backend=settings.tracker))
    problems: list[str] = []
    logs = _LogCollector()
    runner_log = logging.getLogger("avatar_app.pipeline.runner")
    runner_log.addHandler(logs)
    call = None if settings.framing is None else CallPicture(CallSettings(FramingSettings(*settings.call_size,
                                                                                        mode=settings.framing)))
    stages = StageLoop(animator, TrackerStage(runner_settings.tracker), call=call)
    if call is not None:
        call.prepare(animator)  # the person cut out before the clock starts, as the window does
    runner = Runner(source, stages, [NullSink()], runner_settings, on_problem=problems.append, observer=profiler)
    failure = None
    load = CpuLoad(settings.load, settings.load_limit_s)
    try:
        load.start()  # inside the try: an interrupted bench stops its busy processes too
        runner.start()
        if on_start is not None:
            on_start()
        failure = _wait_for(runner, profiler, settings, problems, logs)
    finally:
        runner.stop()
        load.stop()
        runner_log.removeHandler(logs)
    renderer = animator.renderer
    model = getattr(renderer, "model", None)  # the neural renderer's exported model knows its runtime/device
    return BenchResult(
        settings=settings,
        avatar=avatar.name,
        backend=getattr(renderer, "name", settings.backend),
        runtime=getattr(model, "runtime", None),
        provider=getattr(renderer, "provider", None) or getattr(model, "provider", None) or "cpu",
        output_size=tuple(animator.output_size),
        driver_info=driver_info,
        machine=machine_info(),
        runner={"drop_stale": runner_settings.drop_stale, "slot_size": runner_settings.slot_size,
                "sinks": ["null"]},
        report=profiler.report(),
        failure=failure,
        renderer_modes=dict(renderer.mode_frames) if hasattr(renderer, "mode_frames") else None,
    )


def _wait_for(runner: Runner, profiler: Profiler, s: BenchSettings, problems: list[str], logs) -> str | None:
    """Poll until the record is complete; the reason it never will be, if so."""
    seen, progress = 0, now()
    while not profiler.complete:
        failed = profiler.failures
        if problems or failed:
            detail = problems or logs.messages or [f"{k} failed" for k in failed]
            return f"{', '.join(sorted(failed)) or 'a stage'} failed after {seen} frames: {detail[0]}"
        if not runner.running:
            return f"the pipeline stopped after {seen} frames: {(logs.messages or ['no reason given'])[0]}"
        if profiler.frames_seen != seen:
            seen, progress = profiler.frames_seen, now()
        elif now() - progress > (s.start_s if seen == 0 else s.stall_s):
            return f"no frame reached the end for {now() - progress:.0f} s after {seen} frames (stalled)"
        time.sleep(0.02)
    return None


# -- the JSON document ------------------------------------------------------------------------------------
_NUM = {"type": "number"}
_STATS = {
    "type": ["object", "null"],
    "required": ["p50", "p95", "p99", "max", "mean", "count"],
    "properties": {"p50": _NUM, "p95": _NUM, "p99": _NUM, "max": _NUM, "mean": _NUM,
                   "count": {"type": "integer", "minimum": 1}},
}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}

# Version 2 of the document `avatar-app bench --json` writes, as a JSON Schema (draft 2020-12 subset).
# Milliseconds unless a name says otherwise; every statistic is {p50, p95, p99, max, mean, count} or null.
REPORT_SCHEMA = {
    "type": "object",
    "required": ["format", "version", "ok", "failure", "created", "app_version", "machine", "run", "result"],
    "properties": {
        "format": {"const": FORMAT},
        "version": {"const": VERSION},
        "ok": {"type": "boolean"},
        "failure": {"type": ["string", "null"]},
        "created": {"type": "string"},  # UTC, ISO 8601
        "app_version": {"type": "string"},
        "machine": {
            "type": "object",
            "required": ["cpu_count", "load_average_1min", "platform", "python", "threads"],
            "properties": {
                "cpu_count": {"type": "integer"},
                "load_average_1min": {"type": ["number", "null"]},  # at the end of the run; null on Windows
                "platform": {"type": "string"},
                "python": {"type": "string"},
                "threads": {
                    "type": "object",
                    "required": ["pipeline", "opencv", "numba", "env"],
                    "properties": {"pipeline": {"type": "integer"}, "opencv": {"type": "integer"},
                                   "numba": {"type": "integer"},
                                   "env": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
            },
        },
        "run": {
            "type": "object",
            "required": ["driver", "driver_size", "driver_fps", "avatar", "backend", "runtime", "provider", "size",
                         "output_size", "mode", "paced_fps", "frames", "warmup", "drop_stale", "slot_size",
                         "sinks", "load"],
            "properties": {
                "driver": {"type": "string"},
                "driver_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "driver_fps": _NUM,
                "avatar": {"type": "string"},
                "backend": {"type": "string"},
                "runtime": {"type": ["string", "null"]},  # neural: onnx or torchscript; null for mesh
                "provider": {"type": "string"},  # the device the renderer runs on: cpu or cuda
                "size": {"type": "integer"},
                "output_size": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
                "mode": {"enum": ["paced", "unpaced"]},
                "paced_fps": {"type": ["number", "null"]},
                "framing": {"type": ["string", "null"]},  # the call's picture made (follow, fill, fit) or null
                "tracker": {"enum": ["region", "graph"]},  # TrackerSettings.backend asked for
                "frames": {"type": "integer"},  # asked for
                "warmup": {"type": "integer"},
                "drop_stale": {"type": "boolean"},
                "slot_size": {"type": "integer"},
                "sinks": {"type": "array", "items": {"type": "string"}},
                "load": {"type": "integer", "minimum": 0},  # busy processes (one CPU each) run beside it
            },
        },
        "result": {
            "type": "object",
            "required": ["frames", "span_s", "fps", "capture_fps", "stages", "end_to_end_ms", "audio_delay_ms",
                         "dropped", "failed", "profiler_overhead_us", "cpu", "renderer_modes"],
            "properties": {
                "frames": {"type": "integer", "minimum": 0},  # measured frames that reached the sinks
                "span_s": _NUM,
                "fps": {"type": ["number", "null"]},
                "capture_fps": {"type": ["number", "null"]},
                "stages": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "duration_ms", "wait_ms"],
                        "properties": {"name": {"type": "string"}, "duration_ms": _STATS, "wait_ms": _STATS},
                    },
                },
                "end_to_end_ms": _STATS,
                "audio_delay_ms": {"type": ["integer", "null"]},
                "dropped": _COUNTS,
                "failed": _COUNTS,
                "profiler_overhead_us": _STATS,
                "cpu": cpu.json_schema(_STATS),  # null only when nothing was measured
                # frames drawn in each of the renderer's modes, warm-up included (neural: full, every other
                # frame, mesh only); null for a renderer with one mode
                "renderer_modes": {"type": ["object", "null"], "additionalProperties": {"type": "integer", "minimum": 0}},
            },
        },
    },
}


def to_json(result: BenchResult) -> dict:
    """The result as the versioned document described by REPORT_SCHEMA."""
    s, r = result.settings, result.report
    return {
        "format": FORMAT,
        "version": VERSION,
        "ok": result.ok,
        "failure": result.failure,
        "created": result.created,
        "app_version": __version__,
        "machine": result.machine,
        "run": {
            "driver": str(s.driver),
            "driver_size": list(result.driver_info["size"]),
            "driver_fps": float(result.driver_info["fps"]),
            "avatar": result.avatar,
            "backend": result.backend,
            "runtime": result.runtime,
            "provider": result.provider,
            "size": s.size,
            "output_size": list(result.output_size),
            "mode": s.mode,
            "paced_fps": s.paced_fps,
            "framing": s.framing,
            "tracker": s.tracker,
            "frames": s.frames,
            "warmup": s.warmup,
            **result.runner,
            "load": s.load,
        },
        "result": {
            "frames": r.frames,
            "span_s": r.span_s,
            "fps": r.fps,
            "capture_fps": r.capture_fps,
            "stages": [{"name": n, "duration_ms": r.duration_ms[n], "wait_ms": r.wait_ms[n]} for n in r.stages],
            "end_to_end_ms": r.end_to_end_ms,
            "audio_delay_ms": r.audio_delay_ms,
            "dropped": r.dropped,
            "failed": r.failed,
            "profiler_overhead_us": r.overhead_us,
            "cpu": cpu.to_json(r.cpu),
            "renderer_modes": result.renderer_modes,
        },
    }


def schema_errors(doc, schema: dict = REPORT_SCHEMA, where: str = "$") -> list[str]:
    """Where ``doc`` breaks ``schema`` (the subset of JSON Schema that REPORT_SCHEMA uses); [] if nowhere.

    jsonschema validates the same document where it is installed; this keeps the check dependency-free.
    """
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
             "integer": int, "number": (int, float)}

    def is_kind(value, kind):
        if kind in ("integer", "number") and isinstance(value, bool):
            return False
        return isinstance(value, kinds[kind])

    errors = []
    if "const" in schema and doc != schema["const"]:
        return [f"{where}: expected {schema['const']!r}, got {doc!r}"]
    if "enum" in schema and doc not in schema["enum"]:
        return [f"{where}: expected one of {schema['enum']}, got {doc!r}"]
    if "type" in schema:
        allowed = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(is_kind(doc, k) for k in allowed):
            return [f"{where}: expected {' or '.join(allowed)}, got {type(doc).__name__}"]
    if isinstance(doc, dict):
        errors += [f"{where}: missing '{k}'" for k in schema.get("required", []) if k not in doc]
        for key, value in doc.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                errors += schema_errors(value, sub, f"{where}.{key}")
    if isinstance(doc, list):
        if len(doc) < schema.get("minItems", 0) or len(doc) > schema.get("maxItems", len(doc)):
            errors.append(f"{where}: {len(doc)} items is outside the allowed count")
        for i, value in enumerate(doc):
            errors += schema_errors(value, schema.get("items", {}), f"{where}[{i}]")
    if is_kind(doc, "number") and "minimum" in schema and doc < schema["minimum"]:
        errors.append(f"{where}: {doc} is below {schema['minimum']}")
    return errors


def write_json(result: BenchResult, path: Path) -> None:
    import json

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(to_json(result), indent=2) + "\n")


# -- one row per frame ------------------------------------------------------------------------------------
def csv_columns(report: LatencyReport) -> list[str]:
    cols = ["index", "status", "t_capture_s"]
    for stage in report.stages:
        cols += [f"{stage}_wait_ms", f"{stage}_ms"]
    return cols + ["end_to_end_ms"] + cpu.csv_columns(report.cpu)


def write_csv(result: BenchResult, path: Path) -> None:
    """Every measured frame, in arrival order: delivered ("ok"), "dropped:<queue>" or "failed:<stage>"; a
    stage the frame never reached is empty. t_capture_s counts from the first measured frame's capture."""
    report = result.report
    t0 = min((t.t_capture for t in report.timings), default=0.0)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(csv_columns(report))
        for t in report.timings:
            waits, durations = t.waits(), t.durations()
            row = [t.index, t.status, f"{t.t_capture - t0:.6f}"]
            for stage in report.stages:
                row += [_cell(waits.get(stage)), _cell(durations.get(stage))]
            out.writerow(row + [_cell(t.end_to_end)] + cpu.csv_cells(report.cpu, t))


def _cell(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.3f}"


# -- the picture ------------------------------------------------------------------------------------------
def write_plot(result: BenchResult, path: Path) -> None:
    """Per-stage distributions (box: quartiles, whiskers: p1-p99) and capture->sink latency over time,
    split into queue waits and each stage's work, so the stack adds up to the latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    report = result.report
    delivered = [t for t in report.timings if t.status == "ok"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 8), gridspec_kw={"height_ratios": [1, 1]})
    names = list(report.stages)
    data = [[d * 1000 for t in report.timings if (d := t.durations().get(n)) is not None] for n in names]
    names.append("capture->sink")
    data.append([t.end_to_end * 1000 for t in delivered])
    keep = [(n, d) for n, d in zip(names, data) if d]
    if keep:
        sideways = ({"orientation": "horizontal"} if matplotlib.__version_info__ >= (3, 10)
                    else {"vert": False})  # 'vert' is deprecated from 3.10 on, 'orientation' is new there
        top.boxplot([d for _, d in keep], whis=(1, 99), showfliers=True, flierprops={"markersize": 2}, **sideways)
        top.set_yticks(range(1, len(keep) + 1), [n for n, _ in keep])
        top.set_xscale("log")
        top.invert_yaxis()
    top.set_xlabel("milliseconds (log scale)")
    s = result.settings
    pace = f"paced at {s.paced_fps:g} fps" if s.paced_fps else "unpaced"
    top.set_title(f"{result.backend} at {s.size} px, {pace}: {report.frames} frames, "
                  f"{report.fps or 0:.1f} fps out")

    if delivered:
        t0 = min(t.t_capture for t in report.timings)
        x = np.array([t.t_capture - t0 for t in delivered])
        # Queue waits (all of them) at the bottom, then each stage's work: the stack adds up to the latency.
        shares = [[sum(t.waits().values()) * 1000 for t in delivered]]
        shares += [[t.durations().get(n, 0.0) * 1000 for t in delivered] for n in report.stages]
        colors = ["0.75"] + [f"C{i}" for i in range(len(report.stages))]
        bottom.stackplot(x, shares, labels=["queue waits"] + list(report.stages), colors=colors, alpha=0.85)
        bottom.plot(x, [t.end_to_end * 1000 for t in delivered], color="black", lw=0.8, label="capture->sink")
        lost = [t.t_capture - t0 for t in report.timings if t.status != "ok"]
        if lost:
            bottom.plot(lost, [0] * len(lost), "|", color="red", ms=12, label="dropped / failed")
        bottom.legend(loc="upper right", fontsize=7, ncol=2)
    bottom.set_xlabel("capture time (s)")
    bottom.set_ylabel("latency (ms)")
    bottom.set_title("latency over time")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


# -- the table --------------------------------------------------------------------------------------------
def format_table(result: BenchResult) -> str:
    s, r, m = result.settings, result.report, result.machine
    w, h = result.output_size
    d = result.driver_info
    th = m["threads"]
    pace = (f"paced at {s.paced_fps:g} fps (a camera's rate)" if s.paced_fps
            else "unpaced (as fast as it goes; the file waits for the tracker)")
    env = "".join(f", {k}={v}" for k, v in th["env"].items())
    lines = [
        f"backend {result.backend} ({result.runtime + ', ' if result.runtime else ''}provider {result.provider}), size {s.size} -> {w}x{h}, avatar {result.avatar}, tracker {s.tracker}",
        f"driver {Path(d['path']).name} ({d['size'][0]}x{d['size'][1]}, {d['fps']:g} fps), {pace}",
        f"machine: {m['cpu_count']} CPUs{_load(m)}; threads: {th['pipeline']} pipeline, OpenCV {th['opencv']}, "
        f"numba {th['numba']}{env}",
        f"load: {_load_text(s.load)}",
        f"{r.frames} frames measured after {s.warmup} warm-up, over {r.span_s:.1f} s",
        "",
        f"{'stage':<16}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}   {'wait p50':>8}{'wait p95':>9}   (ms)",
    ]

    def row(name, stats, wait=None):
        if stats is None:
            return f"{name:<16}{'-':>8}"
        text = f"{name:<16}" + "".join(f"{stats[k]:8.1f}" for k in ("p50", "p95", "p99", "max"))
        if wait is not None:
            text += f"   {wait['p50']:8.1f}{wait['p95']:9.1f}"
        return text

    for n in r.stages:
        lines.append(row(n, r.duration_ms[n], r.wait_ms[n]))
    lines.append(row("capture->sink", r.end_to_end_ms))
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(r.dropped.items())) or "none"
    failed = ", ".join(f"{k} {v}" for k, v in sorted(r.failed.items())) or "none"
    fps = "-" if r.fps is None else f"{r.fps:.1f}"
    cap = "-" if r.capture_fps is None else f"{r.capture_fps:.1f}"
    lines += ["", f"output {fps} fps (frames in: {cap} fps); dropped: {dropped}; failed: {failed}"]
    if result.renderer_modes:
        lines.append("renderer modes: " + ", ".join(f"{mode} {n}" for mode, n in result.renderer_modes.items())
                     + " frames")
    if r.overhead_us is not None:
        o = r.overhead_us
        lines.append(f"profiler overhead: {o['mean']:.1f} us per frame (p99 {o['p99']:.1f} us)")
    lines += ["", *cpu.table_lines(r.cpu), ""]
    if r.end_to_end_ms is not None:
        e = r.end_to_end_ms
        note = "" if s.paced_fps else " (unpaced: frames wait on purpose; measure the delay paced)"
        lines.append(f"A/V delay: capture->sink median {e['p50']:.0f} ms, p95 {e['p95']:.0f} ms"
                     f" - set your audio delay to {r.audio_delay_ms} ms{note}")
    return "\n".join(lines)


def _load_text(processes: int) -> str:
    if processes == 0:
        return "none added (other programs may still share the CPUs: see the load average)"
    return f"{processes} busy process{'es' if processes > 1 else ''} beside the pipeline, one CPU each (--load)"


def _load(machine: dict) -> str:
    load = machine.get("load_average_1min")
    return "" if load is None else f" (load average {load:.1f} at the end)"


def require_matplotlib() -> None:
    """--plot needs matplotlib, which the app itself does not; say so before any work, in one line."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise AvatarAppError(f"--plot needs matplotlib, which is not installed - run: {sys.executable} -m pip "
                             "install matplotlib (or leave --plot out)")
