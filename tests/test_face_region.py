"""The region tracker (the tracker's fast path) finds a face, places the landmarks where MediaPipe's FaceMesh
graph places them while the face moves, finds a face again after losing it, and gives way to the graph when it
cannot start."""

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_app.pipeline import face_region
from avatar_app.pipeline.face_region import RegionMesh
from avatar_app.pipeline.tracker import NUM_LANDMARKS, FaceTracker, TrackerSettings

PORTRAITS = Path(__file__).resolve().parents[1] / "assets" / "portraits"


@pytest.fixture(scope="module")
def mona() -> np.ndarray:
    image = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    assert image is not None
    return image


@pytest.fixture(scope="module")
def mona_in_frame(mona) -> np.ndarray:
    """The Mona Lisa's head filling part of a 640 x 480 frame, the way a webcam sees a user."""
    head = cv2.resize(mona[100:620, 110:610], (360, 375))
    frame = np.full((480, 640, 3), 60, dtype=np.uint8)
    frame[50:425, 140:500] = head
    return frame


def moving(frame: np.ndarray, count: int = 24):
    """The frame with the head sliding, turning in the image plane and coming nearer, a little each frame."""
    h, w = frame.shape[:2]
    for k in range(count):
        phase = 2 * np.pi * k / count
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 12 * np.sin(phase), 1.0 + 0.08 * np.sin(2 * phase))
        m[:, 2] += (25 * np.sin(phase), 10 * np.cos(phase))
        yield k / 25, cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def trackers(**settings):
    return (FaceTracker(TrackerSettings(backend="region", smoothing=False, **settings)),
            FaceTracker(TrackerSettings(backend="graph", smoothing=False, **settings)))


def test_region_tracker_finds_the_face_in_a_portrait(mona):
    with FaceTracker(TrackerSettings(backend="region", smoothing=False)) as tracker:
        assert tracker.backend == "region"
        face = tracker.process(mona)
    assert face is not None and face.points.shape == (NUM_LANDMARKS, 3) and face.points.dtype == np.float32
    # The iris centres measured by hand on the painting (as in test_tracker.KNOWN).
    assert np.linalg.norm(face.points[468, :2] - (309, 298)) < 6
    assert np.linalg.norm(face.points[473, :2] - (394, 296)) < 6


def test_region_tracker_matches_the_facemesh_graph_on_a_moving_face(mona_in_frame):
    region, graph = trackers()
    xy, z = [], []
    with region, graph:
        for t, frame in moving(mona_in_frame):
            fast, reference = region.process(frame, t), graph.process(frame, t)
            assert fast is not None and reference is not None
            d = fast.points - reference.points
            xy.append(np.linalg.norm(d[:, :2], axis=1).mean())
            z.append(np.abs(d[:, 2]).mean())
    # The same network on the same regions: a tenth of a pixel or so; z is on the graph's scale (x's pixels).
    assert np.mean(xy) < 0.5 and max(xy) < 1.0
    assert np.mean(z) < 0.5


def test_a_lost_face_is_found_again_where_it_reappears(mona_in_frame):
    blank = np.full_like(mona_in_frame, 128)
    # The face comes back a third of the frame to the left: the old region would not hold it.
    elsewhere = np.full_like(mona_in_frame, 60)
    elsewhere[:, :440] = mona_in_frame[:, 200:]
    with FaceTracker(TrackerSettings(backend="region", smoothing=False)) as tracker:
        first = tracker.process(mona_in_frame, 0.0)
        assert tracker.process(blank, 0.04) is None
        again = tracker.process(elsewhere, 0.08)
    assert first is not None and again is not None
    shift = again.points[:, :2].mean(0) - first.points[:, :2].mean(0)
    assert abs(shift[0] + 200) < 5 and abs(shift[1]) < 5


def test_detector_runs_only_when_there_is_no_face_to_follow(mona_in_frame):
    mesh = RegionMesh(detection=0.5, tracking=0.5)
    try:
        for _, frame in moving(mona_in_frame, 8):
            assert mesh.faces(frame)
        assert mesh.detections == 1
        assert mesh.faces(np.zeros_like(mona_in_frame)) == []
        assert mesh.detections == 2
        assert mesh.faces(mona_in_frame)
        assert mesh.detections == 3
    finally:
        mesh.close()


def test_the_facemesh_graph_takes_over_when_the_region_tracker_cannot_start(monkeypatch, mona_in_frame):
    def broken(**_):
        raise RuntimeError("no FaceLandmarkCpu in this build")

    monkeypatch.setattr(face_region, "RegionMesh", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = FaceTracker(TrackerSettings(backend="region"))
    with tracker:
        assert tracker.backend == "graph"
        assert tracker.process(mona_in_frame, 0.0) is not None
    assert any("FaceMesh graph" in str(w.message) for w in caught)


def test_portraits_and_unknown_backends():
    with FaceTracker(TrackerSettings(static_images=True)) as tracker:
        assert tracker.backend == "graph"  # a still image has no previous frame to follow
    with pytest.raises(ValueError, match="backend"):
        TrackerSettings(backend="tflite")
