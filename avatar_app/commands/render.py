"""`avatar-app render`: a driving video in, the animated portrait out, one output frame per driver frame.

The driver is decoded once: the tracker stage runs over every frame first (so a driver with no face at all is
refused before anything is written, and the most neutral frame can be the reference pose), then the stage loop's
retarget, renderer and sink stages run over those frame messages, as the live runner's threads do. The driver
"demo" is one pass of the app's own demo face (pipeline/demo.py), recorded into a temporary file first.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from avatar_app.commands.options import (
    add_avatar_choice,
    add_model_options,
    add_motion_options,
    is_demo_driver,
    load_avatar,
)
from avatar_app.errors import InputFileError


@dataclass(frozen=True)
class RenderReport:
    frames: int
    frames_with_face: int
    fps: float
    size: tuple[int, int]
    audio: bool
    reference_frame: int = 0
    reference_chosen: bool = True  # False: --reference-frame said which
    reference_mouth: float = 0.0  # mouth_opening() of the reference frame's driver
    first_mouth: float = 0.0  # ... and of the first frame with a face, for comparison
    renderer: str = "mesh"  # the backend that drew it and, for neural, its model: "neural (model NAME, onnx on cpu)"


def register(sub) -> None:
    r = sub.add_parser("render", help="animate a portrait with a driving video and write an MP4")
    r.add_argument("--driver", type=Path, required=True,
                   help="video of a face (its audio is kept), or 'demo': the app's own moving face (12 s)")
    add_avatar_choice(r)
    r.add_argument("--out", type=Path, required=True, help="output video (.mp4, .mov or .mkv)")
    r.add_argument("--size", type=int, default=512, help="longer side of the output in pixels (default 512)")
    r.add_argument("--backend", default="mesh", help="renderer: mesh (default, needs no weights) or neural (the shipped model, or --model DIR)")
    add_model_options(r)
    r.add_argument("--reference-frame", type=int, default=None, metavar="N",
                   help="driver frame whose pose is the portrait's own (default: the most neutral one: mouth"
                        " closed, eyes open, facing forward, still)")
    r.add_argument("--side-by-side", action="store_true", help="write driver | avatar next to each other")
    r.add_argument("--background", default="keep", metavar="keep|blur|COLOR",
                   help="behind the avatar: keep (the portrait's own, default), blur, or a colour (#00B140, green...)")
    r.add_argument("--framing", default="none", choices=["none", "follow", "fill", "fit"],
                   help="write the picture the virtual camera gets: follow the head (head and shoulders), fill, or"
                        " fit (bars), at --call-size; none (default): the whole portrait, its longer side --size")
    r.add_argument("--call-size", default="1280x720", metavar="WxH",
                   help="the call's picture with --framing (default 1280x720, what the virtual camera sends)")
    add_motion_options(r)
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from avatar_app.call.background import parse_background
    from avatar_app.call.framing import FramingSettings, parse_call_size
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.retarget import RetargetSettings
    from avatar_app.pipeline.sinks import check_output_path

    check_output_path(args.out)  # before any work
    if not args.driver.is_file() and not is_demo_driver(args.driver):
        raise InputFileError(f"{args.driver}: no such driver video - check the path (or use --driver demo)")
    render = RenderSettings(size=args.size, backend=args.backend, model=args.model, runtime=args.runtime,
                            provider=args.provider, trust_code=args.trust_model, mouth=args.mouth,
                            mouth_model=args.mouth_model)
    background = parse_background(args.background)  # a bad colour is refused before any work, like a bad size
    framing = None
    if args.framing != "none":
        framing = FramingSettings(*parse_call_size(args.call_size), mode=args.framing)  # ValueError: exit 2
    motion = RetargetSettings(
        pose_strength=args.pose_strength,
        expression_strength=args.expression_strength,
        follow_gaze=not args.no_gaze,
    )
    avatar = load_avatar(args)
    with _driver_video(args.driver) as driver:
        report = render_video(
            driver, avatar, args.out, render=render, motion=motion,
            reference_frame=args.reference_frame, side_by_side=args.side_by_side, progress=True,
            background=background, framing=framing,
        )
    if report.reference_chosen:
        reference = (f"reference frame {report.reference_frame} (the most neutral; mouth opening"
                     f" {report.reference_mouth:.3f}, the first face's {report.first_mouth:.3f})")
    else:
        reference = f"reference frame {report.reference_frame} (as asked)"
    print(
        f"{args.out}: {report.frames} frames at {report.fps:g} fps, {report.size[0]}x{report.size[1]}"
        f"{', audio kept' if report.audio else ''}; drawn by {report.renderer};"
        f" face found in {report.frames_with_face}/{report.frames} frames;"
        f" {reference}"
    )
    return 0


@contextmanager
def _driver_video(driver: Path) -> Iterator[Path]:
    """The driver as a video file: the file given, or one pass of the demo recorded into a temporary one."""
    if not is_demo_driver(driver):
        yield driver
        return

    with tempfile.TemporaryDirectory(prefix="avatar_app_demo_") as folder:
        yield write_demo_video(Path(folder) / "demo.mp4")


def render_video(
    driver: Path,
    avatar,
    out: Path,
    render=None,
    motion=None,
    reference_frame: int | None = None,
    side_by_side: bool = False,
    progress: bool = False,
    background=None,
    framing=None,
) -> RenderReport:
    """Animate ``avatar`` with ``driver`` into ``out``: the call's picture, as the virtual camera gets it, with
    ``framing`` (FramingSettings); without one, the whole portrait (its longer side render.size), drawn the
    same way (from the portrait's own pixels, over the still background)."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from avatar_app.errors import NoFaceError
    from avatar_app.pipeline.animator import Animator
    from avatar_app.call.background import BackgroundSettings
    from avatar_app.call.framing import FramingSettings
    from avatar_app.call.picture import CallPicture, CallSettings
    from avatar_app.pipeline.reference import choose_reference
    from avatar_app.pipeline.render.mouth import mouth_opening
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.retarget import RetargetSettings
    from avatar_app.pipeline.sinks import VideoFileSink, check_output_path
    from avatar_app.pipeline.sources import probe_video
    from avatar_app.pipeline.stages import StageLoop, track_frames

    render = render or RenderSettings()
    motion = motion or RetargetSettings()
    driver, out = Path(driver), Path(out)
    check_output_path(out)
    info = probe_video(driver)
    if reference_frame is not None and info.frame_count and not 0 <= reference_frame < info.frame_count:
        raise InputFileError(f"{driver}: --reference-frame {reference_frame} is outside the video's {info.frame_count} frames")
    dh = 0
    if side_by_side:  # the driver's picture rides along, small and compressed, for the left half
        thumbs: dict[int, bytes] = {}
        dh = render.size  # the output's height at most; resized again once the avatar's size is known

        def keep(frame) -> None:
            h, w = frame.image.shape[:2]
            small = cv2.resize(frame.image, (max(2, round(w * dh / h)), dh), interpolation=cv2.INTER_AREA)
            thumbs[frame.index] = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    frames = track_frames(driver, progress=progress, keep=keep if side_by_side else None)
    if not frames:
        raise InputFileError(f"{driver}: the video has no frames - give a video of a face")
    found = [f.index for f in frames if f.face_found]
    if not found:
        raise NoFaceError(f"{driver}: no face found in any of its {len(frames)} frames - use a video where your face is clearly visible")
    chosen = reference_frame is None
    if chosen:  # the most neutral frame, not the first: a first frame caught mid-word would invert the mouth
        reference_frame = choose_reference([f.driver for f in frames]).index
    elif not 0 <= reference_frame < len(frames):
        raise InputFileError(f"{driver}: --reference-frame {reference_frame} is outside the video's {len(frames)} frames")
    elif not frames[reference_frame].face_found:
        raise NoFaceError(f"{driver}: no face in frame {reference_frame} - pick another --reference-frame (e.g. {found[0]})")

    animator = Animator(avatar, render, motion)
    animator.calibrate(frames[reference_frame].driver)
    renderer = animator.renderer
    model = getattr(renderer, "model", None)  # the neural renderer's exported model: which one ran, and how
    drawn_by = renderer.name if model is None else (
        f"{renderer.name} (model {model.directory.name}, {model.runtime} on {model.provider})")
    if framing is None:  # the whole portrait at the working size: "fit" at the portrait's own shape
        framing = FramingSettings(*animator.output_size, mode="fit")
    call = CallPicture(CallSettings(framing, background or BackgroundSettings()))
    call.prepare(animator)
    w, h = framing.size
    dw = int(round(info.width * h / info.height / 2)) * 2 if side_by_side else 0
    sink = VideoFileSink(out, fps=info.fps, size=(w + dw, h), audio_from=driver)
    loop = StageLoop(animator, media_time=True, sinks=[sink], call=call)
    with sink:
        for frame in tqdm(frames, desc="rendering", unit="frame", disable=not progress, leave=False):
            loop.retarget(frame)
            loop.render(frame)
            if side_by_side:
                left = cv2.imdecode(np.frombuffer(thumbs.pop(frame.index), np.uint8), cv2.IMREAD_COLOR)
                left = cv2.resize(left, (dw, h), interpolation=cv2.INTER_AREA)
                frame.call_image = np.concatenate([left, frame.call_image], 1)
            loop.deliver(frame)
    loop.close()
    return RenderReport(
        frames=len(frames), frames_with_face=len(found), fps=info.fps, size=(w + dw, h), audio=sink.has_audio,
        reference_frame=reference_frame, reference_chosen=chosen,
        reference_mouth=mouth_opening(frames[reference_frame].driver), first_mouth=mouth_opening(frames[found[0]].driver),
        renderer=drawn_by,
    )


def write_demo_video(path: str | Path, seconds: float | None = None, fps: float = 25.0,
                     size: int = 480) -> Path:
    """Record `seconds` of the demo (one pass when None) into a video file, e.g. to drive `render` with it."""
    from avatar_app.pipeline.sinks import VideoFileSink
    from avatar_app.pipeline.sources import DEMO_SPEC, DemoSource, SourceSettings

    source = DemoSource(SourceSettings(DEMO_SPEC, loop=True, fps=fps, height=size))
    count = source.frame_count if seconds is None else max(1, round(seconds * fps))
    with source, VideoFileSink(path, fps=fps, size=source.size) as sink:
        for _ in range(count):
            sink.write(source.read().image)
    return Path(path)
