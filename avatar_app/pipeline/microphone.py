"""The microphone: sound from an input device (sounddevice, i.e. PortAudio), each block stamped with the moment it
was heard, kept in a WAV beside a recording and laid under its pictures later by the pipeline's latency, so that
lips and voice stay in step.

The sound goes to disk as it comes (a writer thread; the device's callback only copies), so an hour of
recording costs no memory, and the WAV is only a temp file: the recording muxes it at close and deletes it.
"""

from __future__ import annotations

import queue
import threading
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_app.atomic import temp_path_beside
from avatar_app.errors import DeviceError, first_line
from avatar_app.pipeline.frame import now

INSTALL_HINT = "pip install sounddevice (on Linux also: sudo apt install libportaudio2)"
MICROPHONE_OFF = "off"
# Two placements of a block closer than this are the same stream with a late callback, not lost sound: the
# block is laid right after the one before (no gap, no click); farther apart (an overflow, clock drift), the
# block goes where its stamp says.
_SNAP_S = 0.02
_BASE_WINDOW_S = 1.0  # the stamp of sample 0 is the earliest one seen over this much sound (callbacks come late)


class MicrophoneError(DeviceError):
    """No sound input: PortAudio missing, the chosen device not there, or it would not open."""


@dataclass(frozen=True)
class MicrophoneSettings:
    """``device``: None for the system's default input, an index ("3") or part of a device's name."""

    device: str | None = None
    rate: int = 48000
    channels: int = 1
    block: int = 1024

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.channels not in (1, 2) or self.block <= 0:
            raise ValueError(f"microphone: rate and block must be positive and 1 or 2 channels, got {self}")

    @property
    def described(self) -> str:
        return "the default microphone" if self.device is None else f"microphone '{self.device}'"


def parse_microphone(text: str | None) -> MicrophoneSettings | None:
    """``--microphone``: None or "" for the default input, "off" for none (returns None), else a device."""
    if text is not None and text.strip().lower() == MICROPHONE_OFF:
        return None
    return MicrophoneSettings(device=text.strip() if text and text.strip() else None)


def sounddevice():
    """The sounddevice module; MicrophoneError with what to install when it or PortAudio is missing."""
    try:
        import sounddevice as sd
    except ImportError:
        raise MicrophoneError(f"no sound input: sounddevice is not installed - {INSTALL_HINT}") from None
    except OSError as err:  # the package is there, PortAudio's shared library is not
        raise MicrophoneError(f"no sound input: {first_line(err)} - {INSTALL_HINT}") from None
    return sd


def _device_arg(device: str | None):
    return int(device) if device is not None and device.isdigit() else device


def input_devices() -> list[str]:
    """The names of the devices that can record ([] without sound input)."""
    try:
        sd = sounddevice()
        return [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
    except Exception:  # noqa: BLE001 - no list is the answer, whatever PortAudio says
        return []


def find_input_device(settings: MicrophoneSettings) -> str:
    """The name of the device ``settings`` picks; MicrophoneError naming it, with what to do, when there is none."""
    sd = sounddevice()
    try:
        info = sd.query_devices(_device_arg(settings.device), "input")
    except Exception as err:  # noqa: BLE001 - PortAudioError, ValueError: no such device, or several match
        names = ", ".join(f"'{n}'" for n in input_devices()) or "none found"
        raise MicrophoneError(f"{settings.described}: not found ({first_line(err)}) - choose one of: {names}, "
                              f"or '{MICROPHONE_OFF}' to record without sound") from None
    return info["name"]


def open_input_stream(settings: MicrophoneSettings, callback: Callable) -> object:
    """A sounddevice InputStream calling ``callback(indata, frames, time, status)``; not yet started."""
    sd = sounddevice()
    find_input_device(settings)
    try:
        return sd.InputStream(samplerate=settings.rate, channels=settings.channels, blocksize=settings.block,
                              dtype="float32", device=_device_arg(settings.device), callback=callback)
    except Exception as err:  # noqa: BLE001 - PortAudioError: busy, unsupported rate...
        raise MicrophoneError(f"{settings.described}: cannot open ({first_line(err)}) - close other programs "
                              f"using it, choose another, or '{MICROPHONE_OFF}'") from None


@dataclass(frozen=True)
class _Block:
    offset: int  # first sample's index in the WAV
    frames: int
    heard: float  # when its first sample was heard (now()'s clock)


class MicrophoneRecorder:
    """Records the microphone into a temp WAV beside ``beside`` from ``open()`` to ``stop()``, remembering
    when each block was heard; ``track()`` then gives the sound laid out on a recording's timeline.

    ``open_stream(settings, callback)`` makes the stream (the real device by default; tests hand in a fake that
    calls back with a known signal). ``overflows`` counts blocks the device reported as lost.
    """

    def __init__(self, beside: Path, settings: MicrophoneSettings = MicrophoneSettings(),
                 open_stream: Callable[[MicrophoneSettings, Callable], object] = open_input_stream):
        self.settings = settings
        self.path = temp_path_beside(Path(beside).with_suffix(".wav"))
        self._open_stream = open_stream
        self._stream = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wav: wave.Wave_write | None = None
        self._blocks: list[_Block] = []
        self._samples = 0
        self.overflows = 0
        self.error: str | None = None  # why writing the sound stopped, if it did

    def open(self) -> None:
        """Start listening; MicrophoneError (one line naming the device) when it cannot, with nothing left."""
        wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed by the writer thread
        wav.setnchannels(self.settings.channels)
        wav.setsampwidth(2)
        wav.setframerate(self.settings.rate)
        self._wav = wav
        self._writer = threading.Thread(target=self._write, name="avatar-microphone", daemon=True)
        self._writer.start()
        try:
            self._stream = self._open_stream(self.settings, self._callback)
            self._stream.start()
        except Exception as err:
            self._stream = None
            self.stop()
            self.discard()
            if isinstance(err, MicrophoneError):
                text = str(err)
                if not text.startswith(self.settings.described):  # no sound input at all: still name the device
                    raise MicrophoneError(f"{self.settings.described}: {text}") from None
                raise
            raise MicrophoneError(f"{self.settings.described}: cannot start ({first_line(err)}) - choose "
                                  f"another, or '{MICROPHONE_OFF}'") from None

    def _callback(self, indata, frames, time, status) -> None:  # PortAudio's thread: copy and go
        t = now()
        adc, current = getattr(time, "inputBufferAdcTime", 0.0), getattr(time, "currentTime", 0.0)
        # PortAudio's own clock says how long ago the block's first sample reached the converter; some host
        # APIs leave it at 0, and then the block is taken to have ended just now.
        heard = t - (current - adc) if adc > 0 and current >= adc else t - frames / self.settings.rate
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        self._queue.put((np.array(indata, dtype=np.float32, copy=True), heard))

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            block, heard = item
            if self.error is not None:
                continue
            try:
                pcm = (np.clip(block, -1.0, 1.0) * 32767).astype("<i2")
                self._wav.writeframes(pcm.tobytes())
            except OSError as err:  # a full disk: the video goes on, silent from here
                self.error = first_line(err)
                continue
            self._blocks.append(_Block(self._samples, len(block), heard))
            self._samples += len(block)
        try:
            self._wav.close()
        except OSError as err:
            self.error = self.error or first_line(err)

    def stop(self) -> None:
        """Stop listening and finish the WAV (what was heard stays for ``track()``)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # noqa: BLE001 - a device unplugged meanwhile: what was heard is kept
                pass
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    @property
    def seconds(self) -> float:
        return self._samples / self.settings.rate

    def placements(self, segments: list[tuple[int, float]], delay: float, fps: float) -> list[tuple[int, int, int]]:
        """Where each block goes on the recording's timeline, as (wav offset, frames, sample position).

        ``segments``: (first frame, wall time of frame 0's slot) for each stretch of the recording written
        without a break (a long stall restarts the clock); a sound heard at τ belongs to the picture captured
        at τ, which the recording shows ``delay`` seconds later.
        """
        rate = self.settings.rate
        blocks = self._blocks
        # The stamp of sample 0 per block, smoothed: the earliest over the next second of sound (a late
        # callback stamps its block late, never early; an overflow moves it for good).
        bases = np.array([b.heard - b.offset / rate for b in blocks])
        window = max(1, int(_BASE_WINDOW_S * rate / self.settings.block))
        smooth = [bases[i:i + window].min() for i in range(len(bases))]
        out, end = [], None
        for block, base in zip(blocks, smooth):
            heard = base + block.offset / rate
            position = None
            for k, (first, origin) in reversed(list(enumerate(segments))):
                start = first / fps
                p = heard + delay - origin
                stop = segments[k + 1][0] / fps if k + 1 < len(segments) else None
                if p >= start or k == 0:
                    if stop is not None and p >= stop:
                        position = None  # heard during a stall: its pictures were not recorded either
                    else:
                        position = round(p * rate)
                    break
            if position is None:
                continue
            if end is not None and abs(position - end) <= _SNAP_S * rate:
                position = end
            out.append((block.offset, block.frames, position))
            end = position + block.frames
        return out

    def track(self, segments: list[tuple[int, float]], delay: float, fps: float, seconds: float,
              step: int = 1024) -> Iterator[np.ndarray]:
        """The sound for a recording of ``seconds``, in chunks of ``step`` samples (channels x step, float32):
        silence where nothing was heard, read from the WAV as it goes (never all in memory)."""
        rate, channels = self.settings.rate, self.settings.channels
        total = round(seconds * rate)
        plan = self.placements(segments, delay, fps)
        with wave.open(str(self.path), "rb") as wav:
            def read(offset: int, frames: int) -> np.ndarray:
                wav.setpos(offset)
                raw = np.frombuffer(wav.readframes(frames), "<i2").reshape(-1, channels)
                return (raw.astype(np.float32) / 32767).T

            buffer = np.zeros((channels, step), np.float32)
            filled_to = 0  # samples of the output handed out so far
            i = 0
            while filled_to < total:
                n = min(step, total - filled_to)
                buffer[:] = 0
                lo, hi = filled_to, filled_to + n
                while i < len(plan) and plan[i][2] + plan[i][1] <= lo:
                    i += 1  # wholly before this chunk (or before the start)
                j = i
                while j < len(plan) and plan[j][2] < hi:
                    offset, frames, position = plan[j]
                    a, b = max(lo, position), min(hi, position + frames)
                    if b > a:
                        piece = read(offset + a - position, b - a)
                        buffer[:, a - lo:a - lo + piece.shape[1]] = piece
                    j += 1
                yield buffer[:, :n].copy()
                filled_to = hi

    def discard(self) -> None:
        """Delete the WAV (after it was muxed, or when there is no recording to put it in)."""
        self.path.unlink(missing_ok=True)
