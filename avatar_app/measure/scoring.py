"""How one output is judged, independently of the tracker that drives the renderer: dlib's 68 points (and
MediaPipe's as a labelled second column), CSIM, jitter, and the per-frame and per-row scores they make."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from avatar_app.errors import AvatarAppError
from avatar_app.measure.face_measure import INSTALL_EVAL, DlibLandmarks, EvalModelsMissing, FaceDescriptor
from avatar_app.face.landmark_image import outer_lip_mask
from avatar_app.face import landmarks as L
from avatar_app.face.landmarks import to_dlib68
from avatar_app.measure.metrics import inter_ocular
from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings


WORST_FRAMES = 6
TEAR_IOD = 0.12  # a frame this far off (or with no face where the real frame has one) is a visible failure
STILL_IOD = 0.01  # the real face moved less than this between two frames: it is still (for jitter)
METRICS = ("ssim", "psnr", "l1", "mouth_l1", "lm", "lm_mp", "csim", "face_found")
LM_REGIONS = ("eyes", "brows", "mouth")


def region_errors(pred68: np.ndarray, real68: np.ndarray) -> dict[str, float]:
    """dlib's landmark error (IOD of the real face) over the eyes, the brows and the mouth alone."""
    iod = inter_ocular(real68)
    parts = {"eyes": ("right_eye", "left_eye"), "brows": ("right_brow", "left_brow"), "mouth": ("outer_lip", "inner_lip")}
    out = {}
    for region, names in parts.items():
        idx = np.concatenate([np.arange(68)[L.dlib68_part(n)] for n in names])
        out[region] = float(np.linalg.norm(pred68[idx, :2] - real68[idx, :2], axis=1).mean() / iod)
    return out


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
    # Where the real frame still equals the source frame (its background), the output's mean difference from the
    # real frame (grey levels): a still scene must stay still. None: too little of the frame is still.
    still_err: float | None = None
    seam: bool | None = None  # a hard edge the source frame does not have (measure/picture.py); None: not measured
    # dlib's landmark error over one region's points only (IOD of the real face): {"eyes", "brows", "mouth"}
    lm_regions: dict[str, float] | None = None


def mean_of(values) -> float | None:
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
            "ssim": mean_of(x.ssim for x in s),
            "psnr": mean_of(x.psnr for x in s),
            "l1": mean_of(x.l1 for x in s),
            "mouth_l1": mean_of(x.mouth_l1 for x in s),
            "lm": mean_of(lms),
            "lm_median": float(np.median(lms)) if lms else None,
            "lm_worst": max(lms) if lms else None,
            "worst_frame": None if worst is None else worst.frame,
            "tears": sum(1 for x in s if (x.lm is not None and x.lm > TEAR_IOD) or not x.face_found),
            "faceless": sum(1 for x in s if not x.face_found),
            "lm_mp": mean_of(x.lm_mp for x in s),
            "csim": mean_of(x.csim for x in s),
            "face_found": mean_of(float(x.face_found) for x in s),
            "still_err": mean_of(x.still_err for x in s),
            "seams": sum(1 for x in s if x.seam),
            **{f"lm_{r}": mean_of(x.lm_regions[r] for x in s if x.lm_regions) for r in LM_REGIONS},
            "jitter_px": self.jitter_px,
            "real_jitter_px": self.real_jitter_px,
            "still_pairs": self.still_pairs,
            "scored": len(s),
        }


def new_edges_allowed(points68: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """Where an output may show edges its source frame has not (an opened mouth's teeth, opened eyes): the inner
    lips' and the eyes' outlines from the output's own 68 points (dlib), widened; None without a face."""
    if points68 is None:
        return None
    mask = np.zeros(shape, np.uint8)
    p = np.round(points68[:, :2]).astype(np.int32)
    for part in (p[48:60], p[36:42], p[42:48]):
        cv2.fillConvexPoly(mask, cv2.convexHull(part), 1)
    iod = max(inter_ocular(points68), 1.0)
    grow = max(3, int(round(0.15 * iod)))
    return cv2.dilate(mask, np.ones((grow, grow), np.uint8)).astype(bool)


def mouth_l1(output: np.ndarray, real: np.ndarray, real68: np.ndarray) -> float | None:
    """Mean |output - real| (a fraction of 255, like l1) inside the outer lip line of the real frame's 68 points:
    where a warp is most wrong (teeth, the inside of the mouth). None when the outline covers no pixel."""
    inside = outer_lip_mask(real68, real.shape[:2]).astype(bool)
    if not inside.any():
        return None
    return float(np.abs(output.astype(np.float32) - real.astype(np.float32))[inside].mean()) / 255.0


