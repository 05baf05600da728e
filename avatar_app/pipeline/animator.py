"""One avatar's animation: the retarget stage (driver landmarks → the portrait's target landmarks, easing through
lost faces) and the renderer stage (target → image), prepared together for one avatar and one renderer.

Each half is used by one thread only (retarget on the tracker thread, render on the renderer thread); the only
state both sides touch is the calibration request, which is an Event.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from avatar_app.pipeline.avatar import Avatar, keep_identity
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.backends import create_renderer
from avatar_app.pipeline.render.base import Renderer, RenderSettings
from avatar_app.pipeline.retarget import FaceLossEasing, Retargeter, RetargetSettings

_generations = itertools.count(1)


class Animator:
    """``generation`` tells animations apart: every new Animator (a new avatar, size or renderer) gets the next."""

    def __init__(
        self,
        avatar: Avatar,
        render: RenderSettings = RenderSettings(),
        retarget: RetargetSettings = RetargetSettings(),
        renderer: Renderer | None = None,
    ):
        self.avatar = avatar
        self.generation = next(_generations)
        self.renderer = renderer or create_renderer(render)
        self.renderer.prepare(avatar, render)
        if getattr(self.renderer, "identity_made", False):  # first use with this model: keep ê and ψ
            keep_identity(avatar)
        self.retargeter = Retargeter(avatar.landmarks, retarget)
        self.easing = FaceLossEasing(avatar.landmarks)
        self._calibrate_next = threading.Event()  # set from any thread (the window's C key)
        self._closed = False

    @property
    def output_size(self) -> tuple[int, int]:
        return self.renderer.output_size

    def calibrate(self, driver: np.ndarray | None = None) -> None:
        """Make this driver pose (or, without one, the next frame with a face) the reference pose."""
        if driver is None:
            self._calibrate_next.set()
        else:
            self.retargeter.calibrate(driver)

    # -- the retarget stage (one thread) ------------------------------------------------------------------
    def target(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        """The portrait's landmarks for this driver frame (None: no face) at time t (seconds)."""
        if driver is not None and (self._calibrate_next.is_set() or not self.retargeter.has_reference):
            self._calibrate_next.clear()
            self.retargeter.calibrate(driver)
        return self.easing(None if driver is None else self.retargeter(driver), t)

    def retarget(self, frame: Frame, t: float) -> None:
        """Fill the frame's ``target`` and name this animation as the one that made it."""
        frame.target = self.target(frame.driver, t)
        frame.animator = self

    # -- the renderer stage (one thread) ------------------------------------------------------------------
    def render(self, target: np.ndarray) -> np.ndarray:
        return self.renderer.render(target)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.renderer.close()
