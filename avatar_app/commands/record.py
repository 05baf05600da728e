"""`avatar-app record`: the live pipeline from a camera (or the demo face) into an MP4, for ``--seconds`` or until
Ctrl+C, with the microphone's sound laid under the pictures late by the pipeline's measured latency.

What the window's Record button makes, without the window: the avatar calibrates itself once the face has
looked ahead and held still, the call's picture is recorded at a fixed rate, and the file appears at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from avatar_app.commands.options import add_avatar_choice, add_model_options, add_motion_options, load_avatar


def register(sub) -> None:
    r = sub.add_parser("record", help="record the avatar live from a camera or the demo face (with the microphone)")
    r.add_argument("--source", default="0", metavar="INDEX|demo",
                   help="camera index (default 0) or demo: the app's own moving face")
    add_avatar_choice(r)
    r.add_argument("--out", type=Path, required=True, help="output video (.mp4, .mov or .mkv)")
    r.add_argument("--seconds", type=float, default=None, help="stop after this long (default: at Ctrl+C)")
    r.add_argument("--microphone", default=None, metavar="DEVICE|off",
                   help="sound input: an index or part of a device's name (avatar-app doctor lists the default), "
                        "or off for a silent video (default: the system's default input)")
    r.add_argument("--fps", type=int, default=30, help="the recording's frame rate (default 30)")
    r.add_argument("--call-size", default="1280x720", metavar="WxH", help="the picture's size (default 1280x720)")
    r.add_argument("--framing", default="follow", choices=["follow", "fill", "fit"],
                   help="follow the head (default), fill, or fit (bars)")
    r.add_argument("--size", type=int, default=512, help="the avatar's longer side in pixels (default 512)")
    r.add_argument("--backend", default="mesh", help="renderer: mesh (default) or neural")
    add_model_options(r)
    add_motion_options(r)
    r.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from avatar_app.call.framing import FramingSettings, parse_call_size
    from avatar_app.call.picture import CallPicture, CallSettings
    from avatar_app.errors import InputFileError
    from avatar_app.pipeline.animator import Animator
    from avatar_app.pipeline.calibration import CalibrationSettings
    from avatar_app.pipeline.microphone import MicrophoneRecorder, find_input_device, parse_microphone
    from avatar_app.pipeline.recording import Recording
    from avatar_app.pipeline.render.base import RenderSettings
    from avatar_app.pipeline.retarget import RetargetSettings
    from avatar_app.pipeline.runner import Runner
    from avatar_app.pipeline.sinks import check_output_path
    from avatar_app.pipeline.sources import DEMO_SPEC, SourceSettings, open_source
    from avatar_app.pipeline.stages import StageLoop

    check_output_path(args.out)  # before any work, like a device that is not there
    if not (args.source.isdigit() or args.source == DEMO_SPEC):
        raise InputFileError(f"{args.source}: not a camera index or demo - for a video file use "
                             "avatar-app render --driver VIDEO (its own sound is kept)")
    if args.seconds is not None and args.seconds <= 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    mic = parse_microphone(args.microphone)
    if mic is not None and mic.device is not None:
        find_input_device(mic)  # a device named and not there: exit 2 now, not a silent file later
    framing = FramingSettings(*parse_call_size(args.call_size), mode=args.framing)
    render = RenderSettings(size=args.size, backend=args.backend, model=args.model, runtime=args.runtime,
                            provider=args.provider, trust_code=args.trust_model, mouth=args.mouth,
                            mouth_model=args.mouth_model)
    motion = RetargetSettings(pose_strength=args.pose_strength, expression_strength=args.expression_strength,
                              follow_gaze=not args.no_gaze)
    avatar = load_avatar(args)
    camera = args.source.isdigit()
    source = open_source(SourceSettings(args.source, loop=True, paced=True, fps=args.fps if camera else None))
    call = CallPicture(CallSettings(framing))
    stages = StageLoop(Animator(avatar, render, motion, guided=True, calibration=CalibrationSettings()), call=call)
    call.prepare(stages.animator)
    recording = Recording(args.out, args.fps, framing.size,
                          microphone=None if mic is None else MicrophoneRecorder(args.out, mic))
    recording.open()
    listening = recording.microphone is not None
    if recording.sound_note:  # the default input would not start: the video is recorded all the same
        print(f"avatar-app: note: {recording.sound_note}", file=sys.stderr)
        recording.sound_note = None  # said once
    runner = Runner(source, stages, [_Unowned(recording)])  # closed here, so that a failure is said
    runner.start()
    print("recording - look ahead and hold still a moment to calibrate the avatar; Ctrl+C stops", file=sys.stderr)
    started = time.monotonic()
    try:
        while runner.running and (args.seconds is None or time.monotonic() - started < args.seconds):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass  # stop here and keep the file
    finally:
        runner.stop()
        stages.close()
    recording.close()  # an AvatarAppError (no frame ever came) is one line and exit code 2
    delay = recording.sound_delay
    with_sound = listening and recording.sound_note is None and delay is not None
    sound = (f"with the microphone's sound, moved {delay * 1000:+.0f} ms to meet the pictures (the measured latency)"
             if with_sound else "silent")
    print(f"{args.out}: {recording.frames_written} frames at {args.fps} fps ({recording.seconds:.1f} s), "
          f"{framing.width}x{framing.height}, {sound}")
    if recording.sound_note:
        print(f"avatar-app: note: {recording.sound_note}", file=sys.stderr)
    return 0


class _Unowned:
    """The recording as the runner's sink, which the runner does not close (record's run() does)."""

    name = "record"

    def __init__(self, recording) -> None:
        self.process = recording.process

    def close(self) -> None:
        pass
