"""The CPU budget in `bench`'s report: how much of the machine the app takes, and which part of it takes it.

The app shares the CPUs with the call program, so a bench report says what the process used over the measured
frames (per cent of the machine, of one core, CPU milliseconds per delivered frame) and splits it into the
capture thread, each stage's own thread and the rest (``profiler.CpuReport``). Here: its part of the JSON
document, of the printed table and of the per-frame CSV.
"""

from __future__ import annotations

from avatar_app.measure.profiler import CpuReport, FrameTiming

OTHER = "other"


def json_schema(statistic: dict) -> dict:
    """The ``result.cpu`` member of the report's schema (``statistic``: the schema of a p50/.../count)."""
    number = {"type": "number"}
    part = {
        "type": "object",
        "required": ["name", "cpu_s", "ms_per_frame", "percent_of_machine", "per_frame_ms"],
        "properties": {"name": {"type": "string"}, "cpu_s": number, "ms_per_frame": {"type": ["number", "null"]},
                       "percent_of_machine": number, "per_frame_ms": statistic},
    }
    return {
        "type": ["object", "null"],
        "required": ["cpu_count", "window_s", "cpu_s", "percent_of_machine", "percent_of_core", "ms_per_frame",
                     "frames", "parts"],
        "properties": {
            "cpu_count": {"type": "integer", "minimum": 1},
            "window_s": {"type": "number", "minimum": 0},
            "cpu_s": {"type": "number", "minimum": 0},
            "percent_of_machine": {"type": "number", "minimum": 0},
            "percent_of_core": {"type": "number", "minimum": 0},
            "ms_per_frame": {"type": ["number", "null"]},
            "frames": {"type": "integer", "minimum": 0},
            "parts": {"type": "array", "items": part},
        },
    }


def to_json(cpu: CpuReport | None) -> dict | None:
    if cpu is None:
        return None
    return {
        "cpu_count": cpu.cpu_count,
        "window_s": cpu.window_s,
        "cpu_s": cpu.cpu_s,
        "percent_of_machine": cpu.percent_of_machine,
        "percent_of_core": cpu.percent_of_core,
        "ms_per_frame": cpu.ms_per_frame,
        "frames": cpu.frames,
        "parts": [{"name": name, "cpu_s": seconds, "ms_per_frame": cpu.ms_per_frame_of(seconds),
                   "percent_of_machine": cpu.percent_of_core_of(seconds) / cpu.cpu_count,
                   "per_frame_ms": cpu.per_frame_ms.get(name)} for name, seconds in cpu.part_s.items()],
    }


def table_lines(cpu: CpuReport | None) -> list[str]:
    """The table's CPU block: the total, then a row per part (they add up to the total)."""
    if cpu is None:
        return ["CPU: - (nothing was measured)"]
    per_frame = cpu.ms_per_frame
    lines = [
        f"CPU: {cpu.percent_of_machine:.1f} % of the machine ({cpu.cpu_count} CPUs) = {cpu.percent_of_core:.1f} % of "
        f"one core; {'-' if per_frame is None else f'{per_frame:.1f}'} ms CPU per delivered frame "
        f"(process, all threads, over {cpu.window_s:.1f} s)",
        f"{'cpu':<16}{'ms/frame':>9}{'% machine':>10}   {'p50':>6}{'mean':>7}   (CPU ms of the part's own thread per frame)",
    ]
    for name, seconds in cpu.part_s.items():
        ms = cpu.ms_per_frame_of(seconds)
        text = f"{name:<16}{'-' if ms is None else f'{ms:.2f}':>9}{cpu.percent_of_core_of(seconds) / cpu.cpu_count:10.1f}"
        stats = cpu.per_frame_ms.get(name)
        if stats is not None:
            text += f"   {stats['p50']:6.2f}{stats['mean']:7.2f}"
        elif name == OTHER:
            text += "   (library worker threads, hand-overs, the rest)"
        lines.append(text)
    return lines


def csv_columns(cpu: CpuReport | None) -> list[str]:
    """Per-frame CPU columns: ``<part>_cpu_ms`` for the capture thread and each stage."""
    return [] if cpu is None else [f"{name}_cpu_ms" for name in cpu.per_frame_ms]


def csv_cells(cpu: CpuReport | None, timing: FrameTiming) -> list[str]:
    if cpu is None:
        return []
    return ["" if (s := timing.cpu.get(name)) is None else f"{s * 1000:.3f}" for name in cpu.per_frame_ms]
