"""Atomic file writes: a file appears complete under its final name or not at all.

A crash, a full disk or Ctrl+C in the middle of a write must never leave a half-written image, avatar or
video where the user (or the next run) would take it for a good one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from avatar_app.errors import OutputPathError

# A temp file this old is left by a write that was killed: no write through atomic_path takes an hour, and a live
# writer's file has a fresh modification time.
STALE_AFTER_S = 3600


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
    remove_stale_partials(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_stale_partials(path: str | os.PathLike) -> None:
    """Delete the temp files that killed writes of ``path`` left beside it, once they are over an hour old.

    Only names temp_path_beside makes for this very path are touched; anything unexpected is left alone.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.stem)}\.[0-9a-f]{{8}}\.partial{re.escape(path.suffix)}")
    cutoff = time.time() - STALE_AFTER_S
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
    except OSError:  # a folder we cannot list, or a file gone meanwhile: cleaning up is best effort
        pass


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths (files or folders) in one step: nobody ever sees either name missing.

    Linux renameat2(RENAME_EXCHANGE) or macOS renamex_np(RENAME_SWAP). False, with nothing moved, where the
    system or the file system cannot; then the caller needs another way.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform.startswith("linux") and hasattr(libc, "renameat2"):
            at_fdcwd, rename_exchange = -100, 2
            result = libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
        elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):
            rename_swap = 2
            result = libc.renamex_np(os.fsencode(a), os.fsencode(b), rename_swap)
        else:
            return False
    except OSError:  # no C library to load (not the usual CPython on a POSIX system)
        return False
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # not on this file system / kernel
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def unused_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or the first of ``stem-2``, ``stem-3``, ... that does not exist yet."""
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path
