"""The HUD: frames per second, latency and milliseconds per stage, from the pipeline's profiler, shown over the
avatar while its toggle is on; and, HUD or not, a status message when the renderer lowers its rate under load."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from avatar_app.ui.panels.toolbar import action
from avatar_app.ui.pipeline import LivePipeline
from avatar_app.ui.settings import AppSettings

WARM_UP_MS = 2000

# What the status bar says when the neural renderer changes mode (render/pacing.py), in the user's words.
MODE_MESSAGES = {
    "full": "Neural renderer: the face generator runs on every frame again",
    "every other frame": "Neural renderer: the computer is busy - the face generator runs every other frame to "
                         "keep the frame rate",
    "mesh only": "Neural renderer: the computer is too busy - the mesh alone draws the avatar until it frees up",
}
MODE_MESSAGE_MS = 10000


class Hud(QObject):
    """``action`` toggles it (bound to ``settings.hud``); ``tick()`` refreshes it. ``changed(lines)``: what to
    draw over the avatar now (empty: nothing); ``status(text, ms)``: the renderer changed mode under load (checked
    at every tick, HUD shown or not); ``settings_changed`` as in the other panels.

    ``renderer_label()`` names the renderer in the last line, as the renderer picker shows it.
    """

    changed = Signal(list)
    status = Signal(str, int)
    settings_changed = Signal()

    def __init__(self, settings: AppSettings, pipeline: LivePipeline, renderer_label: Callable[[], str],
                 parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings
        self.pipeline = pipeline
        self.renderer_label = renderer_label
        self.last_lines: list[str] = []  # what the last tick showed
        self._closing = False
        self._mode_seen: tuple[int, str] | None = None  # (id of the renderer, its mode) at the last tick
        self.action = action(self, "HUD", "H", checkable=True, checked=settings.hud,
                             tip="Frames per second and milliseconds per stage over the avatar (H)")
        self.action.toggled.connect(self._toggled)
        pipeline.started.connect(self._started)

    def tick(self) -> None:
        if self._closing:
            return
        self._watch_mode()
        if not self.settings.hud:
            return
        self.last_lines = self.lines()
        self.changed.emit(self.last_lines)

    def lines(self) -> list[str]:
        snap = self.pipeline.hud()
        if snap.frames < 2:
            return ["HUD: waiting for frames\u2026"]
        has_outputs = len(self.pipeline.hub) > 0
        stages = [(name.removeprefix("sink:"), ms) for name, ms in snap.stage_ms.items()
                  if has_outputs or name != "sink:outputs"]  # the outputs stage idles while nothing is plugged in
        lines = [f"{snap.fps:5.1f} fps   latency {snap.latency_ms:.0f} ms (p95 {snap.latency_p95_ms:.0f})",
                 "ms  " + "  ".join(f"{name} {ms:.1f}" for name, ms in stages)]
        waits = [(name.removeprefix("sink:"), ms) for name, ms in snap.wait_ms.items() if ms >= 0.5]
        if waits:
            lines.append("wait " + "  ".join(f"{name} {ms:.1f}" for name, ms in waits))
        if any(snap.dropped.values()):
            lines.append("dropped " + "  ".join(f"{q} {n}" for q, n in snap.dropped.items()))
        size = self.pipeline.output_size
        if size is not None:
            mode = self.renderer_mode()
            rate = "" if mode is None else f"   generator: {mode}"
            lines.append(f"{self.renderer_label()} {size[0]}x{size[1]}{rate}   delay audio by {snap.audio_delay_ms} ms")
        return lines

    def renderer_mode(self) -> str | None:
        """The running renderer's mode under load ("full", "every other frame", "mesh only"), None for one that
        has a single mode (mesh)."""
        return getattr(self.pipeline.renderer, "degraded", None)

    def _watch_mode(self) -> None:
        renderer = self.pipeline.renderer
        mode = getattr(renderer, "degraded", None)
        seen, self._mode_seen = self._mode_seen, (id(renderer), mode)
        # A new renderer starts in full: only a change of the same renderer's mode is news.
        if seen is not None and seen[0] == id(renderer) and seen[1] != mode and mode in MODE_MESSAGES:
            self.status.emit(MODE_MESSAGES[mode], MODE_MESSAGE_MS)

    def shutdown(self) -> None:
        self._closing = True

    def _toggled(self, on: bool) -> None:
        self.settings.hud = on
        self.settings_changed.emit()
        self.changed.emit(self.lines() if on else [])

    def _started(self, _description: str) -> None:
        # The first frames wait for the tracker's and renderer's warm-up; the HUD counts from after it.
        QTimer.singleShot(WARM_UP_MS, self.pipeline.profiler.reset)
