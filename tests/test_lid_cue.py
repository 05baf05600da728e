"""Eyes squeezed shut read shut: the eye's own pixels close lids that the landmarks leave part open (lid_cue.py),
and never close an eye the landmarks see open."""

import cv2
import numpy as np
import pytest

from avatar_app.face import landmarks as L
from avatar_app.pipeline.demo import close_eyes
from avatar_app.pipeline.lid_cue import MIN_HISTORY, OPEN_SAMPLING, LidCue
from avatar_app.pipeline.lid_cue import eye_opening as opening
from avatar_app.pipeline.tracker import FaceTracker, TrackerSettings
from tests.conftest import shared_media


def lid_skin(image, points, eyes=(0, 1)):
    """The picture with each eye's opening painted over in the skin colour under it (a shut eye's pixels)."""
    out = image.copy()
    for e in eyes:
        poly = np.concatenate([points[L.EYE_UPPER[e], :2], points[L.EYE_LOWER[e], :2][::-1]])
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        mask = cv2.dilate(mask, np.ones((7, 7), np.uint8))
        below = points[L.EYE_LOWER[e], :2].mean(0) + [0, 0.15 * L.inter_ocular(points)]
        x, y = np.round(below).astype(int)
        out[mask > 0] = np.median(image[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3), 0)
    return out


@pytest.fixture
def primed(girl_avatar):
    """A LidCue that has seen the Girl's face open for a while, with her picture and landmarks."""
    image, points = np.ascontiguousarray(girl_avatar.image), girl_avatar.landmarks.astype(np.float64)
    cue = LidCue()
    for _ in range(MIN_HISTORY * OPEN_SAMPLING + 2):
        assert np.array_equal(cue(image, points), points)  # an open face is left as the landmarks say
    return cue, image, points


def test_lids_the_landmarks_leave_part_open_close_when_the_pixels_say_shut(primed):
    cue, image, points = primed
    narrowed = close_eyes(points, 0.35)  # MediaPipe on a squeezed laugh: 65 % open
    out = cue(lid_skin(image, points), narrowed)
    for e in (0, 1):
        assert opening(out, e) < 0.25 * opening(points, e), e
    assert (cue.closed_by_pixels > 0.5).all()


def test_an_eye_the_landmarks_see_open_is_never_closed_by_its_pixels(primed):
    """A glint on glasses or hair over the iris lowers the contrast; the landmarks reading both eyes open decide."""
    cue, image, points = primed
    out = cue(lid_skin(image, points), points)
    assert np.array_equal(out, points)


def test_a_squint_with_the_iris_still_showing_stays_a_squint(primed):
    cue, image, points = primed
    narrowed = close_eyes(points, 0.35)
    out = cue(image, narrowed)  # the iris is still there: the landmarks' narrowing stands
    for e in (0, 1):
        assert opening(out, e) == pytest.approx(opening(narrowed, e), rel=0.02)


def test_one_shut_eye_closes_only_that_eye(primed):
    cue, image, points = primed
    wink = points.copy()
    shut = close_eyes(points, 0.4)
    wink[L.EYE_UPPER[0]], wink[L.EYE_LOWER[0]] = shut[L.EYE_UPPER[0]], shut[L.EYE_LOWER[0]]
    out = cue(lid_skin(image, points, eyes=(0,)), wink)
    assert opening(out, 0) < 0.3 * opening(points, 0)
    assert opening(out, 1) == pytest.approx(opening(points, 1), rel=1e-6)


def test_a_laugh_with_both_eyes_squeezed_shut_reads_shut_on_both(tmp_path):
    """The vox clip's laugh (frames 150-153: both eyes shut): MediaPipe alone reads one eye 80-90 % open."""
    from avatar_app.pipeline.sources import SourceSettings, VideoFileSource

    path = shared_media("driving_man_talking_vox.mp4")
    readings = {}
    for cue in (False, True):
        tracker = FaceTracker(TrackerSettings(lid_cue=cue))
        series = []
        with VideoFileSource(SourceSettings(str(path))) as source:
            for frame in source:
                face = tracker.process(frame.image, frame.index / source.fps)
                series.append(None if face is None else [opening(face.points, e) for e in (0, 1)])
                if frame.index >= 155:
                    break
        tracker.close()
        usual = np.median([s for s in series if s is not None], axis=0)
        readings[cue] = np.array([series[i] for i in range(150, 154)]) / usual
    assert readings[False].max() > 0.7  # the tracker's landmarks alone: an eye left open
    assert readings[True].max(axis=0).max() < 0.45, readings[True]  # with the pixels: both shut or nearly
