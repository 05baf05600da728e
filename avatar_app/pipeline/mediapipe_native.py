"""MediaPipe's native graphs as seen from Python: their start-up log lines silenced, their landmark lists read
as arrays. Shared by the tracker's FaceMesh graph (tracker.py) and its region tracker (face_region.py)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator

import numpy as np

try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except (OSError, TypeError):  # Windows: no process-wide libc handle, only the fd redirect applies
    _LIBC = None


def _flush_stderr() -> None:
    """Flush Python's and C's stderr buffers; absl's lines sit in C's buffer until something flushes it."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError):
        pass
    if _LIBC is not None:
        _LIBC.fflush(None)


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
    """Send the process's stderr (fd 2) to /dev/null while MediaPipe's native graph starts.

    Starting a graph and its first frames print TFLite and absl lines to fd 2, out of reach of Python's
    logging; they would land between the CLI's one-line errors. C's stderr buffer is flushed on the way
    out, while fd 2 still points at /dev/null, or the buffered lines surface later. Only start-up is wrapped
    because anything another thread writes to stderr meanwhile is lost too.
    """
    _flush_stderr()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        _flush_stderr()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# One NormalizedLandmark serialised: field 1 (the repeated message, 15 bytes long), then x, y, z as
# fixed32 fields 1, 2, 3. Reading the bytes with numpy is ~10x faster than 478 protobuf attribute reads.
_LANDMARK_WIRE = np.dtype(
    [
        ("tag", "u1"), ("size", "u1"),
        ("tx", "u1"), ("x", "<f4"),
        ("ty", "u1"), ("y", "<f4"),
        ("tz", "u1"), ("z", "<f4"),
    ]
)


def landmark_array(landmark_list) -> np.ndarray:
    """A NormalizedLandmarkList as a float32 (N, 3) array of normalised x, y, z."""
    data = landmark_list.SerializeToString()
    if len(data) % _LANDMARK_WIRE.itemsize == 0:
        wire = np.frombuffer(data, dtype=_LANDMARK_WIRE)
        if (
            (wire["tag"] == 0x0A).all()
            and (wire["size"] == 15).all()
            and (wire["tx"] == 0x0D).all()
            and (wire["ty"] == 0x15).all()
            and (wire["tz"] == 0x1D).all()
        ):
            return np.stack([wire["x"], wire["y"], wire["z"]], axis=1)
    # Any other layout (visibility or presence set, a protobuf change): read field by field.
    return np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], dtype=np.float32)
