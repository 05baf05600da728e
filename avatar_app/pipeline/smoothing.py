"""Jitter removal for tracked landmarks: a One-Euro filter that smooths a whole array per call.

The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a low-pass whose cutoff rises with speed: a
still face is smoothed hard, a moving one is followed with little lag.
"""

from __future__ import annotations

import math

import numpy as np

# Used when a timestamp does not advance before any interval has been seen: one frame at 30 fps.
_FALLBACK_DT = 1.0 / 30.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Blend weight of a first-order low-pass with ``cutoff`` Hz sampled every ``dt`` seconds."""
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


class OneEuroFilter:
    """A One-Euro filter over numpy arrays of any shape, every value filtered at once.

    The PyPI ``OneEuroFilter`` package filters one scalar per object; a face mesh has 478 x 3 values per
    frame, and 1,434 Python objects cost milliseconds per frame, so here each step is a handful of numpy
    operations over the whole array (tens of microseconds).

    ``point_axis`` says which axis holds one point's coordinates (for landmarks shaped (N, 3), -1). The
    speed that opens the cutoff is then the norm of each point's velocity, so x, y and z of a point share one
    cutoff: a lip moving down opens its own filter fully instead of each coordinate guessing separately, and
    a still point's coordinates are not released by noise in just one of them. ``None`` filters every value
    on its own, as in the paper.

    The defaults are tuned for face landmarks in pixels of a ~640 x 480 image at ~30 fps: jitter on a still
    face (about a pixel) is cut to a fraction, while a mouth opening at a few hundred px/s is followed within
    about one frame. ``min_cutoff`` (Hz) sets the smoothing at rest, ``beta`` (Hz per unit/s) how fast the
    filter opens with speed; ``d_cutoff`` (Hz) smooths the speed estimate itself.
    """

    def __init__(
        self,
        min_cutoff: float = 0.5,
        beta: float = 0.08,
        d_cutoff: float = 1.0,
        point_axis: int | None = None,
    ) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise ValueError(
                f"OneEuroFilter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0, "
                f"got min_cutoff={min_cutoff}, d_cutoff={d_cutoff}, beta={beta}"
            )
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.point_axis = point_axis
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next call returns its input unchanged (e.g. after the face was lost)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None
        self._dt = _FALLBACK_DT

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample ``x`` taken at ``t`` seconds; returns a new array of the same shape.

        A timestamp that does not advance (two frames stamped alike, a clock stepping back) reuses the last
        good interval rather than dividing by zero or freezing the output.
        """
        x = np.asarray(x)
        out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        x = x.astype(np.float64, copy=False)
        t = float(t)

        if self._x is None:
            self._x = x.copy()
            self._dx = np.zeros_like(x)
            self._t = t
            return x.astype(out_dtype, copy=True)
        if x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter got shape {x.shape} after {self._x.shape}; call reset() first")

        dt = t - self._t
        if dt > 0:
            self._dt = dt
        else:
            dt = self._dt
        self._t = t

        dx = (x - self._x) / dt
        self._dx += _alpha(self.d_cutoff, dt) * (dx - self._dx)
        if self.point_axis is None:
            speed = np.abs(self._dx)
        else:
            speed = np.linalg.norm(self._dx, axis=self.point_axis, keepdims=True)
        cutoff = self.min_cutoff + self.beta * speed
        self._x += _alpha(cutoff, dt) * (x - self._x)
        return self._x.astype(out_dtype, copy=True)
