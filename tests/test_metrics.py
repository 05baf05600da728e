"""The quality metrics score identical frames as perfect, known differences as known numbers, and the 68-point
layout built from the mesh lands where a face's parts are."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from avatar_app.face.landmarks import to_dlib68
from avatar_app.measure.metrics import inter_ocular, l1, landmark_error, psnr, ssim
from avatar_app.pipeline.tracker import detect_portrait

PORTRAITS = Path(__file__).resolve().parents[1] / "assets" / "portraits"


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A textured image with structure at several scales (the Mona Lisa's face, 256 x 256)."""
    image = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    assert image is not None
    return cv2.resize(image[180:500, 220:540], (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def mona_points() -> np.ndarray:
    image = cv2.imread(str(PORTRAITS / "mona_lisa.jpg"))
    return detect_portrait(image, name="mona_lisa.jpg").points


def test_identical_images_score_perfect(picture):
    assert ssim(picture, picture) == pytest.approx(1.0, abs=1e-12)
    assert psnr(picture, picture) == math.inf
    assert l1(picture, picture) == 0.0


def test_constant_offset_gives_known_l1_and_psnr():
    a = np.full((64, 80, 3), 100, np.uint8)
    b = a + np.uint8(10)
    assert l1(a, b) == pytest.approx(10 / 255)
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / 10))
    # A flat brightness change leaves structure and contrast alone: SSIM only loses the luminance term.
    mu_a, mu_b, c1 = 100.0, 110.0, (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1))


def test_ssim_falls_as_noise_grows(picture):
    rng = np.random.default_rng(0)
    scores = []
    for sigma in (2, 10, 30):
        noise = rng.normal(0, sigma, picture.shape)
        noisy = np.clip(picture + noise, 0, 255).astype(np.uint8)
        scores.append(ssim(picture, noisy))
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert scores[2] < 0.7


def test_ssim_is_symmetric_and_reads_luminance(picture):
    other = cv2.GaussianBlur(picture, (7, 7), 2)
    assert ssim(picture, other) == pytest.approx(ssim(other, picture))
    grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
    assert ssim(picture, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)) > 0.99


def test_metrics_refuse_mismatched_images(picture):
    with pytest.raises(ValueError):
        ssim(picture, picture[:100])
    with pytest.raises(ValueError):
        l1(picture, picture.astype(np.float32))


def test_landmark_error_is_zero_for_identical_points(mona_points):
    assert landmark_error(mona_points, mona_points) == 0.0
    dlib = to_dlib68(mona_points)
    assert landmark_error(dlib, dlib) == 0.0


@pytest.mark.parametrize("layout", ["mesh478", "dlib68"])
def test_landmark_error_is_in_units_of_the_inter_ocular_distance(mona_points, layout):
    ref = mona_points if layout == "mesh478" else to_dlib68(mona_points)
    d = inter_ocular(ref)
    direction = np.array([3.0, 4.0]) / 5.0
    pred = ref.astype(np.float64).copy()
    pred[:, :2] += 0.1 * d * direction
    assert landmark_error(pred, ref) == pytest.approx(0.1, rel=1e-9)


def test_inter_ocular_uses_iris_centres_on_the_mesh(mona_points):
    expected = np.linalg.norm(mona_points[468, :2] - mona_points[473, :2])
    assert inter_ocular(mona_points) == pytest.approx(expected)
    with pytest.raises(ValueError):
        inter_ocular(mona_points[:100])


def test_dlib68_lands_on_the_face(mona_points):
    dlib = to_dlib68(mona_points)
    assert dlib.shape == (68, 3)
    x0, y0 = mona_points[:, :2].min(axis=0)
    x1, y1 = mona_points[:, :2].max(axis=0)
    for group in (slice(36, 42), slice(42, 48)):
        eye = dlib[group, :2]
        assert (eye[:, 0] > x0).all() and (eye[:, 0] < x1).all()
        assert (eye[:, 1] > y0).all() and (eye[:, 1] < y1).all()
    # The right eye (36-41) is on the image's left; the jaw runs from the image's left, under the chin, to
    # its right. Its ends rise almost vertically (and this is a three-quarter view), so x alone need not grow
    # point by point: the jaw is ordered when its angle around the face's centre turns one way throughout.
    assert dlib[36:42, 0].mean() < dlib[42:48, 0].mean()
    jaw = dlib[0:17, :2]
    assert jaw[0, 0] < jaw[8, 0] < jaw[16, 0]
    centre = dlib[:, :2].mean(axis=0)
    angle = np.unwrap(np.arctan2(jaw[:, 1] - centre[1], jaw[:, 0] - centre[0]))
    assert (np.diff(angle) < 0).all()  # y points down: left -> bottom -> right is clockwise on screen
    # Eyes above the nose tip, the nose tip above the mouth, the chin lowest of all.
    assert dlib[36:48, 1].mean() < dlib[30, 1] < dlib[48:68, 1].mean() < dlib[8, 1]


def test_dlib68_averages_paired_indices():
    points = np.zeros((478, 2))
    points[132] = (10, 20)
    points[58] = (30, 40)
    points[172] = (50, 60)
    dlib = to_dlib68(points)
    assert dlib[3].tolist() == [20, 30]  # dlib point 4 = mean of 132 and 58
    assert dlib[4].tolist() == [40, 50]  # dlib point 5 = mean of 58 and 172
