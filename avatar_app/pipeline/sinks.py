"""Where rendered frames go: a video file now; a virtual camera and a preview window join later.

Output paths are checked before any work starts, so a long render never fails at its last step.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, VideoReformatter

from avatar_app.atomic import temp_path_beside
from avatar_app.pipeline.frame import Frame
from avatar_app.errors import AvatarAppError, InputFileError, OutputPathError, describe_av_error

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv")
_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

# Frames are converted with the BT.601 matrix in limited range and the stream says so (FFmpeg's
# AVCOL_SPC_SMPTE170M, AVCOL_RANGE_MPEG): untagged, players guess BT.709 for HD sizes and shift colours.
_COLORSPACE_BT601 = 6
_RANGE_LIMITED = 1


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] = VIDEO_SUFFIXES) -> Path:
    """Refuse, in one line, an output path that could not be written; call before any work starts."""
    path = Path(path)
    kinds = ", ".join(suffixes)
    if path.is_dir():
        example = path / ("output" + suffixes[0])
        raise OutputPathError(f"{path}: is a folder - give a file name such as {example}")
    if path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{path}: cannot write '{path.suffix or 'no suffix'}' files - use {kinds}")
    folder = path.parent
    if not folder.is_dir():
        raise OutputPathError(f"{path}: folder '{folder}' does not exist - create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{path}: folder '{folder}' is not writable - choose another folder")
    return path


class VideoFileSink:
    """Encode BGR frames to H.264 at exactly ``fps``, optionally keeping the audio of ``audio_from``.

    The audio (a driver video's voice) is copied without re-encoding when the container can hold its codec,
    else re-encoded to AAC, and stops where the video stops. The file is written under a temp name and
    renamed at ``close()``, so a crash or ``abort()`` never leaves a broken video behind.

    H.264 in 4:2:0 needs even sizes: an odd width or height is padded by one repeated edge pixel.

    ``fragmented`` (live recordings) writes a fragmented MP4 with a key frame every second: if writing fails
    midway (a full disk) or the app is killed, what was written up to the last whole second still plays, and
    ``close()`` keeps it under the final name (``salvaged_frames``) before reporting the failure.
    """

    name = "video"

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | Fraction,
        size: tuple[int, int],
        audio_from: str | os.PathLike | None = None,
        crf: int = 18,
        preset: str = "veryfast",  # fast enough to record a live pipeline on a CPU
        fragmented: bool = False,
    ) -> None:
        if fps <= 0 or min(size) <= 0:
            raise ValueError(f"fps and size must be positive, got fps={fps} size={size}")
        self.path = Path(path)
        # A float like 29.97002997 (30000/1001 as probed) maps back to its exact fraction.
        self.fps = Fraction(fps).limit_denominator(10_000)
        self.size = (int(size[0]), int(size[1]))
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.crf, self.preset = crf, preset
        self.fragmented = fragmented
        self.salvaged_frames = 0
        self._failed: str | None = None  # why a write failed; the file is then finished as far as it can be
        self._file = None  # the Python file a fragmented recording is written through
        self._frames_written = 0
        self._tmp: Path | None = None
        self._out: av.container.OutputContainer | None = None
        self._video = None
        self._reformatter = VideoReformatter()
        self._audio_in: av.container.InputContainer | None = None
        self._audio_out = None
        self._audio_copy = True
        self._audio_packets = None
        self._audio_next: av.Packet | None = None

    @property
    def frames_written(self) -> int:
        return self._frames_written

    @property
    def has_audio(self) -> bool:
        """True once opened with an audio track to keep."""
        return self._audio_out is not None

    def open(self) -> None:
        if self._out is not None:
            return
        check_output_path(self.path)
        audio_in = self._open_audio_source() if self.audio_from is not None else None
        self._audio_in = audio_in  # from here on abort() closes it
        self._tmp = temp_path_beside(self.path)
        try:
            codec_options = {"crf": str(self.crf), "preset": self.preset}
            if self.fragmented:
                # A moof per key frame and a key frame per second: a cut file plays to its last second. Written
                # through a Python file, so a failed write (a full disk) raises at the frame it hits instead of
                # being noticed by FFmpeg only when the file is closed.
                codec_options["g"] = str(max(1, round(self.fps)))
                self._file = open(self._tmp, "wb")  # noqa: SIM115 - closed in _close_container
                self._out = av.open(self._file, "w", format=_FORMATS[self.path.suffix.lower()],
                                    options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
            else:
                self._out = av.open(str(self._tmp), "w")
            w, h = self.size
            self._video = self._out.add_stream("libx264", rate=self.fps, options=codec_options)
            self._video.width, self._video.height = w + w % 2, h + h % 2
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = 1 / self.fps  # one tick per frame: the output rate is exactly fps
            self._video.codec_context.colorspace = _COLORSPACE_BT601
            self._video.codec_context.color_range = _RANGE_LIMITED
            if audio_in is not None:
                self._add_audio(audio_in)
        except (av.FFmpegError, OSError) as err:
            self.abort()
            reason = describe_av_error(err)
            raise OutputPathError(f"{self.path}: cannot write ({reason}) - choose another file") from None

    def _open_audio_source(self) -> av.container.InputContainer | None:
        """The file whose audio to keep; None when it has no audio track (the output is then silent)."""
        path = self.audio_from
        if not path.is_file():
            raise InputFileError(f"{path}: no such file (given as the audio source) - check the path")
        try:
            container = av.open(str(path))
        except av.FFmpegError as err:
            raise InputFileError(
                f"{path}: cannot read its audio ({describe_av_error(err)}) - give a video or audio file"
            ) from None
        if not container.streams.audio:
            container.close()
            return None
        return container

    def _add_audio(self, audio_in: av.container.InputContainer) -> None:
        source = audio_in.streams.audio[0]
        codec = source.codec_context.name
        # PCM is allowed in .mp4 by FFmpeg but few players play it, so it is re-encoded there.
        self._audio_copy = codec in self._out.supported_codecs and not (
            self.path.suffix.lower() == ".mp4" and codec.startswith("pcm_")
        )
        if self._audio_copy:
            self._audio_out = self._out.add_stream_from_template(source)
        else:
            self._audio_out = self._out.add_stream("aac", rate=source.codec_context.sample_rate)
            # The default layout for the channel count: a WAV often has no channel mask, which AAC refuses.
            self._audio_out.codec_context.layout = av.AudioLayout(f"{source.codec_context.channels}c")
        self._audio_packets = audio_in.demux(source)

    def process(self, frame: Frame) -> None:
        """The sink stage: the frame's avatar image goes out."""
        self.write(frame.picture)

    def write(self, image_bgr: np.ndarray) -> None:
        """Encode one frame; it must be exactly ``size`` (w, h), BGR uint8."""
        if self._out is None:
            raise RuntimeError("VideoFileSink.write() before open()")
        if self._failed is not None:
            raise OutputPathError(f"{self.path}: writing failed earlier ({self._failed}) - check free disk space")
        w, h = self.size
        if image_bgr.shape != (h, w, 3) or image_bgr.dtype != np.uint8:
            raise ValueError(f"expected a {w}x{h} BGR uint8 image, got {image_bgr.dtype} {image_bgr.shape}")
        if w % 2 or h % 2:
            image_bgr = cv2.copyMakeBorder(image_bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")
        frame = self._reformatter.reformat(
            frame, format="yuv420p", dst_colorspace=Colorspace.ITU601, dst_color_range=ColorRange.MPEG
        )
        frame.pts, frame.time_base = self._frames_written, 1 / self.fps
        try:
            self._out.mux(self._video.encode(frame))
            self._frames_written += 1
            # Keep audio interleaved with the video as it grows, rather than all of it at the end.
            self._mux_audio_until(self._frames_written / self.fps)
        except (av.FFmpegError, OSError) as err:
            self._failed = describe_av_error(err)
            raise OutputPathError(f"{self.path}: writing failed ({self._failed}) - check free disk space") from None

    def _mux_audio_until(self, seconds: Fraction) -> None:
        """Mux source audio packets that start before ``seconds`` into the output."""
        if self._audio_out is None:
            return
        while True:
            if self._audio_next is None:
                self._audio_next = next(self._audio_packets, None)
                if self._audio_next is None:
                    return
            packet = self._audio_next
            if packet.pts is not None and packet.pts * packet.time_base >= seconds:
                return
            self._audio_next = None
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if self._audio_copy:
                packet.stream = self._audio_out
                self._out.mux(packet)
            else:
                for decoded in packet.decode():
                    self._out.mux(self._audio_out.encode(decoded))

    def close(self) -> None:
        """Finish the file: flush the encoder, add the rest of the audio, then move it into place."""
        if self._out is None:
            return
        if self._frames_written == 0:
            self.abort()
            raise AvatarAppError(f"{self.path}: no frames were written, so no video was saved")
        try:  # also after a failed write: the frames before it are finished into a playable file if possible
            self._out.mux(self._video.encode(None))
            self._mux_audio_until(self._frames_written / self.fps)
            if self._audio_out is not None and not self._audio_copy:
                self._out.mux(self._audio_out.encode(None))
            self._out.close()
            self._out = None
            if self._file is not None:
                self._file.close()
                self._file = None
            os.replace(self._tmp, self.path)
        except (av.FFmpegError, OSError) as err:
            self._finish_broken(self._failed or describe_av_error(err))
        finally:
            self._close_audio_source()
        self._tmp = None

    def _finish_broken(self, reason: str) -> None:
        """Writing failed: keep what still plays (fragmented files) under the final name, else nothing; raise."""
        self._close_container()
        self._close_audio_source()
        self.salvaged_frames = _playable_frames(self._tmp) if self.fragmented else 0
        if self.salvaged_frames:
            os.replace(self._tmp, self.path)
            self._tmp = None
            seconds = self.salvaged_frames / self.fps
            raise OutputPathError(
                f"{self.path}: recording stopped ({reason}); the first {float(seconds):.1f} s were saved - free"
                " some disk space"
            )
        self.abort()
        raise OutputPathError(f"{self.path}: cannot finish ({reason}) - check free disk space")

    def abort(self) -> None:
        """Stop and delete the partial file; the final path is left as it was."""
        self._close_container()
        self._close_audio_source()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def _close_container(self) -> None:
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError):
                pass  # the file is being thrown away or cut short; a failed trailer does not matter
            self._out = None
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the last buffered bytes did not fit: what is on disk is what the salvage checks
            self._file = None

    def _close_audio_source(self) -> None:
        if self._audio_in is not None:
            self._audio_in.close()
            self._audio_in = None
            self._audio_packets = self._audio_next = None

    def __enter__(self) -> VideoFileSink:
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _playable_frames(path: Path | None) -> int:
    """How many video frames of ``path`` decode (0 when it does not open at all)."""
    if path is None or not path.is_file():
        return 0
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return 0
            for _ in container.decode(video=0):
                count += 1
    except (av.FFmpegError, OSError):
        pass  # a cut-off tail: the frames before it still count
    return count


AUDIO_RATE = 48000


def decode_audio(path: str | os.PathLike, rate: int = AUDIO_RATE) -> np.ndarray | None:
    """The first audio track of a file as float32 (channels x samples) at ``rate``; None when it has none."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        layout = "mono" if stream.codec_context.channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    if not chunks:
        return None
    return np.concatenate(chunks, axis=1).astype(np.float32)


def audio_for_frames(audio: np.ndarray, media_times: list[float | None], fps: float,
                     rate: int = AUDIO_RATE) -> np.ndarray:
    """A sound track for a video whose k-th frame showed the driver at ``media_times[k]`` (None: silence): each
    frame's 1/fps of sound is the driver's from that moment, so lips and voice stay together whatever the
    pipeline's delay, drops, repeats or loops of the driver were."""
    channels, total = audio.shape
    out = np.zeros((channels, round(len(media_times) * rate / fps)), np.float32)
    for k, t in enumerate(media_times):
        start, end = round(k * rate / fps), round((k + 1) * rate / fps)
        if t is None:
            continue
        s = round(t * rate)
        piece = audio[:, max(0, s):max(0, s) + end - start]
        out[:, start:start + piece.shape[1]] = piece
    return out


def add_sound(video: str | os.PathLike, sound: np.ndarray | Iterable[np.ndarray], rate: int = AUDIO_RATE) -> None:
    """Put ``sound`` (channels x samples, float; or such chunks one after another, e.g. read from a microphone's
    WAV, so a long recording's sound is never all in memory) beside the video track of ``video`` as AAC,
    replacing the file atomically (the video is copied, not re-encoded)."""
    video = Path(video)
    tmp = temp_path_beside(video)
    step = 1024
    chunks = (sound[:, i:i + step] for i in range(0, sound.shape[1], step)) if isinstance(sound, np.ndarray) else sound
    chunks = iter(chunks)
    first = next(chunks, None)
    if first is None:
        return  # no sound at all: the video stays as it is
    layout = "mono" if first.shape[0] == 1 else "stereo"
    try:
        with av.open(str(video)) as src, av.open(str(tmp), "w", format=_FORMATS[video.suffix.lower()]) as out:
            v_in = src.streams.video[0]
            v_out = out.add_stream_from_template(v_in)
            a_out = out.add_stream("aac", rate=rate)
            a_out.codec_context.layout = layout
            for packet in src.demux(v_in):
                if packet.dts is None:
                    continue
                packet.stream = v_out
                out.mux(packet)
            # The video's first frame is shown a little after 0 (x264's B-frames: its pts start where its dts
            # allow), and the sound for frame k must start when frame k is shown, so it starts as late.
            shown_at = v_in.start_time * v_in.time_base if v_in.start_time else 0
            samples = round(shown_at * rate)
            for chunk in itertools.chain([first], chunks):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, np.float32), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = rate, samples, Fraction(1, rate)
                samples += chunk.shape[1]
                out.mux(a_out.encode(frame))
            out.mux(a_out.encode(None))
        os.replace(tmp, video)
    except (av.FFmpegError, OSError) as err:
        tmp.unlink(missing_ok=True)
        raise OutputPathError(f"{video}: the sound could not be added ({describe_av_error(err)}) - the video "
                              "is kept without it") from None
