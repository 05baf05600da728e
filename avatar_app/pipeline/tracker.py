"""The tracker room: finds the face in a camera frame or a still portrait and returns its 478 landmarks in pixels.

Streams go through ``FaceTracker`` (MediaPipe's landmark model following the face's region, see
face_region.py, or MediaPipe's FaceMesh graph, plus One-Euro smoothing); a portrait that is animated goes
through ``detect_portrait``, which spends extra passes on accuracy because it runs once.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

# Builds of MediaPipe that log through glog honour these; 0.10.21 logs through absl and ignores them,
# which is why the native graph is also started under quiet_native_logs() below.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from absl import logging as absl_logging  # noqa: E402
from mediapipe.python.solutions import face_mesh as mp_face_mesh  # noqa: E402

from avatar_app.errors import InputFileError, NoFaceError  # noqa: E402
from avatar_app.face import landmarks as L  # noqa: E402
from avatar_app.pipeline.frame import now  # noqa: E402
from avatar_app.pipeline.lid_cue import LidCue  # noqa: E402
from avatar_app.pipeline.mediapipe_native import landmark_array, quiet_native_logs  # noqa: E402
from avatar_app.pipeline.smoothing import OneEuroFilter  # noqa: E402

if TYPE_CHECKING:
    from avatar_app.pipeline.face_region import RegionMesh

absl_logging.set_verbosity(absl_logging.ERROR)

NUM_LANDMARKS = L.N_POINTS  # 468 mesh points + 10 iris points (refine_landmarks=True)

# Speeds that open the One-Euro filter are measured in pixels of a frame this wide, so one `beta` feels the
# same on a 640 x 480 and a 1920 x 1080 camera (landmark jitter scales with resolution too).
_REFERENCE_WIDTH = 640.0
# The lids and irises are smoothed apart from the face, relative to their eye's corners, by a filter whose
# speed estimate follows within a frame (d_cutoff Hz) and that opens faster (beta x LID_BETA): with the face's
# own filter a blink shut for one frame at 30 fps kept 60 % of its depth, with this one 85 % (two frames: 81 ->
# 96 %), for twice the lid jitter at rest (0.07 -> 0.12 px per frame under 0.5 px of noise).
LID_BETA = 2.5
LID_D_CUTOFF = 2.0
_EYE_CORNERS = np.array([L.EYE_UPPER[0][0], L.EYE_UPPER[0][-1], L.EYE_UPPER[1][0], L.EYE_UPPER[1][-1]])
_LID_POINTS = np.concatenate([L.EYE_UPPER[0][1:-1], L.EYE_LOWER[0][1:-1], [L.IRIS_CENTER[0]], L.IRIS_RING[0],
                              L.EYE_UPPER[1][1:-1], L.EYE_LOWER[1][1:-1], [L.IRIS_CENTER[1]], L.IRIS_RING[1]])
_LID_EYE = np.repeat([0, 1], len(_LID_POINTS) // 2)

# detect_portrait: detection works on at most this many pixels per side (the face detector sees a 128 px
# square anyway); the second pass sees a square crop of the face, `_CROP_MARGIN` face sizes each side,
# resized to `_CROP_SIZE` px.
_DETECT_MAX_SIDE = 1024
_CROP_MARGIN = 1.0
_CROP_SIZE = 640
_PORTRAIT_MAX_FACES = 5
# TrackerSettings.backend: "region" follows the face with the landmark model alone (face_region.py, ~3 ms per
# frame); "graph" is MediaPipe's FaceMesh graph, which detects on every frame with fewer than max_faces faces.
BACKENDS = ("region", "graph")
# Overlapping tiles (fractions of the shorter side, stride half a tile) tried when the whole image shows no
# face: the short-range face detector misses faces that fill only a small part of the picture.
_RETRY_TILE_FRACTIONS = (0.6, 0.4)


@dataclass(frozen=True)
class TrackerSettings:
    """How the tracker looks for faces.

    ``static_images`` runs every image on its own (portraits); otherwise the face is tracked from the
    previous frame, which is faster and steadier for streams. ``backend`` "region" (the default) runs the
    landmark model on the face's region from the previous frame and the detector only when the face is lost:
    the largest face found is followed until it leaves, ``max_faces`` is not used. "graph" is MediaPipe's
    FaceMesh graph, also used when the region tracker cannot start: with ``max_faces`` > 1 it runs its face
    detector on every frame where fewer faces are tracked (a few ms a frame) and the largest tracked face
    wins. ``min_cutoff`` (Hz) and ``beta`` (Hz per px/s at 640 px width) tune the One-Euro
    smoothing applied to streams when ``smoothing`` is on. ``lid_cue`` (streams) lets each eye's own pixels
    close lids the landmarks read open (an eye squeezed shut in a laugh, lid_cue.py).
    """

    static_images: bool = False
    max_faces: int = 3
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    smoothing: bool = True
    min_cutoff: float = 0.5
    beta: float = 0.08
    backend: str = "region"
    lid_cue: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not (isinstance(self.max_faces, int) and 1 <= self.max_faces <= 10):
            raise ValueError(f"max_faces must be an integer from 1 to 10, got {self.max_faces!r}")
        for field_name in ("min_detection_confidence", "min_tracking_confidence"):
            value = getattr(self, field_name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{field_name} must be between 0 and 1, got {value!r}")
        if not self.min_cutoff > 0:
            raise ValueError(f"min_cutoff must be > 0 Hz, got {self.min_cutoff!r}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")


@dataclass
class FaceLandmarks:
    """One face's landmarks in the pixel units of the image they were found in.

    ``points`` is float32 (478, 3): x and y in pixels, z in the same scale as x (MediaPipe's z times the
    image width; smaller is nearer the camera, 0 is about the face's centre depth). ``image_size`` is
    (width, height). ``faces_found`` counts all faces seen, of which this is the largest.
    """

    points: np.ndarray
    image_size: tuple[int, int]
    faces_found: int = 1

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) around all points, in pixels."""
        x0, y0 = self.points[:, :2].min(axis=0)
        x1, y1 = self.points[:, :2].max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    def inter_ocular(self) -> float:
        """Distance between the iris centres in pixels: the face's scale, steady under mouth motion."""
        return L.inter_ocular(self.points)

    def scaled(self, factor: float) -> FaceLandmarks:
        """A copy for the same image resized by ``factor`` (z scales with x, so all three columns scale)."""
        w, h = self.image_size
        return FaceLandmarks(
            points=(self.points * np.float32(factor)).astype(np.float32),
            image_size=(int(round(w * factor)), int(round(h * factor))),
            faces_found=self.faces_found,
        )


class _Mesh:
    """MediaPipe FaceMesh with its native start-up log lines silenced.

    The graph opens its models on worker threads after the constructor returns, so the constructor is
    followed by a warm-up frame inside the same quiet block; one more line comes with the first face found,
    so frames stay quiet until then.
    """

    def __init__(self, *, static: bool, max_faces: int, detection: float, tracking: float) -> None:
        with quiet_native_logs():
            self._mesh = mp_face_mesh.FaceMesh(
                static_image_mode=static,
                max_num_faces=max_faces,
                refine_landmarks=True,
                min_detection_confidence=detection,
                min_tracking_confidence=tracking,
            )
            self._mesh.process(np.zeros((64, 64, 3), dtype=np.uint8))
        self._seen_face = False

    def faces(self, image_bgr: np.ndarray) -> list[np.ndarray]:
        """Landmarks of every face in a BGR image: a list of float32 (478, 3) arrays in pixels."""
        h, w = image_bgr.shape[:2]
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False  # lets MediaPipe take the buffer by reference, as its docs advise
        if self._seen_face:
            result = self._mesh.process(rgb)
        else:
            with quiet_native_logs():
                result = self._mesh.process(rgb)
            self._seen_face = bool(result.multi_face_landmarks)
        scale = np.array([w, h, w], dtype=np.float32)
        return [landmark_array(face) * scale for face in result.multi_face_landmarks or ()]

    def close(self) -> None:
        self._mesh.close()


def _bbox(points: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0 = points[:, :2].min(axis=0)
    x1, y1 = points[:, :2].max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def _area(points: np.ndarray) -> float:
    x0, y0, x1, y1 = _bbox(points)
    return (x1 - x0) * (y1 - y0)


class FaceTracker:
    """Finds the face in each frame of a stream (or the largest in independent images when ``static_images``).

    ``process`` returns None when there is no face. In stream mode the face is followed from frame to frame
    (see TrackerSettings.backend; ``backend`` says which one runs) and the landmarks are One-Euro smoothed on
    the frame times; the filter starts afresh whenever the face is lost or jumps (another face was taken), so
    a newly found face is not dragged in from where the old one was.
    """

    def __init__(self, settings: TrackerSettings = TrackerSettings()) -> None:
        self.settings = settings
        self._mesh: _Mesh | RegionMesh | None = None
        if settings.backend == "region" and not settings.static_images:
            self._mesh = _region_mesh(settings)
        #: the backend in use: "region", or "graph" when asked for or when the region tracker could not start
        self.backend = "region" if self._mesh is not None else "graph"
        if self._mesh is None:
            self._mesh = _Mesh(
                static=settings.static_images,
                max_faces=settings.max_faces,
                detection=settings.min_detection_confidence,
                tracking=settings.min_tracking_confidence,
            )
        self._filter: OneEuroFilter | None = None
        self._lid_filter: OneEuroFilter | None = None
        if settings.smoothing and not settings.static_images:
            self._filter = OneEuroFilter(settings.min_cutoff, settings.beta, point_axis=-1)
            self._lid_filter = OneEuroFilter(settings.min_cutoff, settings.beta * LID_BETA, LID_D_CUTOFF, point_axis=-1)
        self._lids = LidCue() if settings.lid_cue and not settings.static_images else None
        self._last_centre: np.ndarray | None = None
        self._tracking = False

    def process(self, image_bgr: np.ndarray, t: float | None = None) -> FaceLandmarks | None:
        """Landmarks of the largest face in a BGR uint8 frame, or None; ``t`` is the frame time in seconds
        (the capture clock when omitted), used only for smoothing."""
        if self._mesh is None:
            raise RuntimeError("FaceTracker.process called after close()")
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"FaceTracker expects an H x W x 3 BGR image, got shape {image_bgr.shape}")
        faces = self._mesh.faces(image_bgr)
        if not faces:
            self.reset()
            self._tracking = False
            return None
        if not self._tracking and not self.settings.static_images and self.backend == "graph":
            # (RegionMesh does this itself.) A newly found face comes from MediaPipe's detector; the frames after it from its tracker, whose
            # landmarks run a few percent larger. Running the same frame again starts on the tracker's scale,
            # so a reference pose taken on this frame carries no false zoom into the frames that follow.
            faces = self._mesh.faces(image_bgr) or faces
            self._tracking = True
        points = max(faces, key=_area) if len(faces) > 1 else faces[0]
        h, w = image_bgr.shape[:2]
        if self._lids is not None:
            points = self._lids(image_bgr, points)
        if self._filter is not None:
            points = self._smooth(points, w, now() if t is None else t)
        return FaceLandmarks(points=points, image_size=(w, h), faces_found=len(faces))

    def _smooth(self, points: np.ndarray, width: int, t: float) -> np.ndarray:
        x0, y0, x1, y1 = _bbox(points)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        # Half a face size in one frame is no head motion, it is a different face.
        jump = 0.5 * max(x1 - x0, y1 - y0)
        if self._last_centre is not None and np.linalg.norm(centre - self._last_centre) > jump:
            self._filter.reset()
            self._lid_filter.reset()
            if self._lids is not None:
                self._lids.reset()
        self._last_centre = centre
        self._filter.beta = self.settings.beta * _REFERENCE_WIDTH / width
        self._lid_filter.beta = self.settings.beta * LID_BETA * _REFERENCE_WIDTH / width
        smooth = self._filter(points, t)
        # The lids and irises relative to their eye's corners, on a filter that opens within a frame: a 100 ms
        # blink or a glance survives, and the head's own motion (in the corners) keeps the face's smoothing.
        corners = points[_EYE_CORNERS].reshape(2, 2, 3).mean(1)
        offsets = self._lid_filter(points[_LID_POINTS] - corners[_LID_EYE], t)
        smooth[_LID_POINTS] = smooth[_EYE_CORNERS].reshape(2, 2, 3).mean(1)[_LID_EYE] + offsets
        return smooth

    def set_smoothing(self, min_cutoff: float) -> None:
        """The One-Euro cutoff at rest (Hz) from the next frame on: lower is calmer (from any thread: one float)."""
        if not min_cutoff > 0:
            raise ValueError(f"min_cutoff must be > 0 Hz, got {min_cutoff!r}")
        if self._filter is not None:
            self._filter.min_cutoff = float(min_cutoff)
            self._lid_filter.min_cutoff = float(min_cutoff)

    def reset(self) -> None:
        """Forget the smoothing history (e.g. when the source jumps to another video or camera)."""
        if self.backend == "region" and self._mesh is not None:
            self._mesh.forget()
        if self._filter is not None:
            self._filter.reset()
            self._lid_filter.reset()
        if self._lids is not None:
            self._lids.reset()
        self._last_centre = None

    def close(self) -> None:
        """Release MediaPipe's graph; safe to call twice."""
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _region_mesh(settings: TrackerSettings) -> RegionMesh | None:
    """The region tracker, or None (with a warning naming the cause) where this MediaPipe build lacks a part."""
    try:
        # Imported here: face_region builds on this module's helpers, and an import failure falls back too.
        from avatar_app.pipeline.face_region import RegionMesh

        return RegionMesh(detection=settings.min_detection_confidence, tracking=settings.min_tracking_confidence)
    except Exception as exc:  # noqa: BLE001 - any failure to build the native graph falls back, it must not stop the app
        warnings.warn(f"face tracker: the fast region tracker did not start ({exc}); using MediaPipe's FaceMesh graph",
                      stacklevel=3)
        return None


def _as_bgr(image: np.ndarray | None, name: str) -> np.ndarray:
    if image is None or not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
        raise InputFileError(f"{name}: not a readable 8-bit image - use a JPEG or PNG photo or painting")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise InputFileError(f"{name}: not a colour or grey image (shape {image.shape}) - use a JPEG or PNG")


def _faces_in_region(
    mesh: _Mesh, image: np.ndarray, x0: int, y0: int, x1: int, y1: int, side: int
) -> list[np.ndarray]:
    """Faces in image[y0:y1, x0:x1] resized so its longer side is ``side`` px, in full-image pixels."""
    crop = image[y0:y1, x0:x1]
    ch, cw = crop.shape[:2]
    s = side / max(cw, ch)
    if abs(s - 1.0) > 1e-3:
        size = (max(1, round(cw * s)), max(1, round(ch * s)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    rh, rw = crop.shape[:2]
    # Undo the resize per axis (rounding makes sx and sy differ slightly); z follows x.
    inverse = np.array([cw / rw, ch / rh, cw / rw], dtype=np.float32)
    offset = np.array([x0, y0, 0], dtype=np.float32)
    return [p * inverse + offset for p in mesh.faces(crop)]


def _distinct_largest_first(faces: list[np.ndarray]) -> list[np.ndarray]:
    """Largest first, dropping faces whose centre lies inside a larger one (the same face seen twice)."""
    kept: list[np.ndarray] = []
    for face in sorted(faces, key=_area, reverse=True):
        cx, cy = face[:, :2].mean(axis=0)
        if not any(_inside(cx, cy, _bbox(big)) for big in kept):
            kept.append(face)
    return kept


def _inside(x: float, y: float, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


def _tile_grids(w: int, h: int) -> Iterator[list[tuple[int, int, int, int]]]:
    """Grids of overlapping square tiles covering the image, the grid of large tiles first."""
    for fraction in _RETRY_TILE_FRACTIONS:
        side = max(64, int(min(w, h) * fraction))
        stride = side // 2
        xs = sorted({*range(0, max(1, w - side + 1), stride), max(0, w - side)})
        ys = sorted({*range(0, max(1, h - side + 1), stride), max(0, h - side)})
        yield [(x, y, min(w, x + side), min(h, y + side)) for y in ys for x in xs]


def _refined(mesh: _Mesh, image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The face found again in a square crop around it, where it fills the landmark model's view."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = _bbox(face)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (0.5 + _CROP_MARGIN)
    box = (
        max(0, int(cx - half)),
        max(0, int(cy - half)),
        min(w, int(np.ceil(cx + half))),
        min(h, int(np.ceil(cy + half))),
    )
    candidates = _faces_in_region(mesh, image, *box, side=_CROP_SIZE)
    # The crop may hold a neighbour too: keep the face at the place the first pass found.
    same = [c for c in candidates if _inside(*c[:, :2].mean(axis=0), (x0, y0, x1, y1))]
    if not same:
        return face
    return min(same, key=lambda c: float(np.linalg.norm(c[:, :2].mean(axis=0) - (cx, cy))))


def detect_portrait(image_bgr: np.ndarray, name: str = "portrait") -> FaceLandmarks:
    """Landmarks of the largest face in a still portrait (photo or painting), as precise as we can get.

    A portrait is analysed once and then animated for minutes, so this spends several passes: the whole
    image (downscaled if huge), then a square crop around the face resized to a fixed size, because the
    landmarks are steadier when the face fills the view (on the shipped paintings, their spread across
    rescaled and shifted copies of the image drops by about a third). When the whole image shows no face,
    overlapping upscaled tiles are tried, which finds small faces and many painted ones.
    Raises NoFaceError (one line naming ``name``) when there is no face; warns when there are several.
    """
    image = _as_bgr(image_bgr, name)
    h, w = image.shape[:2]
    mesh = _Mesh(static=True, max_faces=_PORTRAIT_MAX_FACES, detection=0.5, tracking=0.5)
    try:
        faces = _faces_in_region(mesh, image, 0, 0, w, h, side=min(max(w, h), _DETECT_MAX_SIDE))
        for grid in _tile_grids(w, h) if not faces else ():
            for tile in grid:
                faces += _faces_in_region(mesh, image, *tile, side=_CROP_SIZE)
            if faces:
                break
        faces = _distinct_largest_first(faces)
        if not faces:
            raise NoFaceError(
                f"{name}: no face found in the portrait - use one where a face is clearly visible, frontal or"
                " three-quarter"
            )
        if len(faces) > 1:
            warnings.warn(f"{name}: {len(faces)} faces found, using the largest", stacklevel=2)
        points = _refined(mesh, image, faces[0])
    finally:
        mesh.close()
    return FaceLandmarks(points=points.astype(np.float32, copy=False), image_size=(w, h), faces_found=len(faces))

