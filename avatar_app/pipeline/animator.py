"""From driver landmarks to an image of the avatar: retarget, ease through lost faces, render.

Shared by the offline `render` command and the live runner, so both animate the same way.
"""

from __future__ import annotations

import numpy as np

from avatar_app.pipeline.avatar import Avatar, keep_identity
from avatar_app.pipeline.render.base import Renderer, RenderSettings, create_renderer
from avatar_app.pipeline.retarget import FaceLossEasing, Retargeter, RetargetSettings


class Animator:
    def __init__(
        self,
        avatar: Avatar,
        render: RenderSettings = RenderSettings(),
        retarget: RetargetSettings = RetargetSettings(),
        renderer: Renderer | None = None,
    ):
        self.avatar = avatar
        self.renderer = renderer or create_renderer(render)
        self.renderer.prepare(avatar, render)
        if getattr(self.renderer, "identity_made", False):  # first use with this model: keep ê and ψ
            keep_identity(avatar)
        self.retargeter = Retargeter(avatar.landmarks, retarget)
        self.easing = FaceLossEasing(avatar.landmarks)
        self._calibrate_next = False

    @property
    def output_size(self) -> tuple[int, int]:
        return self.renderer.output_size

    def calibrate(self, driver: np.ndarray | None = None) -> None:
        """Make this driver pose (or, without one, the next frame with a face) the reference pose."""
        if driver is None:
            self._calibrate_next = True
        else:
            self.retargeter.calibrate(driver)

    def target(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        """The portrait's landmarks for this driver frame (None: no face) at time t (seconds)."""
        if driver is not None and (self._calibrate_next or not self.retargeter.has_reference):
            self.retargeter.calibrate(driver)
            self._calibrate_next = False
        return self.easing(None if driver is None else self.retargeter(driver), t)

    def render(self, target: np.ndarray) -> np.ndarray:
        return self.renderer.render(target)

    def close(self) -> None:
        self.renderer.close()
