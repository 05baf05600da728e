"""Which cameras open on this machine, for the source picker (slow on some systems: run it off the GUI thread).

The probe is `avatar-app doctor`'s (pipeline/checks.py), so the source list and the set-up check agree on which
cameras work; it needs no Qt.
"""

from __future__ import annotations

from avatar_app.pipeline.checks import MAX_CAMERA_INDEX as MAX_INDEX
from avatar_app.pipeline.checks import find_cameras

__all__ = ["MAX_INDEX", "find_cameras"]
