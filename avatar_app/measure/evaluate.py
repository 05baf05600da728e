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
import heapq
import math
import subprocess
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

from avatar_app.pipeline.animator import Animator
from avatar_app.pipeline.avatar import Avatar, create_avatar
from avatar_app.errors import AvatarAppError, InputFileError, NoFaceError
from avatar_app.measure.face_measure import INSTALL_EVAL, DlibLandmarks, EvalModelsMissing, FaceDescriptor
from avatar_app.face.landmark_image import outer_lip_mask
from avatar_app.face.landmarks import to_dlib68
from avatar_app.measure.metrics import inter_ocular, l1, landmark_error, psnr, ssim
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.commands.render import track_video
from avatar_app.pipeline.retarget import RetargetSettings
from avatar_app.pipeline.sources import SourceSettings, VideoFileSource, probe_video
from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings

BACKENDS = ("mesh", "neural")
STATIC = "static"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
BOX_SCALE = 1.8  # crop side, in face-box sides: head, hair and some background, as in VoxCeleb-style crops
SHEET_ROWS = 4
WORST_FRAMES = 6
TEAR_IOD = 0.12  # a frame this far off (or with no face where the real frame has one) is a visible failure
STILL_IOD = 0.01  # the real face moved less than this between two frames: it is still (for jitter)
METRICS = ("ssim", "psnr", "l1", "mouth_l1", "lm", "lm_mp", "csim", "face_found")
FINETUNED = "neural-ft"  # the neural row after the paper's few-shot fine-tuning on the T frames


class BackendNotAvailable(AvatarAppError):
    """A renderer that exists in the paper's design but not (yet) in this version."""


class VideoSkipped(AvatarAppError):
    """A video that cannot be scored (no face, too short); reported and skipped, never fatal."""


@dataclass(frozen=True)
class EvaluationSettings:
    """shots: the T values (first T frames make the avatar); frames: driven frames per video; size: crop side;
    mediapipe: also measure landmark error with MediaPipe (the tracker the renderer uses), a second column."""

    shots: tuple[int, ...] = (1, 8, 32)
    backend: str = "mesh"
    size: int = 256
    frames: int = 32
    model: str | None = None  # the neural backend's model folder
    mediapipe: bool = True
    finetune_steps: int = 0  # > 0: also a neural-ft row, fine-tuned on the T frames from `checkpoint`
    checkpoint: str | None = None  # the model's training checkpoint (fine-tuning needs the full networks)

    def __post_init__(self) -> None:
        shots = tuple(sorted({int(t) for t in self.shots}))
        if not shots or shots[0] < 1:
            raise ValueError(f"shots must be one or more frame counts of at least 1, got {list(self.shots)}")
        object.__setattr__(self, "shots", shots)
        if self.backend not in BACKENDS:
            raise BackendNotAvailable(f"backend '{self.backend}' is not available - choose one of: {', '.join(BACKENDS)}")
        if self.backend == "neural" and not self.model:
            raise BackendNotAvailable("the neural backend needs its model folder - pass --model export/NAME")
        if not 32 <= self.size <= 4096:
            raise ValueError(f"size must be between 32 and 4096 pixels, got {self.size}")
        if self.frames < 1:
            raise ValueError(f"frames must be at least 1, got {self.frames}")
        if self.finetune_steps and (self.backend != "neural" or not self.checkpoint):
            raise BackendNotAvailable("fine-tuned rows need --backend neural and the model's --checkpoint (.pt)")

    @property
    def methods(self) -> tuple[str, ...]:
        """The rows: the static baseline, the mesh renderer, and the backend under test when it is not mesh."""
        if self.backend == "mesh":
            return (STATIC, "mesh")
        return (STATIC, "mesh", self.backend) + ((FINETUNED,) if self.finetune_steps else ())


# -- methods: what turns driver landmarks into an output ----------------------------------------------------------
class Method(Protocol):
    def __call__(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        """The output for this driver frame (478 x 3 points in the driver's crop, or None: no face)."""

    def close(self) -> None: ...


# (avatar made from the source frame, the source frame's driver landmarks, its time, the output side) -> Method
MethodFactory = Callable[[Avatar, np.ndarray, float, int], Method]


class AnimatorMethod:
    """The app's own animation path (retarget, face-loss easing, renderer), calibrated on the source frame."""

    def __init__(self, avatar: Avatar, reference: np.ndarray, t0: float, render: RenderSettings,
                 retarget: RetargetSettings = RetargetSettings(), renderer=None) -> None:
        self.animator = Animator(avatar, render, retarget, renderer=renderer)
        self.animator.calibrate(reference)  # the source frame's own pose is the reference
        self.animator.target(reference, t0)  # start the face-loss easing there

    @property
    def output_size(self) -> tuple[int, int]:
        return self.animator.output_size

    def __call__(self, driver: np.ndarray | None, t: float) -> np.ndarray:
        return self.animator.render(self.animator.target(driver, t))

    def close(self) -> None:
        self.animator.close()


# -- the crop --------------------------------------------------------------------------------------------------
def face_box(points: np.ndarray, scale: float = BOX_SCALE) -> tuple[int, int, int]:
    """A square (x0, y0, side) centred on the landmarks' box, ``scale`` times its larger side."""
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    side = int(round(scale * max(x1 - x0, y1 - y0)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop(image: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """The box cut out of the image and resized to size x size; parts outside the frame repeat its edge.

    Edge repetition rather than black: a hard black border inside the portrait would be an edge the mesh
    warp drags along and the face detector may react to, while the real clip has no such edge.
    """
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


def read_crops(path: Path, box: tuple[int, int, int], size: int) -> list[np.ndarray]:
    with VideoFileSource(SourceSettings(str(path))) as source:
        return [crop(frame.image, box, size) for frame in source]


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
    points, times = track_video(path)
    first = next((i for i, p in enumerate(points) if p is not None), None)
    if first is None:
        raise VideoSkipped(f"{path.name}: no face found in any of its {len(points)} frames")
    box = face_box(points[first])
    crops = read_crops(path, box, size)
    n = min(len(crops), len(times))
    with FaceTracker(TrackerSettings()) as tracker:
        driver = [None if (f := tracker.process(crops[i], times[i])) is None else f.points for i in range(n)]
    return Clip(path.name, crops[:n], driver, times[:n], box)


# -- measuring faces ---------------------------------------------------------------------------------------------
class StillDetector:
    """MediaPipe's 68 points of one image on its own (no tracking history): the second, labelled column."""

    def __init__(self) -> None:
        self.tracker = FaceTracker(TrackerSettings(static_images=True, max_faces=1))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        face = self.tracker.process(image)
        return None if face is None else to_dlib68(face.points)

    def close(self) -> None:
        self.tracker.close()


def load_face_embedder() -> tuple[FaceDescriptor | None, str]:
    """The CSIM model, or None with the reason it is unavailable."""
    try:
        return FaceDescriptor(), ""
    except (EvalModelsMissing, ImportError) as err:
        return None, str(err)


def load_landmark_judge() -> DlibLandmarks:
    """dlib's 68-point judge, or one line saying what to install."""
    try:
        return DlibLandmarks()
    except (EvalModelsMissing, ImportError) as err:
        raise AvatarAppError(f"the independent landmark scorer (dlib) is not available: {err} - {INSTALL_EVAL}") from None


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class Judge:
    """Everything that measures a face in an image, each image measured on its own."""

    def __init__(self, csim: bool = True, mediapipe: bool = True) -> None:
        self.dlib = load_landmark_judge()
        self.embed, self.csim_reason = load_face_embedder() if csim else (None, "not computed (csim=False)")
        self.mediapipe = StillDetector() if mediapipe else None

    def close(self) -> None:
        if self.mediapipe is not None:
            self.mediapipe.close()


class MeasuredFrames:
    """The real frames' measurements, each computed once."""

    def __init__(self, images: list[np.ndarray], judge: Judge) -> None:
        self.images, self.judge = images, judge
        self._cache: dict[tuple[str, int], object] = {}

    def _get(self, kind: str, i: int, make):
        key = (kind, i)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def dlib(self, i: int) -> np.ndarray | None:
        return self._get("dlib", i, lambda: self.judge.dlib(self.images[i]))

    def mp(self, i: int) -> np.ndarray | None:
        m = self.judge.mediapipe
        return self._get("mp", i, lambda: None if m is None else m(self.images[i]))

    def embedding(self, i: int) -> np.ndarray | None:
        e = self.judge.embed
        return self._get("emb", i, lambda: None if e is None else e(self.images[i], self.dlib(i)))


def jitter(points: dict[int, np.ndarray | None], reference: Callable[[int], np.ndarray | None],
           frames: Sequence[int]) -> tuple[float | None, float | None, int]:
    """(output jitter px, the real face's own motion px, pairs) over consecutive frames where the real face is still.

    ``points``: the output's 68 points per frame; ``reference``: the real (or driving) face's 68 points.
    """
    out, real = [], []
    for a, b in zip(frames, frames[1:]):
        if b != a + 1:
            continue
        ra, rb, oa, ob = reference(a), reference(b), points.get(a), points.get(b)
        if ra is None or rb is None or oa is None or ob is None:
            continue
        iod = inter_ocular(ra)
        moved = float(np.linalg.norm(rb - ra, axis=1).mean())
        if moved < STILL_IOD * iod:
            real.append(moved)
            out.append(float(np.linalg.norm(ob - oa, axis=1).mean()))
    if not out:
        return None, None, 0
    return float(np.mean(out)), float(np.mean(real)), len(out)


# -- results -------------------------------------------------------------------------------------------------------
@dataclass
class FrameScore:
    frame: int  # the driven (real) frame
    source: int  # the source frame the output was made from
    ssim: float
    psnr: float
    l1: float
    mouth_l1: float | None  # L1 inside the real frame's outer lip line (dlib's), None without a dlib face
    lm: float | None  # dlib: None when no face in the output or the real frame
    lm_mp: float | None  # MediaPipe, the same way (None when not measured)
    csim: float | None  # None: no face in the output, or CSIM unavailable
    face_found: bool  # dlib finds a face in the output


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


@dataclass
class RowResult:
    """One method at one T on one video."""

    method: str
    shots: int
    sources: list[int]  # the source frames the outputs were made from
    scores: list[FrameScore] = field(default_factory=list)
    jitter_px: float | None = None  # output motion over the still frames (px at the evaluation size)
    real_jitter_px: float | None = None  # the real face's own measured motion over the same frames
    still_pairs: int = 0
    worst: list = field(default_factory=list, repr=False)  # heap of (error, frame, output) - not in the JSON

    def keep_if_worst(self, error: float, frame: int, output: np.ndarray) -> None:
        item = (error, -frame, output)
        if len(self.worst) < WORST_FRAMES:
            heapq.heappush(self.worst, item)
        elif error > self.worst[0][0]:
            heapq.heapreplace(self.worst, item)

    def worst_frames(self) -> list[tuple[float, int, np.ndarray]]:
        return [(e, -f, img) for e, f, img in sorted(self.worst, key=lambda x: (-x[0], x[1]))]

    def summary(self) -> dict[str, float | int | None]:
        s = self.scores
        lms = [x.lm for x in s if x.lm is not None]
        worst = max(s, key=lambda x: math.inf if x.lm is None and not x.face_found else (x.lm or 0.0), default=None)
        return {
            "ssim": _mean(x.ssim for x in s),
            "psnr": _mean(x.psnr for x in s),
            "l1": _mean(x.l1 for x in s),
            "mouth_l1": _mean(x.mouth_l1 for x in s),
            "lm": _mean(lms),
            "lm_median": float(np.median(lms)) if lms else None,
            "lm_worst": max(lms) if lms else None,
            "worst_frame": None if worst is None else worst.frame,
            "tears": sum(1 for x in s if (x.lm is not None and x.lm > TEAR_IOD) or not x.face_found),
            "faceless": sum(1 for x in s if not x.face_found),
            "lm_mp": _mean(x.lm_mp for x in s),
            "csim": _mean(x.csim for x in s),
            "face_found": _mean(float(x.face_found) for x in s),
            "jitter_px": self.jitter_px,
            "real_jitter_px": self.real_jitter_px,
            "still_pairs": self.still_pairs,
            "scored": len(s),
        }


@dataclass
class VideoResult:
    video: str
    frames: int
    box: tuple[int, int, int]  # x0, y0, side in the video's pixels (may reach outside the frame: padded)
    driven: list[int]
    driver_lost: list[int] = field(default_factory=list)  # driven frames the tracker found no face in: not scored
    real_face_lost: list[int] = field(default_factory=list)  # scored frames where dlib finds no real face (no LM)
    # The floor of any landmark-driven method: the driving tracker's own points on the real frames, by the judge.
    tracker_lm: float | None = None
    tracker_lm_worst: float | None = None
    rows: list[RowResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, method: str, shots: int) -> RowResult | None:
        return next((r for r in self.rows if r.method == method and r.shots == shots), None)


@dataclass
class Report:
    settings: EvaluationSettings
    methods: tuple[str, ...]
    csim_model: str | None  # None: CSIM unavailable
    csim_reason: str  # why CSIM is unavailable ("" when it is available)
    videos: list[VideoResult]
    skipped: list[tuple[str, str]]  # (video, reason)
    sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # video stem -> contact sheet
    worst_sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # "stem_method" -> sheet

    def overall(self) -> list[dict]:
        """Per (T, method): the mean over videos of each per-video figure (each video weighs the same)."""
        rows = []
        for t in self.settings.shots:
            for method in self.methods:
                summaries = [r.summary() for v in self.videos if (r := v.row(method, t)) is not None]
                row: dict = {"method": method, "shots": t, "videos": len(summaries)}
                for key in (*METRICS, "lm_median", "jitter_px", "real_jitter_px"):
                    row[key] = _mean(s[key] for s in summaries)
                row["lm_worst"] = max((s["lm_worst"] for s in summaries if s["lm_worst"] is not None), default=None)
                for key in ("tears", "faceless", "scored"):
                    row[key] = sum(s[key] for s in summaries)
                rows.append(row)
        return rows

    def to_json(self) -> dict:
        return json_safe({
            "protocol": {
                "shots": list(self.settings.shots),
                "backend": self.settings.backend,
                "methods": list(self.methods),
                "size": self.settings.size,
                "frames": self.settings.frames,
                "source_selection": "nearest neighbour among the first T frames by 68-point landmark error",
                "lm": "dlib 68-point landmark error / real frame's inter-ocular distance (independent of the tracker)",
                "lm_mp": "the same with MediaPipe's points (the tracker that drives the renderer)",
                "tears": f"frames with lm > {TEAR_IOD} or no face found by dlib in the output",
                "jitter_px": f"output landmark motion per frame (px) where the real face moved < {STILL_IOD} IOD",
                "csim": "cosine of dlib face descriptors: output vs mean of the source frames' (different people "
                        "still score about 0.8-0.94)",
            },
            "csim": {"available": self.csim_model is not None, "model": self.csim_model, "reason": self.csim_reason},
            "code": code_version(),
            "overall": self.overall(),
            "videos": [
                {
                    **{k: v for k, v in asdict(video).items() if k != "rows"},
                    "rows": [{"method": r.method, "shots": r.shots, "sources": r.sources, "summary": r.summary(),
                              "scores": [asdict(s) for s in r.scores]} for r in video.rows],
                }
                for video in self.videos
            ],
            "skipped": [{"video": v, "reason": why} for v, why in self.skipped],
        })


def json_safe(value):
    """JSON has no inf or nan (identical images have infinite PSNR): they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    return value


def code_version() -> dict:
    """The commit and the package files changed since it, so figures can be tied to the code that made them."""
    repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.rstrip()
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "avatar_app").splitlines()]
    return {"commit": git("rev-parse", "HEAD") or None, "changed": changed}


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
    result.tracker_lm = _mean(floor)
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
    return result, contact_sheet(clip, tiles, sheet_frames, settings, methods), worst


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
            )
            rows[name].scores.append(score)
            if name != STATIC and (lm is not None or o68 is None):
                rows[name].keep_if_worst(math.inf if o68 is None else lm, i, output)
            if i in sheet_frames and name != STATIC:
                tiles[(i, shot.t, name)] = _label(output, f"{name} T={shot.t}")
        if i in sheet_frames:
            tiles[(i, shot.t, "source")] = _label(clip.crops[source], f"source T={shot.t}: {source}")
        bar.update(1)
    for name, row in rows.items():
        row.sources = sorted({s.source for s in row.scores})
        row.jitter_px, row.real_jitter_px, row.still_pairs = jitter(out68[name], real.dlib, scored)
    return list(rows.values())


def mouth_l1(output: np.ndarray, real: np.ndarray, real68: np.ndarray) -> float | None:
    """Mean |output - real| (a fraction of 255, like l1) inside the outer lip line of the real frame's 68 points:
    where a warp is most wrong (teeth, the inside of the mouth). None when the outline covers no pixel."""
    inside = outer_lip_mask(real68, real.shape[:2]).astype(bool)
    if not inside.any():
        return None
    return float(np.abs(output.astype(np.float32) - real.astype(np.float32))[inside].mean()) / 255.0


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.3, tile.shape[0] / 640)
    y = int(14 * scale / 0.4)
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
    return tile


def contact_sheet(clip: Clip, tiles: dict, frames: list[int], settings: EvaluationSettings,
                  methods: Sequence[str]) -> np.ndarray:
    """One row per sampled driven frame: source | driver | outputs for the first T, then source | outputs per T."""
    blank = np.zeros((settings.size, settings.size, 3), np.uint8)
    rows = []
    for i in frames:
        row = []
        for k, t in enumerate(settings.shots):
            row.append(tiles.get((i, t, "source"), blank))
            if k == 0:
                row.append(_label(clip.crops[i], f"driver: {i}"))
            row += [tiles.get((i, t, m), blank) for m in methods if m != STATIC]
        rows.append(np.concatenate(row, axis=1))
    return np.concatenate(rows, axis=0)


def worst_sheet(images: list[np.ndarray], row: RowResult, size: int) -> np.ndarray:
    """The row's worst frames, worst first: driver | output, each output labelled with its error."""
    lines = []
    for error, frame, output in row.worst_frames():
        text = "no face" if math.isinf(error) else f"{error:.3f} IOD"
        lines.append(np.concatenate([_label(images[frame], f"driver: {frame}"),
                                     _label(output, f"{row.method}: {text}")], axis=1))
    return np.concatenate(lines, axis=0) if lines else np.zeros((size, 2 * size, 3), np.uint8)


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


_COLUMNS = (  # key, header, format
    ("ssim", "SSIM ↑", ".3f"),
    ("psnr", "PSNR dB ↑", ".2f"),
    ("l1", "L1 ↓", ".4f"),
    ("mouth_l1", "L1 mouth ↓", ".4f"),
    ("lm", "LM dlib ↓", ".4f"),
    ("lm_worst", "worst ↓", ".3f"),
    ("tears", f">{TEAR_IOD} ↓", "d"),
    ("lm_mp", "LM MediaPipe", ".4f"),
    ("jitter_px", "jitter px ↓", ".2f"),
    ("csim", "CSIM ↑", ".3f"),
    ("face_found", "face found ↑", ".0%"),
)


def _cell(value, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def _table(rows: list[dict]) -> list[str]:
    lines = ["| method | T | " + " | ".join(h for _, h, _ in _COLUMNS) + " | frames |",
             "|---|---:|" + "---:|" * len(_COLUMNS) + "---:|"]
    for r in rows:
        cells = " | ".join(_cell(r[k], spec) for k, _, spec in _COLUMNS)
        lines.append(f"| {r['method']} | {r['shots']} | {cells} | {r['scored']} |")
    return lines


def markdown(report: Report) -> str:
    """Table 1 of the paper, our way: rows method x T (each method beside the static baseline), then per video."""
    s = report.settings
    lines = [
        f"# Self-reenactment, {s.size}x{s.size}, backend {s.backend}",
        "",
        f"First T frames of each video make the avatar; {s.frames} frames spread evenly after the first {s.shots[-1]} "
        "are driven by their own landmarks and compared with the real frame. **static**: the output is the source "
        "frame itself. At T > 1 every row uses, for each driven frame, the source among the first T whose "
        "landmarks are nearest the driven frame's, so static is then a retrieval baseline. **LM dlib**: 68-point "
        "landmark error of dlib's faces in output and real frame / inter-ocular distance (a judge independent of "
        f"MediaPipe, which drives the renderer); **worst**: the worst frame's; **>{TEAR_IOD}**: frames above "
        f"{TEAR_IOD} IOD or with no face in the output; **LM MediaPipe**: the same measured with the driving "
        f"tracker; **jitter**: output landmark motion (px) over frames where the real face moved < {STILL_IOD} IOD. "
        "CSIM: cosine of dlib face descriptors, output vs. the mean over the source frames (different people "
        "still score about 0.8-0.94). Means over videos, each video weighing the same.",
        "",
    ]
    if report.csim_model is None:
        lines += [f"CSIM unavailable: {report.csim_reason}", ""]
    lines += [f"## All videos ({len(report.videos)})", ""] + _table(report.overall()) + [""]
    for v in report.videos:
        rows = [{"method": r.method, "shots": r.shots, **r.summary()} for r in v.rows]
        lines += [f"## {v.video}", ""] + _table(rows) + [""]
        if v.driver_lost:
            lines.append(f"- {len(v.driver_lost)} driven frames without a tracked face, not scored")
        if v.tracker_lm is not None:
            lines.append(f"- the driving tracker's own points on the real frames, by the judge: {v.tracker_lm:.4f} "
                         f"IOD (worst {v.tracker_lm_worst:.3f}) - the floor of any landmark-driven method")
        if v.real_face_lost:
            lines.append(f"- {len(v.real_face_lost)} real frames without a dlib face (no LM error)")
        lines += [f"- {note}" for note in v.notes]
        if v.driver_lost or v.real_face_lost or v.notes or v.tracker_lm is not None:
            lines.append("")
    if report.skipped:
        lines += ["## Skipped", ""] + [f"- {why}" for _, why in report.skipped] + [""]
    return "\n".join(lines)
