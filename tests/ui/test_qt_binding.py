"""The Qt binding must keep Python's reference counts: PySide6 6.12.0 on Python < 3.12 drops a reference to None
on every void call and to True on every signal emitted, and a window painting 25 frames a second then aborts
within minutes ("Fatal Python error: none_dealloc"). pyproject keeps such versions out; this says why if one
slips in."""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None and True are immortal from Python 3.12")
def test_calls_and_signals_keep_the_reference_counts_of_none_and_true(qapp):
    import PySide6

    class Emitter(QObject):
        ping = Signal()

    emitter, label = Emitter(), QLabel()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        emitter.ping.emit()
        label.setText("x")
        label.update()
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    assert lost_none < 50 and lost_true < 50, (
        f"PySide6 {PySide6.__version__} loses references to None/True (-{lost_none}/-{lost_true} in 200 calls):"
        " the app would abort after a few minutes - install a version pyproject allows: pip install -e .[gui]")
