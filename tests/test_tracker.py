"""The tracker finds the right face, places landmarks where the face is, and holds a still face still."""

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_app.errors import InputFileError, NoFaceError
from avatar_app.pipeline.tracker import (
    NUM_LANDMARKS,
    FaceLandmarks,
    FaceTracker,
    TrackerSettings,
    detect_portrait,
)

REPO = Path(__file__).resolve().parents[1]
PORTRAITS = REPO / "assets" / "portraits"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
DRIVING_VIDEO = MEDIA / "driving_man_talking_vox.mp4"

# Eye contours of MediaPipe's mesh; the iris centres 468 and 473 must lie inside them.
EYE_ON_IMAGE_LEFT = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
EYE_ON_IMAGE_RIGHT = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]

# Measured once by hand-checked runs: face box (x0, y0, x1, y1) and the two iris centres, in pixels.
KNOWN = {
    "mona_lisa.jpg": ((270, 221, 473, 455), (309, 298), (394, 296)),
    "girl_with_a_pearl_earring.jpg": ((342, 390, 668, 765), (385, 490), (507, 514)),
}


def load(name: str) -> np.ndarray:
    image = cv2.imread(str(PORTRAITS / name))
    assert image is not None, name
    return image


@pytest.fixture(scope="module")
def mona() -> np.ndarray:
    return load("mona_lisa.jpg")


@pytest.fixture(scope="module")
def mona_in_frame(mona) -> np.ndarray:
    """The Mona Lisa's head filling a 640 x 480 frame, the way a webcam sees a user."""
    head = cv2.resize(mona[100:620, 110:610], (480, 500))[10:490]
    frame = np.full((480, 640, 3), 60, dtype=np.uint8)
    frame[:, 80:560] = head
    return frame


def noise_image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)


def blank_image() -> np.ndarray:
    return np.full((480, 640, 3), 128, dtype=np.uint8)


def inside(point: np.ndarray, contour: np.ndarray) -> bool:
    return cv2.pointPolygonTest(contour[:, :2].astype(np.float32), (float(point[0]), float(point[1])), False) >= 0


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_painted_portrait_gives_landmarks_on_the_face(name):
    image = load(name)
    h, w = image.shape[:2]
    face = detect_portrait(image, name)
    box, iris_left, iris_right = KNOWN[name]

    assert face.points.shape == (NUM_LANDMARKS, 3) and face.points.dtype == np.float32
    assert face.image_size == (w, h) and face.faces_found == 1
    assert (face.points[:, 0] >= 0).all() and (face.points[:, 0] < w).all()
    assert (face.points[:, 1] >= 0).all() and (face.points[:, 1] < h).all()
    np.testing.assert_allclose(face.bbox(), box, atol=0.08 * w)
    np.testing.assert_allclose(face.points[468, :2], iris_left, atol=0.03 * w)
    np.testing.assert_allclose(face.points[473, :2], iris_right, atol=0.03 * w)
    assert inside(face.points[468], face.points[EYE_ON_IMAGE_LEFT])
    assert inside(face.points[473], face.points[EYE_ON_IMAGE_RIGHT])
    # z is in x's pixel scale: the face is about as deep as it is wide, not 1000x more or less.
    depth = np.ptp(face.points[:, 2])
    assert 0.2 * (box[2] - box[0]) < depth < 2.0 * (box[2] - box[0])


def test_landmark_helpers(mona):
    face = detect_portrait(mona, "mona_lisa.jpg")
    x0, y0, x1, y1 = face.bbox()
    assert x0 < face.points[1, 0] < x1 and y0 < face.points[1, 1] < y1  # the nose tip is inside the box
    assert 0.3 * (x1 - x0) < face.inter_ocular() < 0.6 * (x1 - x0)
    half = face.scaled(0.5)
    assert half.image_size == (360, 640)
    np.testing.assert_allclose(half.points, face.points * 0.5, rtol=1e-6)
    assert half.inter_ocular() == pytest.approx(face.inter_ocular() / 2, rel=1e-5)
    assert half.points is not face.points


@pytest.mark.parametrize("make", [noise_image, blank_image], ids=["noise", "blank"])
def test_no_face_is_a_one_line_error_naming_the_file(make):
    with pytest.raises(NoFaceError) as err:
        detect_portrait(make(), "holiday.jpg")
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "holiday.jpg: no face found in the portrait - use one where a face is clearly visible, frontal or three-quarter"
    )


@pytest.mark.parametrize("static", [False, True], ids=["stream", "images"])
def test_tracker_returns_none_without_a_face(static):
    with FaceTracker(TrackerSettings(static_images=static)) as tracker:
        assert tracker.process(noise_image(), 0.0) is None
        assert tracker.process(blank_image(), 0.04) is None


def test_unreadable_image_is_an_input_file_error():
    with pytest.raises(InputFileError, match="^broken.png: "):
        detect_portrait(None, "broken.png")


def test_largest_face_wins(mona):
    head = mona[150:530, 190:550]
    big = cv2.resize(head, None, fx=1.3, fy=1.3)
    small = cv2.resize(head, None, fx=0.6, fy=0.6)
    canvas = np.full((600, 1000, 3), 90, dtype=np.uint8)
    canvas[50 : 50 + big.shape[0], 30 : 30 + big.shape[1]] = big
    canvas[200 : 200 + small.shape[0], 650 : 650 + small.shape[1]] = small
    big_box = (30, 50, 30 + big.shape[1], 50 + big.shape[0])

    with pytest.warns(UserWarning, match=r"^group.jpg: 2 faces found, using the largest$"):
        face = detect_portrait(canvas, "group.jpg")
    assert face.faces_found == 2
    assert (face.points[:, 0] > big_box[0]).all() and (face.points[:, 0] < big_box[2]).all()
    assert (face.points[:, 1] > big_box[1]).all() and (face.points[:, 1] < big_box[3]).all()

    # The small face is on the right: mirrored, the big one is, and the tracker picks it there too.
    with FaceTracker(TrackerSettings(static_images=True)) as tracker:
        mirrored = tracker.process(np.ascontiguousarray(canvas[:, ::-1]))
    assert mirrored.faces_found == 2
    assert mirrored.points[:, 0].min() > 1000 - big_box[2]


def test_a_small_face_in_a_large_picture_is_found(mona):
    # Too small for the whole-picture pass (the detector sees the picture at 128 px); found in a tile.
    head = cv2.resize(mona[150:530, 190:550], (140, 148))
    canvas = np.full((1500, 2000, 3), 90, dtype=np.uint8)
    canvas[900:1048, 1400:1540] = head
    face = detect_portrait(canvas, "crowd.jpg")
    x0, y0, x1, y1 = face.bbox()
    assert 1400 <= x0 < x1 <= 1540 and 900 <= y0 < y1 <= 1048
    assert face.inter_ocular() > 20


def test_one_face_gives_no_warning(mona):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detect_portrait(mona, "mona_lisa.jpg")


def jittered(frame: np.ndarray, n: int) -> list[np.ndarray]:
    """The same frame n times, shifted by up to a pixel and with sensor-like noise: a still user."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        shifted = np.roll(frame, (int(rng.integers(-1, 2)), int(rng.integers(-1, 2))), axis=(0, 1))
        noisy = shifted + rng.normal(0.0, 2.0, size=frame.shape)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def track(frames: list[np.ndarray], settings: TrackerSettings, fps: float = 30.0) -> list[FaceLandmarks | None]:
    with FaceTracker(settings) as tracker:
        return [tracker.process(frame, i / fps) for i, frame in enumerate(frames)]


def test_a_still_face_stays_still(mona_in_frame):
    frames = jittered(mona_in_frame, 30)
    raw = np.array([f.points for f in track(frames, TrackerSettings(smoothing=False))])
    smooth = np.array([f.points for f in track(frames, TrackerSettings(smoothing=True))])
    raw_jitter = raw[:, :, :2].std(axis=0).mean()
    smooth_jitter = smooth[:, :, :2].std(axis=0).mean()
    assert smooth_jitter < 0.6 * raw_jitter
    # Smoothing steadies the face; it does not move it.
    assert np.abs(smooth.mean(axis=0) - raw.mean(axis=0))[:, :2].mean() < 0.5


def test_a_face_found_again_is_not_dragged_from_where_it_was(mona_in_frame):
    moved = np.roll(mona_in_frame, 60, axis=1)
    frames = [mona_in_frame] * 5 + [blank_image()] + [moved]
    raw = track(frames, TrackerSettings(smoothing=False))
    smooth = track(frames, TrackerSettings(smoothing=True))
    assert smooth[5] is None
    np.testing.assert_allclose(smooth[6].points, raw[6].points, atol=1e-3)


def test_a_face_that_jumps_across_the_frame_is_not_dragged(mona_in_frame):
    # Another face becoming the largest looks like this: the landmarks leap by more than half a face.
    wide = np.full((480, 960, 3), 60, dtype=np.uint8)
    wide[120:360, :320] = cv2.resize(mona_in_frame, (320, 240))
    frames = [wide] * 5 + [np.roll(wide, 600, axis=1)]
    raw = track(frames, TrackerSettings(smoothing=False))
    smooth = track(frames, TrackerSettings(smoothing=True))
    assert raw[5].bbox()[0] > raw[4].bbox()[2]
    np.testing.assert_allclose(smooth[5].points, raw[5].points, atol=1e-3)


def test_frame_time_is_optional(mona_in_frame):
    with FaceTracker() as tracker:
        assert tracker.process(mona_in_frame) is not None
        assert tracker.process(mona_in_frame) is not None


def test_settings_refuse_nonsense():
    for kwargs in (
        {"max_faces": 0},
        {"min_detection_confidence": 1.5},
        {"min_tracking_confidence": -0.1},
        {"min_cutoff": 0.0},
        {"beta": -1.0},
    ):
        with pytest.raises(ValueError):
            TrackerSettings(**kwargs)


def test_closed_tracker_refuses_frames(mona_in_frame):
    tracker = FaceTracker()
    tracker.close()
    tracker.close()
    with pytest.raises(RuntimeError):
        tracker.process(mona_in_frame)


def read_frames(path: Path, n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < n:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_talking_video_is_tracked_smoothly():
    if not DRIVING_VIDEO.is_file():
        pytest.skip(f"shared developer media not present: {DRIVING_VIDEO}")
    frames = read_frames(DRIVING_VIDEO, 40)
    assert len(frames) == 40
    raw = track(frames, TrackerSettings(smoothing=False), fps=25.0)
    smooth = track(frames, TrackerSettings(smoothing=True), fps=25.0)
    assert all(f is not None for f in raw) and all(f is not None for f in smooth)

    iod = float(np.median([f.inter_ocular() for f in smooth]))
    assert 0.1 * frames[0].shape[1] < iod < 0.5 * frames[0].shape[1]
    raw_xy = np.array([f.points[:, :2] for f in raw])
    smooth_xy = np.array([f.points[:, :2] for f in smooth])
    # The head moves a little per frame, never jumps.
    centre_steps = np.linalg.norm(np.diff(smooth_xy.mean(axis=1), axis=0), axis=1)
    assert centre_steps.max() < 0.2 * iod
    # Less frame-to-frame shake than the raw landmarks, yet no visible lag behind them.
    raw_shake = np.linalg.norm(np.diff(raw_xy, n=2, axis=0), axis=2).mean()
    smooth_shake = np.linalg.norm(np.diff(smooth_xy, n=2, axis=0), axis=2).mean()
    assert smooth_shake < 0.85 * raw_shake
    assert np.linalg.norm(smooth_xy - raw_xy, axis=2).mean() < 0.05 * iod


def test_mediapipe_start_up_logs_stay_off_stderr():
    # A fresh interpreter: MediaPipe prints its start-up lines once per process.
    script = textwrap.dedent(
        f"""
        import cv2, numpy as np
        from avatar_app.errors import NoFaceError
        from avatar_app.pipeline.tracker import FaceTracker, detect_portrait
        image = cv2.imread({str(PORTRAITS / "mona_lisa.jpg")!r})
        detect_portrait(image)
        with FaceTracker() as tracker:
            for i in range(3):
                tracker.process(image, i / 30)
        try:
            detect_portrait(np.zeros((100, 100, 3), np.uint8), "blank.png")
        except NoFaceError as err:
            print(err)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr == ""
    assert done.stdout.strip().startswith("blank.png: no face found")


def test_smoothing_keeps_a_100_ms_blink(mona_avatar):
    """A blink shut for one frame at 30 fps (100 ms from open to open) still closes the smoothed lids most of the
    way, while the head's motion keeps the face's own calm filter."""
    from avatar_app.face import landmarks as L
    from avatar_app.pipeline.demo import close_eyes

    face = mona_avatar.landmarks.astype(np.float32)
    tracker = FaceTracker(TrackerSettings())
    try:
        width = 640
        series = [face] * 10 + [close_eyes(face, 0.6), close_eyes(face, 1.0), close_eyes(face, 0.5)] + [face] * 5
        out = [tracker._smooth(np.asarray(p, np.float32).copy(), width, i / 30) for i, p in enumerate(series)]
    finally:
        tracker.close()

    def gap(p):
        return float(np.mean([np.linalg.norm(p[L.EYE_LOWER[e][1:-1], :2] - p[L.EYE_UPPER[e][1:-1], :2], axis=1).mean()
                              for e in (0, 1)]))

    open_gap = gap(face)
    assert min(gap(p) for p in out[10:14]) < 0.3 * open_gap
    assert gap(out[-1]) > 0.8 * open_gap  # and it opens again
