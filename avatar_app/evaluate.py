"""Self-reenactment evaluation, the paper's protocol: the first T frames of a video make the avatar, later frames
of the same video drive it with their own landmarks, and every output is scored against the real frame it
should reproduce, beside a do-nothing baseline computed by the same code.

Per video: a fixed square crop around the face (from the first frame with a face), resized to ``size``.
Driven frames: ``frames`` frames spread evenly after the first max(shots) frames, the same for every T so the
rows compare on the same frames. For each T, every method turns each driven frame into an output:

- ``static``: the output is the source frame itself (nothing moves);
- ``mesh``: the mesh renderer animates the source frame with the driven frame's landmarks.

The mesh renderer animates one image, so at T > 1 each driven frame picks its source among the first T frames
by nearest neighbour: the frame whose 68 landmarks (in the fixed crop, so pose, position and expression all
count) are closest to the driven frame's. The static row uses the same pick, so at T > 1 it is a retrieval
baseline and the gap between the two rows is what the warp adds.

Metrics: SSIM, PSNR, L1 against the real frame; 68-point landmark error of the faces re-detected in output and
real frame, in units of the real frame's inter-ocular distance; CSIM, the cosine of face-recognition embeddings
(dlib's ResNet, from the ``[eval]`` extra) of the output and of the avatar's identity (the mean embedding of
its source frames); the fraction of outputs in which a face is still found. Overall figures are means over
videos, each video weighing the same.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from avatar_app.animator import Animator
from avatar_app.avatar import create_avatar
from avatar_app.errors import AvatarAppError, InputFileError, NoFaceError
from avatar_app.landmarks import to_dlib68
from avatar_app.metrics import l1, landmark_error, psnr, ssim
from avatar_app.render.base import RenderSettings
from avatar_app.render_video import track_video
from avatar_app.retarget import RetargetSettings
from avatar_app.sources import SourceSettings, VideoFileSource, probe_video
from avatar_app.tracker import FaceTracker, TrackerSettings

BACKENDS = ("mesh", "neural")
STATIC = "static"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
BOX_SCALE = 1.8  # crop side, in face-box sides: head, hair and some background, as in VoxCeleb-style crops
SHEET_ROWS = 4
METRICS = ("ssim", "psnr", "l1", "lm", "csim", "face_found")
INSTALL_EVAL = "pip install -e '.[eval]'"


class BackendNotAvailable(AvatarAppError):
    """A renderer that exists in the paper's design but not (yet) in this version."""


class VideoSkipped(AvatarAppError):
    """A video that cannot be scored (no face, too short); reported and skipped, never fatal."""


@dataclass(frozen=True)
class EvaluationSettings:
    """shots: the T values (first T frames make the avatar); frames: driven frames per video; size: crop side."""

    shots: tuple[int, ...] = (1, 8, 32)
    backend: str = "mesh"
    size: int = 256
    frames: int = 32
    model: str | None = None  # the neural backend's model folder

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

    @property
    def methods(self) -> tuple[str, ...]:
        """The rows: the static baseline, the mesh renderer, and the backend under test when it is not mesh."""
        return (STATIC, "mesh") if self.backend == "mesh" else (STATIC, "mesh", self.backend)


# -- the crop --------------------------------------------------------------------------------------------------
def face_box(points: np.ndarray) -> tuple[int, int, int]:
    """A square (x0, y0, side) centred on the landmarks' box, BOX_SCALE times its larger side."""
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    side = int(round(BOX_SCALE * max(x1 - x0, y1 - y0)))
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


# -- measuring faces ---------------------------------------------------------------------------------------------
class StillDetector:
    """68 landmarks of one image on its own (no tracking history), so outputs and real frames are measured alike."""

    def __init__(self) -> None:
        self.tracker = FaceTracker(TrackerSettings(static_images=True, max_faces=1))

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        face = self.tracker.process(image)
        return None if face is None else to_dlib68(face.points)

    def close(self) -> None:
        self.tracker.close()


class CsimUnavailable(Exception):
    """The face-recognition model for CSIM is not installed; the message says why and what to install."""


class FaceEmbedder:
    """dlib's ResNet face-recognition model (128-d), aligned with dlib's 5-point predictor.

    The face box comes from our own 68 landmarks rather than dlib's HOG detector, so an output with a face
    the landmark model finds is always embedded (on real crops the two boxes give embeddings with cosine
    > 0.998). The models ship inside the ``face_recognition_models`` package: nothing is downloaded.
    """

    name = "dlib_face_recognition_resnet_model_v1 (face_recognition_models)"

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as err:
            raise CsimUnavailable(f"dlib is not installed ({err}) - {INSTALL_EVAL}") from None
        # find_spec rather than import: the package's __init__ imports pkg_resources, which recent setuptools
        # no longer ships; only its data files are needed.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise CsimUnavailable(f"face_recognition_models is not installed - {INSTALL_EVAL}")
        models = Path(next(iter(spec.submodule_search_locations))) / "models"
        predictor = models / "shape_predictor_5_face_landmarks.dat"
        recognition = models / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (predictor, recognition):
            if not f.is_file():
                raise CsimUnavailable(f"{f} is missing - reinstall with {INSTALL_EVAL}")
        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(predictor))
        self._model = dlib.face_recognition_model_v1(str(recognition))

    def __call__(self, image: np.ndarray, points68: np.ndarray | None) -> np.ndarray | None:
        """Unit-length embedding of the face at ``points68`` in a BGR image; None without landmarks."""
        if points68 is None:
            return None
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        x0, y0 = np.floor(points68[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(points68[:, :2].max(axis=0)).astype(int)
        shape = self._shape(rgb, self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1)))
        v = np.asarray(self._model.compute_face_descriptor(rgb, shape), np.float64)
        norm = np.linalg.norm(v)
        return v / norm if norm > 0 else None


def load_face_embedder() -> tuple[FaceEmbedder | None, str]:
    """The CSIM model, or None with the reason it is unavailable."""
    try:
        return FaceEmbedder(), ""
    except CsimUnavailable as err:
        return None, str(err)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# -- results -------------------------------------------------------------------------------------------------------
@dataclass
class FrameScore:
    frame: int  # the driven (real) frame
    source: int  # the source frame the output was made from
    ssim: float
    psnr: float
    l1: float
    lm: float | None  # None: no face in the output or the real frame
    csim: float | None  # None: no face in the output, or CSIM unavailable
    face_found: bool


@dataclass
class RowResult:
    """One method at one T on one video."""

    method: str
    shots: int
    sources: list[int]  # the source frames the outputs were made from
    scores: list[FrameScore] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        def mean(values: list) -> float | None:
            values = [v for v in values if v is not None]
            return float(np.mean(values)) if values else None

        s = self.scores
        return {
            "ssim": mean([x.ssim for x in s]),
            "psnr": mean([x.psnr for x in s]),
            "l1": mean([x.l1 for x in s]),
            "lm": mean([x.lm for x in s]),
            "csim": mean([x.csim for x in s]),
            "face_found": mean([float(x.face_found) for x in s]),
            "scored": len(s),
        }


@dataclass
class VideoResult:
    video: str
    frames: int
    box: tuple[int, int, int]  # x0, y0, side in the video's pixels (may reach outside the frame: padded)
    driven: list[int]
    driver_lost: list[int] = field(default_factory=list)  # driven frames the tracker found no face in: not scored
    real_face_lost: list[int] = field(default_factory=list)  # scored frames with no re-detected real face (no LM)
    rows: list[RowResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, method: str, shots: int) -> RowResult | None:
        return next((r for r in self.rows if r.method == method and r.shots == shots), None)


@dataclass
class Report:
    settings: EvaluationSettings
    csim_model: str | None  # None: CSIM unavailable
    csim_reason: str  # why CSIM is unavailable ("" when it is available)
    videos: list[VideoResult]
    skipped: list[tuple[str, str]]  # (video, reason)
    sheets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # video stem -> contact sheet

    def overall(self) -> list[dict]:
        """Per (T, method): the mean over videos of each per-video figure (each video weighs the same)."""
        rows = []
        for t in self.settings.shots:
            for method in self.settings.methods:
                summaries = [r.summary() for v in self.videos if (r := v.row(method, t)) is not None]
                row: dict = {"method": method, "shots": t, "videos": len(summaries)}
                for key in METRICS:
                    values = [s[key] for s in summaries if s[key] is not None]
                    row[key] = float(np.mean(values)) if values else None
                row["scored"] = sum(s["scored"] for s in summaries)
                rows.append(row)
        return rows

    def to_json(self) -> dict:
        return json_safe({
            "protocol": {
                "shots": list(self.settings.shots),
                "backend": self.settings.backend,
                "methods": list(self.settings.methods),
                "size": self.settings.size,
                "frames": self.settings.frames,
                "source_selection": "nearest neighbour among the first T frames by 68-point landmark error",
                "lm": "68-point landmark error / real frame's inter-ocular distance",
                "csim": "cosine of face-recognition embeddings: output vs mean of the source frames' (dlib: "
                        "different people still score about 0.8-0.94)",
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
    return value


def code_version() -> dict:
    """The commit and the package files changed since it, so figures can be tied to the code that made them."""
    repo = Path(__file__).resolve().parents[1]

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


class _Shot:
    """The avatar made from the first T frames: its source candidates, and their animators made on first use."""

    def __init__(self, t: int, run: _VideoRun, name: str) -> None:
        self.t, self._run, self._name = t, run, name
        self.candidates = [s for s in range(t) if run.driver[s] is not None]
        self._driver68 = {s: to_dlib68(run.driver[s]) for s in self.candidates}
        self._animators: dict[int, dict[str, Animator]] = {}
        self._identity = None
        self.notes: list[str] = []

    def pick(self, points: np.ndarray) -> int:
        return nearest_source({s: self._driver68[s] for s in self.candidates}, to_dlib68(points))

    def animators(self, s: int) -> dict[str, Animator] | None:
        """The animators (one per rendering method) of source frame s; None (and s dropped) when no portrait
        face is found in it. For the neural backend the avatar's identity is made from all T frames (few-shot)."""
        if s not in self._animators:
            run = self._run
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # several faces in a crop: the largest is used, as everywhere
                    avatar = create_avatar(run.crops[s], name=f"{self._name}_{s}")
            except NoFaceError:
                self.notes.append(f"frame {s}: the tracker saw a face the portrait detector does not - not a source")
                self.candidates.remove(s)
                return None
            size = run.settings.size
            animators = {}
            for method in run.settings.methods[1:]:
                render = RenderSettings(size=size, backend=method, model=run.settings.model)
                if method == "neural":
                    avatar.neural = self.identity(render)
                animator = Animator(avatar, render, RetargetSettings())
                if animator.output_size != (size, size):
                    raise AvatarAppError(f"renderer gave {animator.output_size}, expected {size}x{size}")
                animator.calibrate(run.driver[s])  # the source frame's own pose is the reference
                animator.target(run.driver[s], run.times[s])  # start the face-loss easing there
                animators[method] = animator
            self._animators[s] = animators
        return self._animators[s]

    def identity(self, render: RenderSettings):
        """ê and ψ of the first T frames (K = T), made once per shot."""
        if self._identity is None:
            from avatar_app.render.neural import ExportedModel, make_identity

            model = ExportedModel(render.model, render.runtime, render.provider, render.trust_code)
            run = self._run
            self._identity = make_identity(model, [run.crops[s] for s in self.candidates],
                                           [run.driver[s] for s in self.candidates])
        return self._identity

    def close(self) -> None:
        for animators in self._animators.values():
            for a in animators.values():
                a.close()


def evaluate_video(
    path: Path,
    settings: EvaluationSettings,
    detect: StillDetector,
    embed: FaceEmbedder | None,
    progress: bool = False,
) -> tuple[VideoResult, np.ndarray]:
    """Scores of one video and its contact sheet; raises VideoSkipped when the video cannot be scored."""
    points, times = track_video(path)
    first = next((i for i, p in enumerate(points) if p is not None), None)
    if first is None:
        raise VideoSkipped(f"{path.name}: no face found in any of its {len(points)} frames")
    box = face_box(points[first])
    crops = read_crops(path, box, settings.size)
    n = min(len(crops), len(times))
    t_max = settings.shots[-1]
    driven = driven_frames(n, t_max, settings.frames)
    if not driven:
        raise VideoSkipped(f"{path.name}: {n} frames, but the first {t_max} make the avatar and none is left to drive it")
    with FaceTracker(TrackerSettings()) as tracker:
        driver = [None if (f := tracker.process(crops[i], times[i])) is None else f.points for i in range(n)]

    result = VideoResult(video=path.name, frames=n, box=box, driven=driven)
    result.driver_lost = [i for i in driven if driver[i] is None]
    scored = [i for i in driven if driver[i] is not None]
    if not scored:
        raise VideoSkipped(f"{path.name}: the tracker found no face in the crops of the driven frames")
    run = _VideoRun(crops, driver, times, settings, detect, embed)
    result.real_face_lost = [i for i in scored if run.real68(i) is None]
    sheet_frames = [scored[k] for k in driven_frames(len(scored), 0, SHEET_ROWS)]

    with tqdm(total=len(settings.shots) * len(scored), desc=path.stem, unit="frame", leave=False,
              disable=not progress) as bar:
        for t in settings.shots:
            shot = _Shot(t, run, path.stem)
            try:
                rows = run.score(shot, scored, sheet_frames, bar)
            finally:
                shot.close()
            result.notes += [f"T={t}: {note}" for note in shot.notes]
            if rows is None:
                result.notes.append(f"T={t}: no usable face in the first {t} frames - no avatar, not scored")
            else:
                result.rows += rows
    if not result.rows:
        raise VideoSkipped(f"{path.name}: no usable face in the first {t_max} frames to make an avatar")
    return result, contact_sheet(run, sheet_frames, settings)


class _VideoRun:
    """One video's crops and driver landmarks, with the real frames' measurements computed once each."""

    def __init__(self, crops, driver, times, settings: EvaluationSettings, detect: StillDetector,
                 embed: FaceEmbedder | None) -> None:
        self.crops, self.driver, self.times = crops, driver, times
        self.settings, self.detect, self.embed = settings, detect, embed
        self._lm: dict[int, np.ndarray | None] = {}
        self._embedding: dict[int, np.ndarray | None] = {}
        self.tiles: dict[tuple[int, int, str], np.ndarray] = {}  # (frame, T, method or "source") -> labelled

    def real68(self, i: int) -> np.ndarray | None:
        if i not in self._lm:
            self._lm[i] = self.detect(self.crops[i])
        return self._lm[i]

    def real_embedding(self, i: int) -> np.ndarray | None:
        if i not in self._embedding:
            self._embedding[i] = None if self.embed is None else self.embed(self.crops[i], self.real68(i))
        return self._embedding[i]

    def score(self, shot: _Shot, scored: list[int], sheet_frames: list[int], bar) -> list[RowResult] | None:
        """The rows (one per method) of one T, or None when no frame among the first T can be a source."""
        # The avatar's identity: the mean embedding of its frames (the paper's embedder averages over them too).
        embeddings = [e for s in shot.candidates if (e := self.real_embedding(s)) is not None]
        identity = np.mean(embeddings, axis=0) if embeddings else None
        rows = {m: RowResult(method=m, shots=shot.t, sources=[]) for m in self.settings.methods}
        for i in scored:
            source, animators = None, None
            while animators is None and shot.candidates:
                source = shot.pick(self.driver[i])
                animators = shot.animators(source)
            if animators is None:  # every candidate failed as a portrait
                return None
            outputs = {STATIC: self.crops[source]}
            for method, animator in animators.items():
                outputs[method] = animator.render(animator.target(self.driver[i], self.times[i]))
            real, real_lm = self.crops[i], self.real68(i)
            for method, output in outputs.items():
                if method == STATIC:  # the output is a real frame: its measurements are cached
                    out68, out_embedding = self.real68(source), self.real_embedding(source)
                else:
                    out68 = self.detect(output)
                    out_embedding = None if self.embed is None else self.embed(output, out68)
                rows[method].scores.append(FrameScore(
                    frame=i,
                    source=source,
                    ssim=ssim(output, real),
                    psnr=psnr(output, real),
                    l1=l1(output, real),
                    lm=None if out68 is None or real_lm is None else landmark_error(out68, real_lm),
                    csim=None if out_embedding is None or identity is None else cosine(out_embedding, identity),
                    face_found=out68 is not None,
                ))
                if i in sheet_frames and method != STATIC:
                    self.tiles[(i, shot.t, method)] = _label(output, f"{method} T={shot.t}")
            if i in sheet_frames:
                self.tiles[(i, shot.t, "source")] = _label(self.crops[source], f"source T={shot.t}: {source}")
            bar.update(1)
        for row in rows.values():
            row.sources = sorted({s.source for s in row.scores})
        return list(rows.values())


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.3, tile.shape[0] / 640)
    y = int(14 * scale / 0.4)
    for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, width, cv2.LINE_AA)
    return tile


def contact_sheet(run: _VideoRun, frames: list[int], settings: EvaluationSettings) -> np.ndarray:
    """One row per sampled driven frame: source | driver | output for the first T, then source | output per T."""
    blank = np.zeros((settings.size, settings.size, 3), np.uint8)
    rows = []
    for i in frames:
        tiles = []
        for k, t in enumerate(settings.shots):
            tiles.append(run.tiles.get((i, t, "source"), blank))
            if k == 0:
                tiles.append(_label(run.crops[i], f"driver: {i}"))
            tiles += [run.tiles.get((i, t, m), blank) for m in settings.methods if m != STATIC]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


# -- the whole run and its outputs --------------------------------------------------------------------------------
def evaluate(
    videos: Sequence[str | Path],
    settings: EvaluationSettings = EvaluationSettings(),
    progress: bool = False,
    on_skip: Callable[[str], None] | None = None,
    csim: bool = True,
) -> Report:
    """Score every video; videos that cannot be scored are listed in ``Report.skipped`` (and told to on_skip).

    ``csim=False`` leaves the face-recognition model out (a few tenths of a second per output).
    """
    embed, reason = load_face_embedder() if csim else (None, "not computed (csim=False)")
    report = Report(settings=settings, csim_model=embed.name if embed else None, csim_reason=reason,
                    videos=[], skipped=[])
    detect = StillDetector()
    try:
        for path in tqdm([Path(v) for v in videos], desc="videos", unit="video", disable=not progress):
            try:
                result, sheet = evaluate_video(path, settings, detect, embed, progress=progress)
            except VideoSkipped as err:
                report.skipped.append((path.name, str(err)))
                if on_skip is not None:
                    on_skip(str(err))
                continue
            report.videos.append(result)
            report.sheets[path.stem] = sheet
    finally:
        detect.close()
    return report


_COLUMNS = (  # key, header, format
    ("ssim", "SSIM ↑", ".3f"),
    ("psnr", "PSNR dB ↑", ".2f"),
    ("l1", "L1 ↓", ".4f"),
    ("lm", "LM err / IOD ↓", ".3f"),
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
        "frame itself. At T > 1 both rows use, for each driven frame, the source among the first T whose 68 "
        "landmarks are nearest the driven frame's (nearest-neighbour selection; the mesh renderer animates one "
        "image), so static is then a retrieval baseline. LM err: 68-point landmark error of the re-detected faces "
        "/ inter-ocular distance (frames with a face in the output). CSIM: cosine of face-recognition embeddings, "
        "output vs. the mean over the source frames (static at T = 1 scores 1 by construction; dlib's embeddings "
        "are not centred, so different people still score about 0.8-0.94: not comparable with the paper's CSIM). "
        "Means over videos, each video weighing the same.",
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
        if v.real_face_lost:
            lines.append(f"- {len(v.real_face_lost)} real frames without a re-detected face (no LM error)")
        lines += [f"- {note}" for note in v.notes]
        if v.driver_lost or v.real_face_lost or v.notes:
            lines.append("")
    if report.skipped:
        lines += ["## Skipped", ""] + [f"- {why}" for _, why in report.skipped] + [""]
    return "\n".join(lines)
