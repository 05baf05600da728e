"""How often the neural renderer's generator runs when the machine is busy: every frame while it fits its share
of the frame budget, every other frame (the last correction carried between) when it does not, not at all (the
mesh warp alone) when even that is too slow, and back step by step once it fits again.

Its input is the generator's own wall time per run, so it sees a busy machine (a video-call program taking the
CPUs) as well as a slow one. Smoothed, and with hysteresis: it steps down only when the smoothed time is over
budget after a few runs, and up only when the mode above would fit well under budget for a while, so it does
not flap between modes.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

FULL = "full"
HALF = "every other frame"
MESH_ONLY = "mesh only"
MODES = (FULL, HALF, MESH_ONLY)  # from the best picture to the least work

RUN, CARRY, PROBE, SKIP = "run", "carry", "probe", "skip"  # what to do with the generator this frame


@dataclass(frozen=True)
class PacingSettings:
    """``fps``: the frame rate to hold. ``share``: the part of a frame's period the generator may take (the
    mesh warp, the tracker's hand-over and the sinks need the rest). ``smoothing``: the weight of the newest run
    in the estimate. ``calm``: step up only when the mode above would take under this part of the budget
    (hysteresis). ``settle_runs``: runs in a mode before it may step down again. ``calm_runs``: runs in a row
    that must fit before every other frame goes back to full; ``calm_probes`` likewise for the mesh alone,
    where a run (not shown) checks every ``probe_every`` frames whether the load has gone. ``skip_runs``: the
    first runs are not counted (the runtime's own warm-up)."""

    fps: float = 30.0
    share: float = 0.5
    smoothing: float = 0.25
    calm: float = 0.7
    settle_runs: int = 3
    calm_runs: int = 15
    calm_probes: int = 3
    probe_every: int = 30
    skip_runs: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.fps <= 240:
            raise ValueError(f"the frame rate to hold must be between 1 and 240 fps, got {self.fps:g}")
        if not 0 < self.share <= 1 or not 0 < self.smoothing <= 1 or not 0 < self.calm < 1:
            raise ValueError("share and smoothing must be in (0, 1], calm in (0, 1)")
        if min(self.settle_runs, self.calm_runs, self.calm_probes, self.probe_every) < 1 or self.skip_runs < 0:
            raise ValueError("the run counts must be at least 1 (skip_runs at least 0)")

    @property
    def budget_s(self) -> float:
        """The generator's share of one frame, in seconds."""
        return self.share / self.fps


class GeneratorPace:
    """Ask ``next_frame()`` before each frame what to do with the generator (RUN and show it, CARRY the last
    one, PROBE: run it but show the mesh, SKIP it), and time each run with ``timed()``. ``mode`` is one of MODES;
    ``mode_frames`` counts the frames drawn in each. ``clock``: seconds (tests give a fake one)."""

    def __init__(self, settings: PacingSettings = PacingSettings(), clock: Callable[[], float] = time.perf_counter):
        self.settings = settings
        self.clock = clock
        self.mode = FULL
        self.estimate_s: float | None = None  # smoothed wall time of one generator run
        self.mode_frames = {m: 0 for m in MODES}
        self._frame = 0  # frames since the mode changed
        self._runs = 0  # runs since the mode changed
        self._fits = 0  # runs (or probes) in a row for which the mode above would fit
        self._seen = 0  # runs ever, for skip_runs

    def next_frame(self) -> str:
        mode, self._frame = self.mode, self._frame + 1
        self.mode_frames[mode] += 1
        if mode == FULL:
            return RUN
        if mode == HALF:
            return RUN if self._frame % 2 == 1 else CARRY
        return PROBE if self._frame % self.settings.probe_every == 0 else SKIP

    @contextmanager
    def timed(self) -> Iterator[None]:
        start = self.clock()
        yield
        self.ran(self.clock() - start)

    def ran(self, seconds: float) -> None:
        """One generator run took ``seconds`` of wall time: maybe step down or up."""
        s = self.settings
        self._seen += 1
        if self._seen <= s.skip_runs:
            return
        self._runs += 1
        if self.mode == MESH_ONLY:  # a probe: judged on its own, the estimate is of the load that has gone
            self._fits = self._fits + 1 if seconds / 2 < s.calm * s.budget_s else 0
            if self._fits >= s.calm_probes:
                self.estimate_s = seconds
                self._switch(HALF)
            return
        e = seconds if self.estimate_s is None else self.estimate_s + s.smoothing * (seconds - self.estimate_s)
        self.estimate_s = e
        per_frame = e if self.mode == FULL else e / 2
        if per_frame > s.budget_s and self._runs >= s.settle_runs:
            self._switch(HALF if self.mode == FULL else MESH_ONLY)
            return
        if self.mode == HALF:
            self._fits = self._fits + 1 if e < s.calm * s.budget_s else 0
            if self._fits >= s.calm_runs:
                self._switch(FULL)

    def _switch(self, mode: str) -> None:
        self.mode = mode
        self._frame = self._runs = self._fits = 0
