"""Slow work (face detection, opening devices) off the GUI thread; its result comes back on the GUI thread."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)


class BackgroundTasks(QObject):
    """Runs each task on its own daemon thread; ``done(result, error)`` is then called on the GUI thread.

    The signal is emitted from the worker thread and delivered through Qt's queued connection, so callbacks
    never run on a worker. ``cancel_all()`` (at shutdown) drops results that arrive later.
    """

    _finished = Signal(object, object, object)  # callback, result, error

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._finished.connect(self._deliver)
        self._cancelled = False

    def run(self, name: str, work: Callable[[], Any], done: Callable[[Any, BaseException | None], None]) -> None:
        def body() -> None:
            try:
                result, error = work(), None
            except Exception as err:  # handed to the GUI, which shows it; never a traceback on a thread
                log.debug("background task %s failed: %s", name, err, exc_info=True)
                result, error = None, err
            if not self._cancelled:
                try:
                    self._finished.emit(done, result, error)
                except RuntimeError:  # the window is gone (destroyed without closing): nobody to tell
                    pass

        threading.Thread(target=body, name=f"avatar-ui-{name}", daemon=True).start()

    def cancel_all(self) -> None:
        self._cancelled = True

    def _deliver(self, done, result, error) -> None:
        if not self._cancelled:
            done(result, error)
