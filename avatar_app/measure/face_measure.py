"""An independent judge of faces: dlib's 68-point landmarks and face descriptor, and the head pose and
expression measures read off those 68 points.

The renderer is driven by MediaPipe; scoring its output with MediaPipe too would let both share the same
blind spots (a warp that moves MediaPipe's points where they should be can still look wrong to any other
detector). dlib finds the face with its own HOG detector (its CNN detector when HOG sees none) and places its
own 68 points; its models ship inside ``face_recognition_models`` (the ``[eval]`` extra), nothing is
downloaded.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from avatar_app.face import landmarks as L
from avatar_app.measure.metrics import inter_ocular

INSTALL_EVAL = "pip install -e '.[eval]'"

# Parts of the 68-point iBUG layout (face/landmarks.py holds the layout).
JAW = L.dlib68_part("jaw")
BROW_R, BROW_L = L.dlib68_part("right_brow"), L.dlib68_part("left_brow")
EYE_R, EYE_L = L.dlib68_part("right_eye"), L.dlib68_part("left_eye")
NOSE_TIP, CHIN = L.dlib68_part("nose_bridge").stop - 1, JAW.start + 8  # the bridge ends at the tip; the chin is mid-jaw

MEASURES = ("yaw", "pitch", "roll", "x", "y", "mouth", "eye_r", "eye_l", "eyes", "brow")


class EvalModelsMissing(Exception):
    """dlib or its model files are not installed; the message says what to install."""


def _model_dir() -> Path:
    try:
        import dlib  # noqa: F401
    except ImportError as err:
        raise EvalModelsMissing(f"dlib is not installed ({err}) - {INSTALL_EVAL}") from None
    # find_spec rather than import: the package's __init__ imports pkg_resources, which recent setuptools no
    # longer ships; only its data files are needed.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise EvalModelsMissing(f"face_recognition_models is not installed - {INSTALL_EVAL}")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _model_file(name: str) -> str:
    f = _model_dir() / name
    if not f.is_file():
        raise EvalModelsMissing(f"{f} is missing - reinstall with {INSTALL_EVAL}")
    return str(f)


class DlibLandmarks:
    """68 points of the largest face in a BGR image, or None: HOG detector first, the CNN detector when HOG
    finds nothing (turned or tilted heads), then dlib's 68-point shape predictor."""

    name = "dlib 68-point shape predictor (HOG face detector, MMOD CNN fallback)"

    def __init__(self) -> None:
        predictor, self._cnn_path = _model_file("shape_predictor_68_face_landmarks.dat"), _model_file("mmod_human_face_detector.dat")
        import dlib

        self._dlib = dlib
        self._predictor = dlib.shape_predictor(predictor)
        self._hog = dlib.get_frontal_face_detector()
        self._cnn = None

    def box(self, rgb: np.ndarray):
        rects = list(self._hog(rgb, 0))
        if not rects:
            if self._cnn is None:
                self._cnn = self._dlib.cnn_face_detection_model_v1(self._cnn_path)
            rects = [d.rect for d in self._cnn(rgb, 1)]
        if not rects:
            return None
        return max(rects, key=lambda r: r.width() * r.height())

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        rect = self.box(rgb)
        if rect is None:
            return None
        shape = self._predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], np.float64)


class FaceDescriptor:
    """dlib's ResNet face-recognition descriptor (128-d; two photos of one person are usually < 0.6 apart)."""

    name = "dlib_face_recognition_resnet_model_v1 (face_recognition_models)"

    def __init__(self) -> None:
        shape, model = _model_file("shape_predictor_5_face_landmarks.dat"), _model_file("dlib_face_recognition_resnet_model_v1.dat")
        import dlib

        self._dlib = dlib
        self._shape = dlib.shape_predictor(shape)
        self._model = dlib.face_recognition_model_v1(model)

    def __call__(self, image: np.ndarray, points68: np.ndarray | None) -> np.ndarray | None:
        """The descriptor of the face at ``points68`` (any 68-point set) in a BGR image; None without one."""
        if points68 is None:
            return None
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        x0, y0 = np.floor(points68[:, :2].min(axis=0)).astype(int)
        x1, y1 = np.ceil(points68[:, :2].max(axis=0)).astype(int)
        shape = self._shape(rgb, self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1)))
        return np.asarray(self._model.compute_face_descriptor(rgb, shape), np.float64)


def eye_centres(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p[EYE_R].mean(axis=0), p[EYE_L].mean(axis=0)


def head_pose(p: np.ndarray, image_size: tuple[int, int] | None = None) -> tuple[float, float, float]:
    """(yaw, pitch, roll) read off 68 points: roll in degrees from the line through the eyes; yaw and pitch
    as the nose tip's offset in the face's own (roll-free) frame, which grows monotonically with the turn.

    The nose tip stands in front of the face plane, so turning moves it across the face: sideways between the
    jaw's ends for yaw (-1..1, 0 = frontal), up and down between the eye line and the mouth corners for pitch
    (nose-to-eyes over mouth-to-eyes, larger = looking down). A full 3-D fit of a generic head (solvePnP on six
    points) was tried first and was too noisy on real clips to correlate (pitch r -0.15 against MediaPipe).
    """
    a, b = eye_centres(p)
    roll = np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))
    ex = (b - a) / (np.linalg.norm(b - a) + 1e-9)
    ey = np.array([-ex[1], ex[0]])
    jaw_l, jaw_r, nose = p[0], p[16], p[NOSE_TIP]
    half = 0.5 * float((jaw_r - jaw_l) @ ex) + 1e-9
    yaw = float((nose - 0.5 * (jaw_l + jaw_r)) @ ex) / half
    eyes = 0.5 * (a + b)
    mouth = 0.5 * (p[48] + p[54])
    pitch = float((nose - eyes) @ ey) / (float((mouth - eyes) @ ey) + 1e-9)
    return yaw, pitch, float(roll)


def _lid_gap(eye: np.ndarray) -> float:
    """Opening of one eye (6 points, corners at 0 and 3) over its width."""
    width = np.linalg.norm(eye[3] - eye[0]) + 1e-9
    return float((np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])) / (2 * width))


@dataclass(frozen=True)
class FaceMeasures:
    """What a viewer reads off a face: pose, where it is, and how open its mouth and eyes are."""

    yaw: float
    pitch: float
    roll: float
    x: float  # face centre / image width
    y: float  # face centre / image height
    mouth: float  # inner-lip gap / inter-ocular distance
    eye_r: float  # image-left eye: lid gap / eye width
    eye_l: float
    eyes: float  # the mean of both (steadier than either)
    brow: float  # brows above the eyes / inter-ocular distance

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, m) for m in MEASURES], np.float64)


def measure(p: np.ndarray, image_size: tuple[int, int]) -> FaceMeasures:
    w, h = image_size
    iod = inter_ocular(p) + 1e-9  # the same eye centres as metrics.landmark_error's scale
    yaw, pitch, roll = head_pose(p)
    centre = p.mean(axis=0)
    mouth = float(np.linalg.norm(p[[61, 62, 63]].mean(0) - p[[67, 66, 65]].mean(0)) / iod)
    er, el = eye_centres(p)
    brow = float((np.linalg.norm(p[BROW_R].mean(0) - er) + np.linalg.norm(p[BROW_L].mean(0) - el)) / (2 * iod))
    er_open, el_open = _lid_gap(p[EYE_R]), _lid_gap(p[EYE_L])
    return FaceMeasures(yaw, pitch, roll, float(centre[0] / w), float(centre[1] / h), mouth,
                        er_open, el_open, 0.5 * (er_open + el_open), brow)


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson's r of two series (NaN pairs left out); None when either does not vary."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


# A blink: the eyes under this share of their usual (median) opening for at least BLINK_FRAMES frames; shown
# by an avatar whose eyes go under SHOWN_SHUT of theirs within a frame of it.
BLINK_SHARE = 0.3
BLINK_FRAMES = 2
SHOWN_SHUT = 0.4


def blinks(eyes: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) frame ranges of the blinks in a series of eye openings (NaN: no face)."""
    eyes = np.asarray(eyes, np.float64)
    usual = np.nanmedian(eyes) if np.isfinite(eyes).any() else np.nan
    shut = np.nan_to_num(eyes, nan=np.inf) < BLINK_SHARE * usual
    out, start = [], None
    for i, s in enumerate(np.append(shut, False)):
        if s and start is None:
            start = i
        elif not s and start is not None:
            if i - start >= BLINK_FRAMES:
                out.append((start, i))
            start = None
    return out


def blink_recall(events: list[tuple[int, int]], eyes: np.ndarray) -> float | None:
    """The share of these blinks in which ``eyes`` (the avatar's openings, same frames) go under SHOWN_SHUT of
    their median within a frame of the blink; None without blinks."""
    if not events:
        return None
    eyes = np.asarray(eyes, np.float64)
    usual = np.nanmedian(eyes)
    hits = [np.nanmin(np.append(eyes[max(a - 1, 0): b + 1], np.inf)) < SHOWN_SHUT * usual for a, b in events]
    return float(np.mean(hits))
