"""Atomic file writes: a file appears complete under its final name or not at all.

A crash, a full disk or Ctrl+C in the middle of a write must never leave a half-written image, avatar or
video where the user (or the next run) would take it for a good one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avatar_app.errors import OutputPathError


def temp_path_beside(path: str | os.PathLike) -> Path:
    """A fresh hidden name in the same folder as ``path``, ending in the same suffix.

    Same folder, so the final ``os.replace`` is a rename on one file system (atomic), not a copy;
    same suffix, so writers that pick the format from the name (OpenCV, FFmpeg) pick the right one.
    The file is not created: the writer creates it, with the user's normal permissions.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputPathError(f"{path}: folder '{path.parent}' does not exist - create it first")
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it to ``path`` on success, delete it on any exception."""
    tmp = temp_path_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
