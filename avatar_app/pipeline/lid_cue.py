"""Shut eyes that MediaPipe reads open: the eye's own pixels as a second reading of its lids.

MediaPipe's lid points follow a blink, but not an eye squeezed shut in a laugh, nor the far eye of a turned head:
on the vox clip's laugh (frames 149-155, both eyes shut) it reads one eye at 40-60 % of its usual opening and
the other at 80-90 %. The pixels say otherwise: in an open eye the iris is darker than the skin under the eye;
in a shut one the lid's skin covers it and the two match. So each eye's *contrast* (the skin below the eye minus
the iris disk's darker pixels) is measured against its own recent open level, and where it says "more closed"
than the landmarks do while the landmarks narrow one eye or both, the lids are brought together to match.

The landmarks alone decide while they read both eyes fully open: a glint on glasses or a strand of hair over the
iris lowers the contrast but cannot close an eye the landmarks see open, nor can the everyday variation of an
eye's opening. On the 38 shared clips (benchmarks/lid_cue.py), of the 29 frames where this closes an eye that
MediaPipe left 40 % open or more, every one shows that eye shut or nearly shut (a laugh, a head thrown back with
the lids down, a sad man's closed eyes, a squint).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from avatar_app.face import landmarks as L

HISTORY = 90  # frames (3 s at 30 fps) over which each eye's open level is taken
OPEN_PERCENTILE = 80  # the open level: this percentile of the recent readings (blinks are brief and rare)
MIN_HISTORY = 8  # readings needed before the landmarks' or the pixels' open level is used
# While the landmarks see both eyes open the pixels are read every OPEN_SAMPLING-th frame only (for their open
# level; ~0.5 ms a reading at a camera's size), every frame while an eye narrows.
OPEN_SAMPLING = 3
# The pixels are trusted from the landmarks' own narrowing (1 - share) of NARROWING_FROM (smaller narrowings are a
# face's everyday variation), fully NARROWING later.
NARROWING_FROM = 0.1
NARROWING = 0.25
UPPER_SHARE = 0.75  # of the travel when the lids are brought together, the upper lid's (as in a blink)
_LUMA = np.array([0.114, 0.587, 0.299], np.float32)  # BGR


def _quantile(values, q: float) -> float:
    """The q-th percentile (nearest rank) of a few values: np.percentile costs ~40 us a call, this ~3."""
    ordered = np.sort(np.asarray(values, np.float64), axis=None)
    return float(ordered[int(round(q / 100.0 * (ordered.size - 1)))])


def _disk_quantile(gray: np.ndarray, centre: np.ndarray, radius: float, percentile: float | None) -> float | None:
    """A percentile (None: the median) of the pixels within ``radius`` of ``centre``; None off the image."""
    h, w = gray.shape
    x0, y0 = int(np.floor(centre[0] - radius)), int(np.floor(centre[1] - radius))
    x1, y1 = int(np.ceil(centre[0] + radius)) + 1, int(np.ceil(centre[1] + radius)) + 1
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h or radius < 1.0:
        return None
    dy = (np.arange(y0, y1) - centre[1])[:, None]
    dx = (np.arange(x0, x1) - centre[0])[None, :]
    inside = dx * dx + dy * dy <= radius * radius
    values = gray[y0:y1, x0:x1][inside]
    if values.size < 3:
        return None
    return _quantile(values, 50 if percentile is None else percentile)


def eye_contrast(image_bgr: np.ndarray, points: np.ndarray, eye: int) -> float | None:
    """How much darker the iris disk is than the skin below the eye (grey levels; ~0 or below when shut)."""
    p = points[:, :2]
    centre = p[L.IRIS_CENTER[eye]]
    radius = float(np.linalg.norm(p[L.IRIS_RING[eye]] - centre, axis=1).mean())
    lower = p[L.EYE_LOWER[eye]].mean(0)
    box = np.concatenate([p[L.IRIS_RING[eye]], lower[None] + [0.0, 2.5 * radius]])
    x0, y0 = np.maximum(np.floor(box.min(0) - radius - 1).astype(int), 0)
    x1, y1 = np.ceil(box.max(0) + radius + 2).astype(int)
    roi = image_bgr[y0:y1, x0:x1]
    if roi.size == 0:
        return None
    gray = roi.astype(np.float32) @ _LUMA
    offset = np.array([x0, y0], np.float64)
    iris = _disk_quantile(gray, centre - offset, 0.8 * radius, 30)
    skin = _disk_quantile(gray, lower - offset + [0.0, 1.5 * radius], 0.8 * radius, None)
    if iris is None or skin is None:
        return None
    return skin - iris


def eye_opening(points: np.ndarray, eye: int) -> float:
    """The lids' mean gap over the eye's width (scale-free)."""
    p = points[:, :2]
    gap = np.linalg.norm(p[L.EYE_LOWER[eye][1:-1]] - p[L.EYE_UPPER[eye][1:-1]], axis=1).mean()
    width = np.linalg.norm(p[L.EYE_UPPER[eye][-1]] - p[L.EYE_UPPER[eye][0]]) + 1e-6
    return float(gap / width)


class LidCue:
    """One stream's second reading of the lids: ``__call__(image, points)`` returns the points with each eye's
    lids brought together where its pixels say it is more closed than the landmarks do."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the open levels (a new face, a new source)."""
        self._openings = [deque(maxlen=HISTORY) for _ in (0, 1)]
        self._contrasts = [deque(maxlen=HISTORY // OPEN_SAMPLING) for _ in (0, 1)]
        self._frames = 0
        #: how far this frame's correction closed each eye, as a share of the landmarks' opening (0: not at all)
        self.closed_by_pixels = np.zeros(2)

    def _landmark_shares(self, points: np.ndarray) -> np.ndarray:
        """Each eye's opening as a share of its recent open level (1 while still learning it)."""
        share = np.ones(2)
        for e in (0, 1):
            opening = eye_opening(points, e)
            self._openings[e].append(opening)
            if len(self._openings[e]) >= MIN_HISTORY:
                share[e] = opening / max(_quantile(self._openings[e], OPEN_PERCENTILE), 1e-6)
        return share

    def _pixel_shares(self, image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Each eye's contrast as a share of its recent open level (NaN where unknown)."""
        share = np.full(2, np.nan)
        for e in (0, 1):
            contrast = eye_contrast(image_bgr, points, e)
            if contrast is None:
                continue
            self._contrasts[e].append(contrast)
            if len(self._contrasts[e]) >= MIN_HISTORY:
                # An open level below a few grey levels is no contrast to speak of (a closed-eyed stretch).
                level = max(_quantile(self._contrasts[e], OPEN_PERCENTILE), 4.0)
                share[e] = float(np.clip(contrast / level, 0.0, 1.3))
        return share

    def __call__(self, image_bgr: np.ndarray, points: np.ndarray) -> np.ndarray:
        self.closed_by_pixels = np.zeros(2)
        self._frames += 1
        landmark = self._landmark_shares(points)
        # Trusted as far as the landmarks themselves see an eye narrowing (either: a laugh closes both, and the
        # far eye of a turned head is the one MediaPipe misses).
        trust = float(np.clip((1.0 - NARROWING_FROM - landmark.min()) / NARROWING, 0.0, 1.0))
        if trust <= 0.0:
            if self._frames % OPEN_SAMPLING == 0:  # both eyes open: the pixels only keep their open level fresh
                self._pixel_shares(image_bgr, points)
            return points
        pixel = self._pixel_shares(image_bgr, points)
        out = None
        for e in (0, 1):
            if not np.isfinite(pixel[e]) or pixel[e] >= landmark[e]:
                continue
            wanted = landmark[e] + trust * (pixel[e] - landmark[e])
            factor = max(wanted, 0.0) / max(landmark[e], 1e-6)
            if out is None:
                out = points.copy()
            upper, lower = L.EYE_UPPER[e][1:-1], L.EYE_LOWER[e][1:-1]
            travel = (out[lower, :2] - out[upper, :2]) * (1.0 - factor)
            out[upper, :2] += UPPER_SHARE * travel
            out[lower, :2] -= (1.0 - UPPER_SHARE) * travel
            self.closed_by_pixels[e] = 1.0 - factor
        return points if out is None else out
