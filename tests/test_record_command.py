"""`avatar-app record`: a microphone named and not there is one line and exit code 2, before anything is opened."""

from __future__ import annotations

import pytest

from avatar_app.commands.cli import main
from avatar_app.pipeline import microphone


def test_a_missing_microphone_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    opened = []
    monkeypatch.setattr("avatar_app.pipeline.sources.open_source", lambda *a, **k: opened.append(a))
    code = main(["record", "--source", "demo", "--portrait", "x.jpg", "--out", str(tmp_path / "r.mp4"),
                 "--microphone", "No Such Mic"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "Traceback" not in err
    assert "microphone 'No Such Mic'" in err or "sounddevice" in err  # not found, or no sound input at all
    assert not opened and not list(tmp_path.iterdir())


def test_a_named_microphone_that_is_not_found_lists_the_ones_there(monkeypatch):
    class FakeSd:
        @staticmethod
        def query_devices(device=None, kind=None):
            if device is None and kind is None:
                return [{"name": "Built-in Mic", "max_input_channels": 2}]
            raise ValueError(f"No input device matching {device!r}")

    monkeypatch.setattr(microphone, "sounddevice", lambda: FakeSd)
    with pytest.raises(microphone.MicrophoneError) as err:
        microphone.find_input_device(microphone.MicrophoneSettings("USB"))
    assert str(err.value).startswith("microphone 'USB': not found")
    assert "'Built-in Mic'" in str(err.value) and "'off'" in str(err.value)


def test_record_refuses_a_video_file_and_points_to_render(tmp_path, capsys):
    code = main(["record", "--source", "talk.mp4", "--portrait", "x.jpg", "--out", str(tmp_path / "r.mp4")])
    assert code == 2 and "avatar-app render --driver" in capsys.readouterr().err
