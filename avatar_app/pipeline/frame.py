"""The one message that travels down the pipeline: a captured image, what each stage made of it, and when.

A source creates the frame; the tracker fills ``driver``, retarget fills ``target`` and names the animation
(avatar and generation) it used, the renderer fills ``output``; every stage stamps the time the frame entered
and left it. Sinks, the window and the profiler read the same object, so nothing is looked up on the side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.avatar import Avatar
    from avatar_app.pipeline.render.base import Drawing

ENTER = "enter:"  # prefix of the stamp a stage writes when a frame enters it; the bare name is its exit
CAPTURE = "capture"  # the capture thread's CPU stamps (around its read of the source) come under this name


def now() -> float:
    """The clock every stage stamps with (monotonic seconds)."""
    return time.perf_counter()


def thread_cpu() -> float:
    """The calling thread's CPU clock (seconds): what a stage's own thread spends, waiting and sleeping not."""
    return time.thread_time()


@dataclass
class Frame:
    """A captured image (H x W x 3, uint8, BGR as OpenCV gives it) and what the stages made of it.

    ``stamps`` maps a stage name ("tracker", "retarget", "renderer", "sink:<name>") to the monotonic time the
    frame left that stage (and "enter:<stage>" to when it entered, when entries are timed), so latency per
    stage is a difference of stamps. When timed, ``cpu`` holds the stage thread's CPU clock (``thread_cpu()``)
    under the same keys, and "capture" for the capture thread's read, so CPU per stage is a difference too.
    """

    image: np.ndarray
    index: int
    t_capture: float
    # Position in the source's own timeline (seconds), e.g. a video's presentation time; None for cameras.
    t_media: float | None = None
    stamps: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict, repr=False)
    # False for the frames the runner sends while its source is down: ``image`` is then the last picture seen
    # (or black), kept for previews; the tracker treats the frame as "no face".
    has_picture: bool = True
    # tracker: the driver's landmarks (478 x 3, image pixels), None when no face was found
    driver: np.ndarray | None = None
    # retarget: the portrait's landmarks to draw, and the animation (avatar + generation) that made them
    target: np.ndarray | None = None
    animator: Animator | None = field(default=None, repr=False)
    # retarget, while a guided calibration runs: seconds the driver must still hold still (None: calibrated)
    calibration_left: float | None = None
    # renderer: the avatar image at the working size (H x W x 3 uint8 BGR), made when no call stage runs
    output: np.ndarray | None = field(default=None, repr=False)
    # renderer, when a call stage runs: the map and overlays the call's picture is drawn from (render/base.py)
    drawing: Drawing | None = field(default=None, repr=False)
    # the call stage (avatar_app/call/): the picture the call gets (the virtual camera's size), which
    # recordings and the window show too
    call_image: np.ndarray | None = field(default=None, repr=False)

    @property
    def picture(self) -> np.ndarray | None:
        """What the call gets: the call stage's picture when one made it, else the avatar image."""
        return self.call_image if self.call_image is not None else self.output

    @property
    def time(self) -> float:
        """The frame's time for smoothing and easing: media time for files, capture time for cameras."""
        return self.t_media if self.t_media is not None else self.t_capture

    @property
    def face_found(self) -> bool:
        return self.driver is not None

    @property
    def avatar(self) -> Avatar | None:
        return None if self.animator is None else self.animator.avatar

    @property
    def avatar_size(self) -> tuple[int, int] | None:
        """(w, h) of the portrait whose pixels ``target`` is in."""
        avatar = self.avatar
        return None if avatar is None else avatar.size

    @property
    def generation(self) -> int | None:
        """Which animation made the target: bumped each time the avatar, its size or its renderer changes."""
        return None if self.animator is None else self.animator.generation

    def stamp(self, stage: str) -> None:
        self.stamps[stage] = now()

    def enter(self, stage: str) -> None:
        self.stamps[ENTER + stage] = now()

    def cpu_stamp(self, key: str) -> None:
        """The calling thread's CPU clock under ``key`` ("enter:<stage>" or "<stage>")."""
        self.cpu[key] = thread_cpu()


class FrameObserver(Protocol):
    """Who wants to know how frames fared (the profiler): every finished, dropped and failed frame."""

    def record(self, frame: Frame) -> None: ...

    def dropped(self, queue: str, frame: Frame | None = None) -> None: ...

    def failed(self, stage: str, frame: Frame | None = None) -> None: ...
