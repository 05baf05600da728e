"""Self-reenactment evaluation, the paper's protocol: the first T frames of a video make the avatar, later frames
of the same video drive it with their own landmarks, and every output is scored against the real frame it
should reproduce, beside a do-nothing baseline computed by the same code.

Per video: a fixed square crop around the face (from the first frame with a face), resized to ``size``.
Driven frames: ``frames`` frames spread evenly after the first max(shots) frames, the same for every T so the
rows compare on the same frames. For each T, every method turns each driven frame into an output:

- ``static``: the output is the source frame itself (nothing moves);
- ``mesh`` (and ``neural``): the app's renderer animates the source frame with the driven frame's landmarks;
- any method a caller adds (the benchmarks add a naive warp as a baseline).

At T > 1 each driven frame picks its source among the first T frames by nearest neighbour (landmarks in the
fixed crop, so pose, position and expression all count); the static row uses the same pick.

**The judge is independent of the tracker that drives the renderer**: landmark error is measured with dlib's
68-point predictor (face_measure.py) on output and real frame alike, in units of the real frame's inter-ocular
distance (IOD). MediaPipe's own figure is a second, labelled column (``lm_mp``). Per method and video: the mean,
median and worst error, the frames above 0.12 IOD or without a face ("tears"), the six worst frames as a sheet
(driver | output), and jitter: the output's frame-to-frame landmark motion in pixels over the frames where the
real face is still. CSIM: cosine of dlib face descriptors of output and the avatar's identity (the mean of its
source frames'). Overall figures are means over videos, each video weighing the same.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm import tqdm

from avatar_app.call.framing import FramingSettings
from avatar_app.call.picture import CallPicture, CallSettings
from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.avatar import Avatar, create_avatar
from avatar_app.errors import AvatarAppError, InputFileError, NoFaceError
from avatar_app.face.crop import crop, face_box
from avatar_app.face.landmarks import to_dlib68
from avatar_app.measure.protocol import FINETUNED, STATIC, EvaluationSettings
from avatar_app.measure.metrics import l1, landmark_error, psnr, ssim
from avatar_app.measure.picture import false_edges, still_region_error
from avatar_app.measure.report import Report, VideoResult, contact_sheet, worst_sheet, label
from avatar_app.measure.scoring import (FrameScore, Judge, MeasuredFrames, RowResult, cosine, jitter, mean_of,
                                        mouth_l1, new_edges_allowed, region_errors)
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.frame import Frame
from avatar_app.pipeline.stages import StageLoop, TrackerStage
from avatar_app.pipeline.retarget import RetargetSettings
from avatar_app.pipeline.sources import SourceSettings, VideoFileSource, probe_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
SHEET_ROWS = 4


class VideoSkipped(AvatarAppError):
    """A video that cannot be scored (no face, too short); reported and skipped, never fatal."""


# -- methods: what turns driver landmarks into an output ----------------------------------------------------------
class Method(Protocol):
    def __call__(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        """The output for this driver frame (478 x 3 points in the driver's crop, or None: no face)."""

    def close(self) -> None: ...


# (avatar made from the source frame, the source frame's driver landmarks, its time, the output side) -> Method
MethodFactory = Callable[[Avatar, np.ndarray, float, int], Method]


class AnimatorMethod:
    """The app's own animation path, the stage loop's retarget, renderer and call-picture stages (face-loss easing
    included), calibrated on the source frame: what is scored is the picture a call gets, the whole source
    frame ("fit" at the renderer's size) drawn from its own pixels over its still background."""

    def __init__(self, avatar: Avatar, reference: np.ndarray, t0: float, render: RenderSettings,
                 retarget: RetargetSettings = RetargetSettings(), renderer=None) -> None:
        animator = Animator(avatar, render, retarget, renderer=renderer)
        animator.calibrate(reference)  # the source frame's own pose is the reference
        call = CallPicture(CallSettings(FramingSettings(*animator.output_size, mode="fit")))
        call.prepare(animator)
        self.stages = StageLoop(animator, media_time=True, call=call)
        self._index = 0
        self.stages.retarget(self._frame(reference, t0))  # start the face-loss easing there

    @property
    def output_size(self) -> tuple[int, int]:
        return self.stages.animator.output_size

    def _frame(self, driver: np.ndarray | None, t: float) -> Frame:
        self._index += 1
        return Frame(image=_NO_PICTURE, index=self._index, t_capture=t, t_media=t, driver=driver)

    def __call__(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        return self.step(driver, t).picture

    def step(self, driver: np.ndarray | None, t: float, picture: np.ndarray | None = None) -> Frame:
        """One frame through the retarget and render stages: the Frame, with its ``target`` and ``picture``.
        ``picture``: the driver's own frame, for a mouth source that draws from it (none by default)."""
        frame = self._frame(driver, t)
        if picture is not None:
            frame.image = picture
        self.stages.retarget(frame)  # the driver is tracked already: in the crop, once per clip
        self.stages.render(frame)
        return frame

    def close(self) -> None:
        self.stages.close()


_NO_PICTURE = np.zeros((0, 0, 3), np.uint8)


# -- the crop: the face crop the app's neural model sees (face/crop.py), the same for every frame of a clip --
def driven_frames(n: int, first: int, count: int) -> list[int]:
    """Up to ``count`` frame indices spread evenly over [first, n), both ends included."""
    if n <= first:
        return []
    if n - first <= count:
        return list(range(first, n))
    return sorted({int(round(x)) for x in np.linspace(first, n - 1, count)})


@dataclass
class Clip:
    """A driving video as the evaluation sees it: fixed face crops, their tracked landmarks and media times."""

    name: str
    crops: list[np.ndarray]
    driver: list[np.ndarray | None]  # 478 x 3 in crop pixels, tracked as a stream (as the live app does)
    times: list[float]
    box: tuple[int, int, int]


def load_clip(path: Path, size: int) -> Clip:
    """Decode the video once: the full frames are tracked until the first face fixes the crop, and every frame's
    crop is tracked as the live app tracks a camera (the stage loop's tracker stage, in media time)."""
    full, cropped = TrackerStage(media_time=True), TrackerStage(media_time=True)
    waiting: list[Frame] = []  # frames before the first face: cropped once the box is known
    crops: list[Frame] = []
    box = None
    try:
        with VideoFileSource(SourceSettings(str(path))) as source:
            for frame in source:
                if frame.t_media is None:
                    frame.t_media = frame.index / source.fps
                if box is None:
                    full.process(frame)
                    waiting.append(frame)
                    if frame.driver is None:
                        continue
                    box = face_box(frame.driver)
                    full.close()
                for f in waiting or [frame]:
                    patch = Frame(image=crop(f.image, box, size), index=f.index, t_capture=f.t_capture,
                                  t_media=f.t_media)
                    cropped.process(patch)
                    crops.append(patch)
                waiting = []
    finally:
        full.close()
        cropped.close()
    if box is None:
        raise VideoSkipped(f"{path.name}: no face found in any of its {len(waiting)} frames")
    return Clip(path.name, [f.image for f in crops], [f.driver for f in crops], [f.time for f in crops], box)


# -- the protocol ----------------------------------------------------------------------------------------------------
def find_videos(specs: Sequence[str | Path]) -> list[Path]:
    """Video files from paths and folders (a folder gives its videos, sorted); refuses what is not a video."""
    videos: list[Path] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise InputFileError(f"{path}: no videos in this folder ({', '.join(VIDEO_SUFFIXES)}) - give a folder of clips or the files")
            videos += found
        elif path.is_file():
            videos.append(path)
        else:
            raise InputFileError(f"{path}: no such video or folder - check the path given to --videos")
    if not videos:
        raise InputFileError("no videos given - pass clips or a folder with --videos")
    unique = list(dict.fromkeys(p.resolve() for p in videos))
    for path in unique:
        probe_video(path)  # an unreadable file is one line naming it, before any work
    return unique


def nearest_source(sources: dict[int, np.ndarray], target: np.ndarray) -> int:
    """The source frame whose 68 landmarks are nearest the target's (mean distance, target inter-ocular units).

    The landmarks are in the fixed crop, so head position, pose and expression all count.
    """
    return min(sources, key=lambda s: landmark_error(sources[s], target))


def builtin_factory(method: str, settings: EvaluationSettings, identity=None, tuned=None) -> MethodFactory:
    """The app's renderer ``method`` as a MethodFactory (``identity()`` gives a neural avatar its ê and ψ;
    ``tuned()`` the fine-tuned model of the shot, for the neural-ft row)."""

    def make(avatar: Avatar, reference: np.ndarray, t0: float, size: int) -> Method:
        render = RenderSettings(size=size, backend="neural" if method == FINETUNED else method, model=settings.model)
        renderer = None
        if method == "neural" and identity is not None:
            avatar.neural = identity(render)
        if method == FINETUNED:
            from avatar_app.pipeline.render.neural import NeuralRenderer

            model = tuned()
            avatar = dataclasses.replace(avatar, neural=model.identity_of_person)
            renderer = NeuralRenderer(model=model)
        m = AnimatorMethod(avatar, reference, t0, render, renderer=renderer)
        if m.output_size != (size, size):
            m.close()
            raise AvatarAppError(f"renderer gave {m.output_size}, expected {size}x{size}")
        return m

    return make


class _Shot:
    """The avatar made from the first T frames: its source candidates, and their methods made on first use."""

    def __init__(self, t: int, clip: Clip, settings: EvaluationSettings, extra: dict[str, MethodFactory]) -> None:
        self.t, self.clip, self.settings = t, clip, settings
        self.candidates = [s for s in range(t) if clip.driver[s] is not None]
        self._driver68 = {s: to_dlib68(clip.driver[s]) for s in self.candidates}
        self._methods: dict[int, dict[str, Method]] = {}
        self._identity = self._tuned = None
        self.factories = {m: builtin_factory(m, settings, self.identity, self.tuned) for m in settings.methods[1:]}
        self.factories.update(extra)
        self.notes: list[str] = []

    def pick(self, points: np.ndarray) -> int:
        return nearest_source({s: self._driver68[s] for s in self.candidates}, to_dlib68(points))

    def methods(self, s: int) -> dict[str, Method] | None:
        """The methods animating source frame s; None (and s dropped) when no portrait face is found in it."""
        if s not in self._methods:
            clip = self.clip
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # several faces in a crop: the largest is used, as everywhere
                    avatar = create_avatar(clip.crops[s], name=f"{Path(clip.name).stem}_{s}")
            except NoFaceError:
                self.notes.append(f"frame {s}: the tracker saw a face the portrait detector does not - not a source")
                self.candidates.remove(s)
                return None
            size = self.settings.size
            self._methods[s] = {m: f(avatar, clip.driver[s], clip.times[s], size) for m, f in self.factories.items()}
        return self._methods[s]

    def identity(self, render: RenderSettings):
        """ê and ψ of the first T frames (K = T), made once per shot."""
        if self._identity is None:
            from avatar_app.pipeline.render.neural import ExportedModel, make_identity

            model = ExportedModel(render.model, render.runtime, render.provider, render.trust_code)
            c = self.clip
            self._identity = make_identity(model, [c.crops[s] for s in self.candidates],
                                           [c.driver[s] for s in self.candidates])
        return self._identity

    def tuned(self):
        """The model fine-tuned on the first T frames (the paper's FT), made once per shot."""
        if self._tuned is None:
            from avatar_app.training.finetune import TunedModel

            c = self.clip
            self._tuned = TunedModel.finetune(self.settings.checkpoint, [c.crops[s] for s in self.candidates],
                                              [c.driver[s] for s in self.candidates], self.settings.finetune_steps)
        return self._tuned

    def close(self) -> None:
        for methods in self._methods.values():
            for m in methods.values():
                m.close()


def evaluate_video(
    path: Path,
    settings: EvaluationSettings,
    judge: Judge,
    extra: dict[str, MethodFactory] | None = None,
    progress: bool = False,
    clip: Clip | None = None,
) -> tuple[VideoResult, np.ndarray, dict[str, np.ndarray]]:
    """Scores of one video, its contact sheet and its worst-frame sheets (method -> sheet); raises VideoSkipped
    when the video cannot be scored."""
    clip = clip or load_clip(path, settings.size)
    n = len(clip.crops)
    t_max = settings.shots[-1]
    driven = driven_frames(n, t_max, settings.frames)
    if not driven:
        raise VideoSkipped(f"{path.name}: {n} frames, but the first {t_max} make the avatar and none is left to drive it")
    result = VideoResult(video=path.name, frames=n, box=clip.box, driven=driven)
    result.driver_lost = [i for i in driven if clip.driver[i] is None]
    scored = [i for i in driven if clip.driver[i] is not None]
    if not scored:
        raise VideoSkipped(f"{path.name}: the tracker found no face in the crops of the driven frames")
    real = MeasuredFrames(clip.crops, judge)
    result.real_face_lost = [i for i in scored if real.dlib(i) is None]
    floor = [landmark_error(to_dlib68(clip.driver[i])[:, :2], r) for i in scored if (r := real.dlib(i)) is not None]
    result.tracker_lm = mean_of(floor)
    result.tracker_lm_worst = max(floor, default=None)
    sheet_frames = [scored[k] for k in driven_frames(len(scored), 0, SHEET_ROWS)]
    tiles: dict[tuple[int, int, str], np.ndarray] = {}
    extra = extra or {}

    with tqdm(total=len(settings.shots) * len(scored), desc=path.stem, unit="frame", leave=False,
              disable=not progress) as bar:
        for t in settings.shots:
            shot = _Shot(t, clip, settings, extra)
            try:
                rows = _score_shot(shot, real, scored, sheet_frames, tiles, bar)
            finally:
                shot.close()
            result.notes += [f"T={t}: {note}" for note in shot.notes]
            if rows is None:
                result.notes.append(f"T={t}: no usable face in the first {t} frames - no avatar, not scored")
            else:
                result.rows += rows
    if not result.rows:
        raise VideoSkipped(f"{path.name}: no usable face in the first {t_max} frames to make an avatar")
    methods = (*settings.methods, *extra)
    worst = {m: worst_sheet(clip.crops, r, settings.size)
             for m in methods[1:] if (r := result.row(m, settings.shots[0])) is not None}
    return result, contact_sheet(clip.crops, tiles, sheet_frames, settings, methods), worst


def _score_shot(shot: _Shot, real: MeasuredFrames, scored: list[int], sheet_frames: list[int],
                tiles: dict, bar) -> list[RowResult] | None:
    """The rows (one per method) of one T, or None when no frame among the first T can be a source."""
    clip, judge = shot.clip, real.judge
    embeddings = [e for s in shot.candidates if (e := real.embedding(s)) is not None]
    identity = np.mean(embeddings, axis=0) if embeddings else None
    names = (STATIC, *shot.factories)
    rows = {m: RowResult(method=m, shots=shot.t, sources=[]) for m in names}
    out68: dict[str, dict[int, np.ndarray | None]] = {m: {} for m in names}
    for i in scored:
        source, methods = None, None
        while methods is None and shot.candidates:
            source = shot.pick(clip.driver[i])
            methods = shot.methods(source)
        if methods is None:  # every candidate failed as a portrait
            return None
        outputs = {STATIC: clip.crops[source]}
        for name, method in methods.items():
            outputs[name] = method(clip.driver[i], clip.times[i])
        real_lm, real_mp = real.dlib(i), real.mp(i)
        for name, output in outputs.items():
            if name == STATIC:  # the output is a real frame: its measurements are cached
                o68, o_mp, o_emb = real.dlib(source), real.mp(source), real.embedding(source)
            else:
                o68 = judge.dlib(output)
                o_mp = None if judge.mediapipe is None else judge.mediapipe(output)
                o_emb = None if judge.embed is None else judge.embed(output, o68)
            out68[name][i] = o68
            lm = None if o68 is None or real_lm is None else landmark_error(o68, real_lm)
            score = FrameScore(
                frame=i, source=source, ssim=ssim(output, clip.crops[i]), psnr=psnr(output, clip.crops[i]),
                l1=l1(output, clip.crops[i]), mouth_l1=None if real_lm is None else mouth_l1(output, clip.crops[i], real_lm),
                lm=lm,
                lm_mp=None if o_mp is None or real_mp is None else landmark_error(o_mp, real_mp),
                csim=None if o_emb is None or identity is None else cosine(o_emb, identity),
                face_found=o68 is not None,
                still_err=still_region_error(clip.crops[i], clip.crops[source], output),
                seam=None if name == STATIC else false_edges(
                    output, clip.crops[source], new_edges_allowed(o68, output.shape[:2])).flagged,
                lm_regions=None if lm is None else region_errors(o68, real_lm),
            )
            rows[name].scores.append(score)
            if name != STATIC and (lm is not None or o68 is None):
                rows[name].keep_if_worst(math.inf if o68 is None else lm, i, output)
            if i in sheet_frames and name != STATIC:
                tiles[(i, shot.t, name)] = label(output, f"{name} T={shot.t}")
        if i in sheet_frames:
            tiles[(i, shot.t, "source")] = label(clip.crops[source], f"source T={shot.t}: {source}")
        bar.update(1)
    for name, row in rows.items():
        row.sources = sorted({s.source for s in row.scores})
        row.jitter_px, row.real_jitter_px, row.still_pairs = jitter(out68[name], real.dlib, scored)
    return list(rows.values())


# -- the whole run and its outputs --------------------------------------------------------------------------------
def evaluate(
    videos: Sequence[str | Path],
    settings: EvaluationSettings = EvaluationSettings(),
    progress: bool = False,
    on_skip: Callable[[str], None] | None = None,
    csim: bool = True,
    extra: dict[str, MethodFactory] | None = None,
) -> Report:
    """Score every video; videos that cannot be scored are listed in ``Report.skipped`` (and told to on_skip).

    ``csim=False`` leaves the face-recognition model out (a few tenths of a second per output); ``extra`` adds
    methods (rows) beside the app's own.
    """
    extra = extra or {}
    judge = Judge(csim=csim, mediapipe=settings.mediapipe)
    report = Report(settings=settings, methods=(*settings.methods, *extra),
                    csim_model=judge.embed.name if judge.embed else None, csim_reason=judge.csim_reason,
                    videos=[], skipped=[])
    try:
        for path in tqdm([Path(v) for v in videos], desc="videos", unit="video", disable=not progress):
            try:
                result, sheet, worst = evaluate_video(path, settings, judge, extra, progress=progress)
            except VideoSkipped as err:
                report.skipped.append((path.name, str(err)))
                if on_skip is not None:
                    on_skip(str(err))
                continue
            report.videos.append(result)
            report.sheets[path.stem] = sheet
            for method, image in worst.items():
                report.worst_sheets[f"{path.stem}_{method}"] = image
    finally:
        judge.close()
    return report


