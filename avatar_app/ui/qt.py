"""Whether Qt is there at all: asked before anything of the window is imported (this module imports no Qt itself
until asked)."""

from __future__ import annotations


def qt_missing() -> bool:
    """True when PySide6 cannot be imported (the [gui] extra is not installed)."""
    try:
        import PySide6  # noqa: F401
    except ImportError:
        return True
    return False
