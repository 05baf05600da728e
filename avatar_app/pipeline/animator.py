"""One avatar's animation: the retarget stage (driver landmarks → the portrait's target landmarks, easing through
lost faces) and the renderer stage (target → image), prepared together for one avatar and one renderer.

Each half is used by one thread only (retarget on the tracker thread, render on the renderer thread); what other
threads touch is the calibration request (an Event) and the motion settings (one reference, swapped whole).

With ``guided`` calibration (the window), the reference pose is taken only once the driver has looked straight
ahead and held still for a second (calibration.py); until the first one the avatar keeps the portrait's own pose,
and each frame says how long the driver must still hold still.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np

from avatar_app.pipeline.avatar import Avatar, keep_identity
from avatar_app.pipeline.calibration import CalibrationSettings, SteadyHold
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.render.backends import create_renderer
from avatar_app.pipeline.render.base import Renderer, RenderSettings
from avatar_app.pipeline.render.mouth_sources import DriverView
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
        guided: bool = False,
        calibration: CalibrationSettings = CalibrationSettings(),
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
        self.guided = guided
        self._hold = SteadyHold(calibration)
        self.calibration_left: float | None = None
        self._closed = False

    @property
    def output_size(self) -> tuple[int, int]:
        return self.renderer.output_size

    @property
    def motion(self) -> RetargetSettings:
        return self.retargeter.settings

    def set_motion(self, motion: RetargetSettings) -> None:
        """Follow with these strengths and switches from the next frame on (from any thread)."""
        self.retargeter.settings = motion

    @property
    def calibrated(self) -> bool:
        """The driver's reference pose is taken and no new one is asked for."""
        return self.retargeter.has_reference and not self._calibrate_next.is_set()

    def calibrate(self, driver: np.ndarray | None = None) -> None:
        """Make this driver pose (or, without one, the next frame with a face) the reference pose."""
        if driver is None:
            self._calibrate_next.set()
        else:
            self.retargeter.calibrate(driver)

    # -- the retarget stage (one thread) ------------------------------------------------------------------
    def target(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        """The portrait's landmarks for this driver frame (None: no face) at time t (seconds)."""
        wanted = self._calibrate_next.is_set() or not self.retargeter.has_reference
        if self.guided and wanted:
            self._guide(driver, t)
        elif driver is not None and wanted:
            self._calibrate_next.clear()
            self.retargeter.calibrate(driver)
        if driver is None or not self.retargeter.has_reference:  # not calibrated yet: the portrait's own pose
            return self.easing(None, t)
        return self.easing(self.retargeter(driver), t)

    def _guide(self, driver: np.ndarray | None, t: float) -> None:
        if self.calibration_left is None:  # a new request (or the first): count from the full time
            self._hold.reset()
        left = self._hold(driver, t)
        if left <= 0.0 and driver is not None:
            self.retargeter.calibrate(driver)
            self._calibrate_next.clear()
            self.calibration_left = None
        else:
            self.calibration_left = left

    def retarget(self, frame: Frame, t: float) -> None:
        """Fill the frame's ``target`` and name this animation as the one that made it."""
        frame.target = self.target(frame.driver, t)
        frame.animator = self
        frame.calibration_left = self.calibration_left

    # -- the renderer stage (one thread) ------------------------------------------------------------------
    def render(self, target: np.ndarray, driver: DriverView | None = None) -> np.ndarray:
        return self.renderer.render(target, driver)

    def draw(self, target: np.ndarray, driver: DriverView | None = None):
        """The renderer's Drawing of this target (the call's picture draws it at its own size); ``driver``: the
        camera picture and the driver's landmarks (a mouth drawn from the driver's own takes them)."""
        return self.renderer.draw(target, driver)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.renderer.close()
