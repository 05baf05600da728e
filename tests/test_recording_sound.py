"""A recording's sound is the driver's, frame by frame: each video frame carries the sound of the moment of the
driver it shows, so lips and voice stay together whatever the pipeline's delay, drops or loops."""

from fractions import Fraction

import av
import numpy as np

from avatar_app.pipeline.sinks import AUDIO_RATE, VideoFileSink, add_sound, audio_for_frames, decode_audio

FPS = 25


def _driver_with_sound(path, seconds=2.0, rate=44100):
    """One second of silence, then one second of a 440 Hz tone, beside a grey video."""
    t = np.arange(int(seconds * rate)) / rate
    samples = np.where(t >= 1.0, 0.4 * np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for i in range(int(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="bgr24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for i in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, i:i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


def _loudness(sound, fps=FPS):
    per_frame = AUDIO_RATE // fps
    n = sound.shape[1] // per_frame
    return np.sqrt((sound[:, :n * per_frame].reshape(sound.shape[0], n, per_frame) ** 2).mean(axis=(0, 2)))


def test_each_frame_gets_the_sound_of_the_moment_it_shows(tmp_path):
    driver = decode_audio(_driver_with_sound(tmp_path / "driver.mp4"))
    # A recording that showed the tone second, then (the driver looped) the silent one, then nothing (no time).
    times = [1.2 + k / FPS for k in range(10)] + [0.2 + k / FPS for k in range(10)] + [None] * 5
    sound = audio_for_frames(driver, times, FPS)
    loud = _loudness(sound)
    assert sound.shape[1] == 25 * AUDIO_RATE // FPS
    assert loud[:10].min() > 0.2 and loud[10:].max() < 0.01


def test_a_recording_gets_the_sound_beside_its_pictures(tmp_path):
    driver = decode_audio(_driver_with_sound(tmp_path / "driver.mp4"))
    video = tmp_path / "rec.mp4"
    with VideoFileSink(video, FPS, (64, 48), fragmented=True) as sink:
        for _ in range(20):
            sink.write(np.full((48, 64, 3), 90, np.uint8))
    add_sound(video, audio_for_frames(driver, [1.0 + k / FPS for k in range(20)], FPS))
    with av.open(str(video)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        frames = sum(1 for _ in c.decode(c.streams.video[0]))
    assert frames == 20
    back = decode_audio(video)
    assert abs(back.shape[1] / AUDIO_RATE - 20 / FPS) < 0.05
    assert _loudness(back)[2:-2].min() > 0.2  # the tone is there
