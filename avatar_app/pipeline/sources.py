"""Where frames come from: a camera, a video file, a folder of images or the demo face, all read the same way.

Every source yields ``Frame``s stamped with the time they were obtained, so the pipeline can measure
latency from capture; file sources and the demo can stand in for a camera (looping, paced in real time).
"""

from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from avatar_app.pipeline import frame as frames
from avatar_app.pipeline import demo
from avatar_app.errors import DeviceError, InputFileError, describe_av_error
from avatar_app.pipeline.frame import Frame
from avatar_app.images import MAX_IMAGE_PIXELS, load_image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_GIVE_VIDEO = "give an MP4, MOV, MKV or AVI file"
DEMO_SPEC = "demo"  # the spec of the demo source (pipeline/demo.py): a face that moves by itself, no camera


@dataclass(frozen=True)
class SourceSettings:
    """What to read and how.

    ``spec`` is a camera index ("0"), a video file, a folder of images, a glob ("frames/*.png") or "demo" (the
    app's own moving face, for a first run without a camera; pipeline/demo.py).
    ``loop`` restarts a file source at its end (the desktop app runs on a looping video where there is no
    camera); ``paced`` releases file frames at the file's rate in real time, as a camera would, instead of
    as fast as they decode. ``width``/``height``/``fps`` are requests to a camera; ``fps`` also sets the
    rate of an image sequence (25 when not given).
    """

    spec: str
    loop: bool = False
    paced: bool = False
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", str(self.spec))  # accept an int index or a Path too
        for name in ("width", "height", "fps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"SourceSettings.{name} must be positive, got {value}")


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe_video`` learns from a file's headers (frame count by counting packets if need be)."""

    fps: float
    frame_count: int
    width: int
    height: int
    duration: float  # seconds
    has_audio: bool


class FrameSource:
    """Shared life cycle: ``open()``, ``read()`` until it returns None, ``close()``; or use ``with``.

    Subclasses provide ``_open``, ``_grab`` (the next image and its media time, or None at the end),
    ``_rewind`` and ``_close``; numbering, looping, pacing and stamping live here once.
    """

    is_live = False

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        self.is_open = False
        self._index = 0
        self._fps = 0.0
        self._size = (0, 0)
        # Pacing: wall clock at media time 0, the media time at the start of this pass, and the first and
        # last media times seen in this pass (a loop continues the timeline instead of jumping back).
        self._clock0: float | None = None
        self._pass_start = 0.0
        self._first_t: float | None = None
        self._last_t = 0.0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self._size

    @property
    def frame_count(self) -> int | None:
        """Frames in one pass of the file; None for a live source."""
        return None

    def open(self) -> None:
        """Open the source; a missing or unusable input raises a one-line AvatarAppError here."""
        if not self.is_open:
            if self._index:  # opened again after a failure: pacing restarts from the next frame
                self._clock0 = self._first_t = None
                self._pass_start = 0.0
            self._open()
            self.is_open = True

    def read(self) -> Frame | None:
        """The next frame, or None when the source has ended."""
        if not self.is_open:
            raise RuntimeError(f"{type(self).__name__}.read() before open()")
        got = self._grab()
        if got is None and self.settings.loop and not self.is_live and self._index > 0:
            self._start_new_pass()
            self._rewind()
            got = self._grab()
        if got is None:
            return None
        image, t_media = got
        if self.settings.paced and not self.is_live:
            self._wait_until_due(t_media)
        frame = Frame(image=image, index=self._index, t_capture=frames.now(), t_media=t_media)
        self._index += 1
        return frame

    def close(self) -> None:
        if self.is_open:
            self.is_open = False
            self._close()

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def _wait_until_due(self, t_media: float) -> None:
        # Anchored to the first frame, not to the previous one, so a slow reader is not made slower: a late
        # frame is released at once and the schedule catches up, as a camera's clock would.
        if self._first_t is None:
            self._first_t = t_media
        self._last_t = t_media
        due = self._pass_start + t_media - self._first_t
        if self._clock0 is None:
            self._clock0 = frames.now() - due
        wait = self._clock0 + due - frames.now()
        if wait > 0:
            time.sleep(wait)

    def _start_new_pass(self) -> None:
        if self._first_t is not None:
            self._pass_start += self._last_t - self._first_t + 1.0 / self._fps
        self._first_t = None

    def _open(self) -> None:
        raise NotImplementedError

    def _grab(self) -> tuple[np.ndarray, float | None] | None:
        raise NotImplementedError

    def _rewind(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """OpenCV's own log off for a moment: it prints past Python, to the terminal, for every camera that does not
    open, and the caller says so itself in one line."""
    previous = cv2.setLogLevel(0)  # 0: silent
    try:
        yield
    finally:
        cv2.setLogLevel(previous)


class CameraSource(FrameSource):
    """A webcam through OpenCV; ``width``/``height``/``fps`` are requests the driver may round."""

    is_live = True
    _READ_RETRIES = 5  # a few failed reads happen while a camera settles; more means it is gone

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.index = int(settings.spec)
        self._capture: cv2.VideoCapture | None = None

    def _open(self) -> None:
        with quiet_opencv():
            capture = cv2.VideoCapture(self.index)
        if not capture.isOpened():
            capture.release()
            raise DeviceError(
                f"camera {self.index} could not be opened - check it is connected and not used by another"
                " program, or pass a video file instead"
            )
        s = self.settings
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, s.width), (cv2.CAP_PROP_FRAME_HEIGHT, s.height),
                            (cv2.CAP_PROP_FPS, s.fps)):
            if value:
                capture.set(prop, value)
        ok, image = capture.read()  # some drivers open fine and then deliver nothing
        if not ok or image is None:
            capture.release()
            raise DeviceError(
                f"camera {self.index} opened but sent no picture - close other programs using it, or pass a"
                " video file instead"
            )
        self._capture = capture
        self._size = (image.shape[1], image.shape[0])
        self._fps = capture.get(cv2.CAP_PROP_FPS) or s.fps or 30.0

    def _grab(self) -> tuple[np.ndarray, None]:
        for _ in range(self._READ_RETRIES):
            ok, image = self._capture.read()
            if ok and image is not None:
                return image, None
        raise DeviceError(f"camera {self.index} stopped sending pictures - check it is still connected")

    def _rewind(self) -> None:
        pass

    def _close(self) -> None:
        self._capture.release()
        self._capture = None


def _open_container(path: Path) -> av.container.InputContainer:
    """Open a video file for reading, or raise a one-line InputFileError naming it."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file - check the path")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not a video - {_GIVE_VIDEO}")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty - {_GIVE_VIDEO}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        reason = describe_av_error(err)
        raise InputFileError(f"{path}: not a readable video ({reason}) - {_GIVE_VIDEO}") from None
    except UnicodeDecodeError:  # PyAV decodes the file's metadata tags as UTF-8 while opening
        raise InputFileError(f"{path}: not a readable video (its metadata is not valid text) - {_GIVE_VIDEO}") from None
    if not container.streams.video:
        # FFmpeg opens many non-videos (a text file can pass as subtitles), so this is the real test.
        has_audio = bool(container.streams.audio)
        what = "has only audio, no video stream" if has_audio else "not a video (no video stream)"
        container.close()
        raise InputFileError(f"{path}: {what} - {_GIVE_VIDEO}")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise InputFileError(f"{path}: its video codec cannot be decoded here - {_GIVE_VIDEO} in H.264")
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > MAX_IMAGE_PIXELS:  # a damaged or hostile header: decoding would exhaust memory
        container.close()
        raise InputFileError(f"{path}: {_too_large(width, height)}")
    return container


def _too_large(width: int, height: int) -> str:
    return (f"video frames are {width}x{height} pixels, over the {MAX_IMAGE_PIXELS // 1_000_000} MP limit"
            " - scale the video down first")


def _stream_fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 25.0


def _count_frames(path: Path, stream: av.video.stream.VideoStream) -> int:
    """The frame count from the header, or by reading packets (no decoding) when the header has none."""
    if stream.frames > 0:
        return stream.frames
    with av.open(str(path)) as container:
        return sum(1 for p in container.demux(container.streams.video[0]) if p.size > 0)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Describe a video file without decoding it."""
    path = Path(path)
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        fps = _stream_fps(stream)
        count = _count_frames(path, stream)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = count / fps
        width, height = stream.codec_context.width, stream.codec_context.height
        return VideoInfo(fps, count, width, height, duration, bool(container.streams.audio))
    except av.FFmpegError as err:  # counting packets reads the whole file: damage can show up there
        raise InputFileError(f"{path}: not a readable video ({describe_av_error(err)}) - {_GIVE_VIDEO}") from None
    finally:
        container.close()


class VideoFileSource(FrameSource):
    """A video file decoded with PyAV; ``t_media`` is each frame's presentation time in seconds.

    Rotation metadata (phone videos filmed upright) is applied, so frames look as a player shows them.
    """

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.path = Path(settings.spec)
        self._container: av.container.InputContainer | None = None
        self._decoded = None
        self._pending: tuple[np.ndarray, float] | None = None
        self._frame_count: int | None = None

    @property
    def frame_count(self) -> int | None:
        if self._frame_count is None and self._container is not None:
            self._frame_count = _count_frames(self.path, self._container.streams.video[0])
        return self._frame_count

    def _open(self) -> None:
        self._container = _open_container(self.path)
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._fps = _stream_fps(stream)
        self._decoded = self._container.decode(stream)
        try:
            first = self._grab()  # decode one frame now, so an empty or undecodable file fails at open
        except InputFileError:
            self._container.close()
            raise
        if first is None:
            self._container.close()
            raise InputFileError(f"{self.path}: the video has no frames - {_GIVE_VIDEO} with frames in it")
        self._pending = first
        self._size = (first[0].shape[1], first[0].shape[0])

    def _grab(self) -> tuple[np.ndarray, float] | None:
        if self._pending is not None:
            got, self._pending = self._pending, None
            return got
        try:
            frame = next(self._decoded, None)
        except av.FFmpegError as err:
            raise InputFileError(
                f"{self.path}: cannot decode frame {self._index} ({describe_av_error(err)}) - the file may be"
                " damaged; re-encode it"
            ) from None
        if frame is None:
            return None
        if frame.width * frame.height > MAX_IMAGE_PIXELS:  # the stream changed size mid-way, to an absurd one
            raise InputFileError(f"{self.path}: frame {self._index}: {_too_large(frame.width, frame.height)}")
        try:
            image = frame.to_ndarray(format="bgr24")
        except (av.FFmpegError, ValueError) as err:  # a damaged frame with no usable picture format
            raise InputFileError(
                f"{self.path}: cannot decode frame {self._index} ({describe_av_error(err)}) - the file may be"
                " damaged; re-encode it"
            ) from None
        turns = round(frame.rotation / 90) % 4  # counter-clockwise quarter turns, as np.rot90 counts them
        if turns:
            image = np.ascontiguousarray(np.rot90(image, turns))
        t_media = frame.time if frame.time is not None else self._index / self._fps
        return image, t_media

    def _rewind(self) -> None:
        self._container.seek(0)  # also flushes the decoder, so no frame of the old pass leaks in
        self._decoded = self._container.decode(self._container.streams.video[0])

    def _close(self) -> None:
        self._container.close()
        self._container = None
        self._decoded = None


def _natural_key(path: Path) -> list:
    """Sort 'frame_2' before 'frame_10', as a person numbering files would expect."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


class ImageSequenceSource(FrameSource):
    """Image files from a folder or a glob, in natural order, at ``settings.fps`` (25 by default)."""

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        self.files: list[Path] = []
        self._next = 0
        self._pending: tuple[np.ndarray, float] | None = None

    @property
    def frame_count(self) -> int | None:
        return len(self.files)

    def _open(self) -> None:
        spec = self.settings.spec
        folder = Path(spec)
        candidates = folder.iterdir() if folder.is_dir() else map(Path, glob.glob(spec))
        self.files = sorted(
            (f for f in candidates if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()), key=_natural_key
        )
        if not self.files:
            kinds = ", ".join(IMAGE_SUFFIXES)
            if folder.is_dir():
                raise InputFileError(f"{spec}: folder has no images ({kinds}) - give a folder of frames")
            raise InputFileError(f"{spec}: no image files match ({kinds}) - check the folder and pattern")
        self._fps = float(self.settings.fps or 25.0)
        first = load_image(self.files[0])
        self._size = (first.shape[1], first.shape[0])
        self._pending, self._next = (first, 0.0), 1

    def _grab(self) -> tuple[np.ndarray, float] | None:
        if self._pending is not None:
            got, self._pending = self._pending, None
            return got
        if self._next >= len(self.files):
            return None
        path = self.files[self._next]
        image = load_image(path)
        if (image.shape[1], image.shape[0]) != self._size:
            w, h = self._size
            got = f"{image.shape[1]}x{image.shape[0]}"
            raise InputFileError(f"{path}: is {got} but the sequence is {w}x{h} - give frames of one size")
        t_media = self._next / self._fps
        self._next += 1
        return image, t_media

    def _rewind(self) -> None:
        self._next = 0

    def _close(self) -> None:
        self._pending = None


class DemoSource(FrameSource):
    """The demo face (pipeline/demo.py: a shipped painting moved by a script): frames at ``settings.fps`` (25 when not given); one pass is one ``DemoScript`` period.

    Like a video file it has media times, so ``paced`` releases frames in real time as a camera would and
    ``loop`` goes on for ever; its frames' longer side is ``max(width, height)`` of the settings, else 480.
    Until the runner says the avatar is calibrated (``set_calibrated``) she holds still, facing forward with her
    mouth closed and eyes open, as a person asked to is; then the script plays from its start.
    """

    def __init__(self, settings: SourceSettings, script: demo.DemoScript = demo.DemoScript()) -> None:
        super().__init__(settings)
        self.script = script
        self._renderer = None
        self._neutral: np.ndarray | None = None
        self._next = 0
        self._calibrated = True  # nobody waits for a pose (render's recording): the script plays at once
        self._script_from: float | None = 0.0  # the media time the script (re)started at; None: holding still

    def set_calibrated(self, calibrated: bool) -> None:
        """Whether the avatar has taken her pose yet (the runner says so, from its tracker thread). A first run's
        calibration waits for a still, silent face: speaking from the first frame made it take 10-25 s."""
        self._calibrated = calibrated

    @property
    def frame_count(self) -> int:
        return max(1, round(self.script.period * (self.settings.fps or demo.DEMO_FPS)))

    def _open(self) -> None:
        from avatar_app.pipeline.render.base import RenderSettings
        from avatar_app.pipeline.render.mesh import MeshRenderer

        avatar = demo.demo_avatar()
        s = self.settings
        renderer = MeshRenderer()
        renderer.prepare(avatar, RenderSettings(size=max(s.width or 0, s.height or 0) or demo.DEMO_SIZE))
        self._renderer, self._neutral = renderer, avatar.landmarks
        self._fps = float(s.fps or demo.DEMO_FPS)
        self._size = renderer.output_size
        self._next = 0

    def _grab(self) -> tuple[np.ndarray, float] | None:
        if self._next >= self.frame_count:
            return None
        t = self._next / self._fps
        self._next += 1
        if not self._calibrated:
            self._script_from = None
            pose = demo.DemoPose()  # at rest: facing forward, mouth closed, eyes open
        else:
            if self._script_from is None:
                self._script_from = t
            pose = self.script.pose(t - self._script_from)  # one pass is one period: a loop stays seamless
        return self._renderer.render(demo.demo_landmarks(self._neutral, pose)), t

    def _rewind(self) -> None:
        self._next = 0

    def _close(self) -> None:
        self._renderer.close()
        self._renderer = None



def open_source(source: SourceSettings | str | int | os.PathLike) -> FrameSource:
    """Pick the source for a spec and open it: digits -> camera, "demo" -> the demo face, folder or glob -> images,
    else a video."""
    settings = source if isinstance(source, SourceSettings) else SourceSettings(spec=str(source))
    spec, path = settings.spec, Path(settings.spec)
    if spec.isdigit():
        cls = CameraSource
    elif spec == DEMO_SPEC and not path.exists():  # a video file named "demo" is still that file
        cls = DemoSource
    elif path.is_dir() or (not path.exists() and any(c in spec for c in "*?[")):
        cls = ImageSequenceSource  # an existing file named 'take [1].mp4' is still a video, not a glob
    else:
        cls = VideoFileSource
    src = cls(settings)
    src.open()
    return src
