"""The unit that travels down the pipeline: one captured image and the times it passed each stage."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


def now() -> float:
    """The clock every stage stamps with (monotonic seconds)."""
    return time.perf_counter()


@dataclass
class Frame:
    """A captured image (H x W x 3, uint8, BGR as OpenCV gives it) with its capture time.

    ``stamps`` maps a stage name ("tracker", "retarget", "renderer", "sink:<name>") to the monotonic time
    the frame left that stage, so latency per stage is a difference of stamps.
    """

    image: np.ndarray
    index: int
    t_capture: float
    # Position in the source's own timeline (seconds), e.g. a video's presentation time; None for cameras.
    t_media: float | None = None
    stamps: dict[str, float] = field(default_factory=dict)
    # False for the frames the runner sends while its source is down: ``image`` is then the last picture seen
    # (or black), kept for previews; the tracker treats the frame as "no face".
    has_picture: bool = True

    def stamp(self, stage: str) -> None:
        self.stamps[stage] = now()
