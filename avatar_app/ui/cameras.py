"""Which cameras open on this machine, for the source picker (slow on some systems: run it off the GUI thread)."""

from __future__ import annotations

import platform
from pathlib import Path

import cv2

from avatar_app.pipeline.virtual_camera import CARD_LABEL

MAX_INDEX = 6


def find_cameras(max_index: int = MAX_INDEX) -> list[str]:
    """Indices (as strings) of the cameras that open and send a picture, our own virtual camera excluded."""
    found = []
    for index in _candidates(max_index):
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened() and capture.read()[0]:
                found.append(str(index))
        finally:
            capture.release()
    return found


def _candidates(max_index: int) -> list[int]:
    if platform.system() != "Linux":
        return list(range(max_index))
    # On Linux only existing device nodes are tried (OpenCV warns on stderr for every missing one), and the
    # v4l2loopback device this app feeds is left out: driving the avatar with itself would be a loop.
    out = []
    for index in range(max_index):
        if not Path(f"/dev/video{index}").exists():
            continue
        name_file = Path(f"/sys/class/video4linux/video{index}/name")
        try:
            name = name_file.read_text().strip()
        except OSError:
            name = ""
        if name != CARD_LABEL:
            out.append(index)
    return out
