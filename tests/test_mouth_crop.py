"""The mouth crop (face/crop.py mouth_affine): turned, scaled and centred by the lips, so the mouth sits in the same
place of the crop however the face is turned, scaled or moved in the picture - from known landmarks, and from a
clip that prepare-data --task mouth tracks with MediaPipe."""

import json

import cv2
import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.face.crop import MOUTH_CROP_SCALE, mouth_affine, mouth_crop, to_affine_crop
from avatar_app.face.landmarks import LIP_OUTER_UPPER
from tests.conftest import PORTRAITS, REPO

CORNERS = (LIP_OUTER_UPPER[0], LIP_OUTER_UPPER[-1])  # MediaPipe 61 and 291
SIZE = 64


def _similarity(angle_deg: float, scale: float, shift: tuple[float, float], centre: tuple[float, float]) -> np.ndarray:
    return cv2.getRotationMatrix2D(centre, angle_deg, scale) + np.array([[0, 0, shift[0]], [0, 0, shift[1]]])


def _moved(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    out = points.astype(np.float64).copy()
    out[:, :2] = points[:, :2] @ m[:, :2].T + m[:, 2]
    return out


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """478 landmarks of a real face (the Mona Lisa as the vox clip drives her; tests/data/README.md)."""
    return np.load(REPO / "tests" / "data" / "vox_mona_targets.npy", allow_pickle=False)[0].astype(np.float64)


@pytest.mark.parametrize("angle, scale, shift", [(0, 1.0, (0, 0)), (25, 0.6, (40, -30)), (-40, 1.7, (-90, 15)),
                                                 (180, 0.9, (5, 5))])
def test_mouth_corners_land_at_the_same_crop_pixels_however_the_face_is_turned(face, angle, scale, shift):
    m = _similarity(angle, scale, shift, (300.0, 350.0))
    points = _moved(face, m)
    crop_points = to_affine_crop(points, mouth_affine(points, SIZE))
    left, right = crop_points[list(CORNERS), :2]
    half = SIZE / (2 * MOUTH_CROP_SCALE)
    # The corners lie on one row, size/scale apart, symmetric about the middle column.
    assert abs(left[1] - right[1]) < 1e-3
    assert left[0] == pytest.approx(SIZE / 2 - half, abs=1e-3) and right[0] == pytest.approx(SIZE / 2 + half, abs=1e-3)
    # And every landmark lands where the unmoved face's does (z scaled with x too).
    still = to_affine_crop(face, mouth_affine(face, SIZE))
    assert np.abs(crop_points[:, :2] - still[:, :2]).max() < 1e-3


def test_the_crop_of_a_turned_picture_is_the_crop_of_the_picture(face):
    rng = np.random.default_rng(0)
    picture = cv2.GaussianBlur(rng.integers(0, 256, (700, 600, 3), dtype=np.uint8), (0, 0), 3)
    m = _similarity(30, 0.8, (20, -10), (300.0, 350.0))
    turned = cv2.warpAffine(picture, m, (600, 700), flags=cv2.INTER_CUBIC)
    a = mouth_crop(picture, mouth_affine(face, SIZE), SIZE).astype(float)
    b = mouth_crop(turned, mouth_affine(_moved(face, m), SIZE), SIZE).astype(float)
    other = mouth_crop(picture, mouth_affine(_moved(face, _similarity(0, 1, (25, 0), (0, 0))), SIZE), SIZE).astype(float)
    assert np.abs(a - b).mean() < 0.25 * np.abs(a - other).mean()  # the same pixels, not just similar statistics


def test_prepare_mouth_data_crops_every_tracked_frame_by_its_lips(tmp_path):
    """A portrait turned and scaled frame by frame: MediaPipe tracks it, and every crop puts the mouth corners on
    one row at the same columns and shows the same mouth."""
    from avatar_app.pipeline.sinks import VideoFileSink

    portrait = cv2.imread(str(PORTRAITS / "girl_with_a_pearl_earring.jpg"))
    h, w = portrait.shape[:2]
    videos = tmp_path / "videos"
    videos.mkdir()
    # Turning and shrinking smoothly, as a head in a video does (the tracker follows a face from frame to frame).
    t = np.linspace(0, 1, 16)
    poses = list(zip(25 * np.sin(2 * np.pi * t), 1.0 - 0.3 * t))
    with VideoFileSink(videos / "turning.mp4", fps=25, size=(w, h)) as sink:
        for angle, scale in poses:
            sink.write(cv2.warpAffine(portrait, cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale), (w, h),
                                      borderMode=cv2.BORDER_REPLICATE))
    out = tmp_path / "mouth"
    assert main(["prepare-data", str(videos), "--out", str(out), "--task", "mouth", "--min-frames", "12",
                 "--format", "png"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["task"] == "mouth" and index["size"] == SIZE and index["crop_scale"] == MOUTH_CROP_SCALE
    clip = out / "clips" / "turning"
    points = np.load(clip / "landmarks.npy", allow_pickle=False)
    assert points.shape == (index["clips"][0]["frames"], 478, 3) and len(points) >= 12
    left, right = points[:, CORNERS[0], :2], points[:, CORNERS[1], :2]
    half = SIZE / (2 * MOUTH_CROP_SCALE)
    assert np.abs(left[:, 1] - right[:, 1]).max() < 1e-2
    assert np.abs(left[:, 0] - (SIZE / 2 - half)).max() < 0.5 and np.abs(right[:, 0] - (SIZE / 2 + half)).max() < 0.5
    crops = np.stack([cv2.imread(str(p)).astype(float) for p in sorted((clip / "frames").glob("*.png"))])
    assert crops.shape == (len(points), SIZE, SIZE, 3)
    # The same mouth at the same place in every crop: phase correlation finds each crop within 3 px (5 % of the side)
    # of the first. A crop that did not follow the lips would be off by tens of pixels as the head turns 25 degrees
    # and shrinks by 30 %; the tracker's own wobble on a painting is up to ~2 px. (Pixel differences are not the
    # measure: the shrinking and the codec blur the crops without moving them.)
    gray = [cv2.cvtColor(c.astype(np.float32), cv2.COLOR_BGR2GRAY) for c in crops]
    window = cv2.createHanningWindow((SIZE, SIZE), cv2.CV_32F)
    shifts = np.array([cv2.phaseCorrelate(gray[0], g, window)[0] for g in gray[1:]])
    assert np.hypot(*shifts.T).max() < 3.0, shifts
    # The affine that cut each crop is kept, so a renderer can paste a mouth back.
    assert np.load(clip / "affines.npy", allow_pickle=False).shape == (len(points), 2, 3)
