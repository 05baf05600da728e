"""A camera recording's sound is the microphone's, late by the pipeline's latency: a click heard when a marker was
in front of the camera is heard in the file with the frame that shows the marker. No sound card here: a fake
stream calls back with a known signal, as PortAudio would, on a clock the test moves."""

from __future__ import annotations

import time
from types import SimpleNamespace

import av
import numpy as np
import pytest

from avatar_app.pipeline.frame import Frame, now
from avatar_app.pipeline.microphone import (
    MicrophoneError,
    MicrophoneRecorder,
    MicrophoneSettings,
    parse_microphone,
    sounddevice,
)
from avatar_app.pipeline.recording import Recording

FPS = 25
RATE = 48000
SIZE = (64, 48)


class Clock:
    """now() for the recording and the microphone: moved by the test, so that no sleep is late on a busy CI."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class FakeStream:
    """An InputStream that hears a 2 ms burst at each of ``clicks`` (times on ``clock``): ``pump(until)`` calls
    back with every block heard by then, each a few ms late at random, stamped on a PortAudio clock of another
    origin (or not at all, ``stamped=False``, as some host APIs do)."""

    def __init__(self, settings, callback, clock, clicks, stamped=True, seed=0):
        self.settings, self.callback, self.clock, self.clicks, self.stamped = settings, callback, clock, clicks, stamped
        self._rng = np.random.default_rng(seed)
        self._n = 0
        self.running = False

    def start(self):
        self.t0 = self.clock()
        self.running = True

    def pump(self, until):
        rate, block = self.settings.rate, self.settings.block
        back = self.clock.t
        while self.running and self.t0 + (self._n + block) / rate <= until:
            heard = self.t0 + (self._n + np.arange(block)) / rate
            data = np.zeros((block, self.settings.channels), np.float32)
            for c in self.clicks:
                data[(heard >= c) & (heard < c + 0.002)] = 0.9
            self.clock.t = heard[-1] + 1 / rate + self._rng.uniform(0, 0.006)  # when the callback runs
            adc = (heard[0] + 1000.0) if self.stamped else 0.0
            self.callback(data, block, SimpleNamespace(currentTime=self.clock.t + 1000.0, inputBufferAdcTime=adc),
                          None)
            self._n += block
        self.clock.t = back

    def stop(self):
        self.running = False

    def close(self):
        pass


@pytest.fixture
def clock(monkeypatch):
    import avatar_app.pipeline.microphone as microphone
    import avatar_app.pipeline.recording as recording

    c = Clock()
    monkeypatch.setattr(microphone, "now", c)
    monkeypatch.setattr(recording, "now", c)
    return c


def _record_live(path, clock, clicks_after, latency, seconds=2.0, stamped=True, stall=None, jitter=0.008):
    """Frames at FPS (up to ``jitter`` late), each captured ``latency`` before it reaches the recording; the
    first frame captured after a click shows a white marker. Returns the recording, closed."""
    clicks: list[float] = []
    streams = []

    def open_stream(settings, callback):
        streams.append(FakeStream(settings, callback, clock, clicks, stamped))
        return streams[0]

    rec = Recording(path, FPS, SIZE, microphone=MicrophoneRecorder(path, MicrophoneSettings(rate=RATE), open_stream))
    clock.t += 0.01
    rec.open()
    start = clock()
    clicks.extend(start + latency + t for t in clicks_after)  # heard while recording
    black, white = np.zeros((SIZE[1], SIZE[0], 3), np.uint8), np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)
    rng = np.random.default_rng(1)
    k = shown = 0
    while k / FPS < seconds:
        if stall is not None and stall[0] <= k / FPS < stall[0] + stall[1]:
            k += 1
            continue  # no frames for a while (a source switch)
        # late, never early: a frame earlier than the first one's phase shares a slot and is not written
        t = start + k / FPS + (rng.uniform(0, jitter) if k else 0.0)
        streams[0].pump(t)
        clock.t = t
        captured = t - latency
        marked = any(c <= captured for c in clicks[shown:])  # the first frame captured after a click
        shown += marked
        frame = Frame(image=black, index=k, t_capture=captured)
        frame.output = white if marked else black
        rec.process(frame)
        k += 1
    rec.close()
    return rec


def _marker_times(path):
    """When the marker first shows (a late frame is written twice: the repeat is not a new marker)."""
    out, before = [], False
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            white = f.to_ndarray(format="gray").mean() > 128
            if white and not before:
                out.append(float(f.time))
            before = white
    return out


def _click_times(path):
    """Onsets of the bursts in the file's audio track, from the decoded frames' own timestamps."""
    onsets, last = [], -1.0
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1
        for f in c.decode(audio=0):
            samples = np.abs(f.to_ndarray()).max(axis=0)
            for i in np.flatnonzero(samples > 0.3):
                t = float(f.time) + i / f.sample_rate
                if t - last > 0.1:
                    onsets.append(t)
                last = t
    return onsets


@pytest.mark.parametrize("stamped", [True, False], ids=["adc-stamped", "unstamped"])
def test_a_click_is_heard_within_a_frame_of_the_picture_that_shows_it(tmp_path, clock, stamped):
    path = tmp_path / "rec.mp4"
    latency = 0.150
    rec = _record_live(path, clock, [0.5, 1.0, 1.5], latency, stamped=stamped)
    assert rec.sound_note is None
    # the measured delay is the pipeline's latency (less the part of a frame slot it waited for)
    assert latency - 1.5 / FPS < rec.sound_delay < latency + 0.5 / FPS
    markers, clicks = _marker_times(path), _click_times(path)
    assert len(markers) == 3 and len(clicks) == 3
    for m, c in zip(markers, clicks):
        assert abs(c - m) <= 1 / FPS, (markers, clicks)
    assert not list(tmp_path.glob(".*partial*")), "the microphone's WAV is deleted"


def test_after_a_stall_the_sound_stays_with_its_pictures(tmp_path, clock):
    path = tmp_path / "rec.mp4"
    rec = _record_live(path, clock, [0.4, 2.5], 0.1, seconds=3.0, stall=(0.8, 1.4))
    markers, clicks = _marker_times(path), _click_times(path)
    assert len(markers) == 2 and len(clicks) == 2, (markers, clicks)
    for m, c in zip(markers, clicks):
        assert abs(c - m) <= 1 / FPS, (markers, clicks)
    assert rec.seconds < 2.0  # the stall was skipped, not filled


def test_a_microphone_that_does_not_open_leaves_a_silent_video_and_a_note(tmp_path):
    def missing(settings, callback):
        raise MicrophoneError(f"{settings.described}: not found - choose one of: none found, or 'off'")

    path = tmp_path / "rec.mp4"
    rec = Recording(path, FPS, SIZE, microphone=MicrophoneRecorder(path, MicrophoneSettings("USB"), missing))
    rec.open()
    for _ in range(5):
        rec.write(np.zeros((SIZE[1], SIZE[0], 3), np.uint8), captured=now())
        time.sleep(1 / FPS)
    rec.close()
    assert rec.sound_note == "recording without sound: microphone 'USB': not found - choose one of: none found, or 'off'"
    with av.open(str(path)) as c:
        assert len(c.streams.video) == 1 and not c.streams.audio
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]


def test_microphone_choice_reads_off_default_and_a_device():
    assert parse_microphone("off") is None and parse_microphone("OFF") is None
    assert parse_microphone(None).device is None and parse_microphone("").device is None
    assert parse_microphone("3").device == "3"


def test_without_portaudio_the_error_says_what_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(MicrophoneError, match="PortAudio library not found - pip install sounddevice"):
        sounddevice()
