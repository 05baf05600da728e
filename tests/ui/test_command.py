"""`avatar-app` alone and `avatar-app gui ...` open the window; what cannot work ends in one line, exit code 2."""

from __future__ import annotations

import builtins
from pathlib import Path

from avatar_app.commands.cli import main


def _fake_app(monkeypatch):
    import avatar_app.ui.app as app

    calls = []
    monkeypatch.setattr(app, "run_app", lambda options: calls.append(options) or 0)
    monkeypatch.setattr(app, "display_problem", lambda: None)
    return calls


def test_no_arguments_open_the_window(monkeypatch):
    calls = _fake_app(monkeypatch)
    assert main([]) == 0
    assert len(calls) == 1 and calls[0].source is None and not calls[0].virtual_camera


def test_gui_options_reach_the_window(monkeypatch, generated_driver):
    calls = _fake_app(monkeypatch)
    portrait = Path(__file__).resolve().parents[2] / "assets" / "portraits" / "mona_lisa.jpg"
    assert main(["gui", "--source", str(generated_driver), "--portrait", str(portrait), "--virtual-camera",
                 "--size", "256"]) == 0
    options = calls[0]
    assert (options.source, options.avatar, options.virtual_camera, options.size) == (
        str(generated_driver), portrait, True, 256)
    assert main(["gui", "--source", "0"]) == 0 and calls[1].source == "0"


def test_a_missing_video_is_one_line_and_exit_code_2(monkeypatch, capsys, tmp_path):
    calls = _fake_app(monkeypatch)
    assert main(["gui", "--source", str(tmp_path / "nope.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.mp4" in err and not calls


def test_without_pyside6_the_error_says_what_to_install(monkeypatch, capsys):
    real_import = builtins.__import__

    def no_qt(name, *args, **kwargs):
        if name.split(".")[0] == "PySide6":
            raise ImportError("No module named 'PySide6'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_qt)
    assert main(["gui"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e .[gui]" in err
