"""The inside of an opened mouth from each source: the driver's own ("mine") carried into the avatar's lips in the
portrait's colours, the mouth model ("neural"), and the painted fallback; all laid between the lips without a
drawn edge."""

import cv2
import numpy as np
import pytest

from avatar_app.commands.cli import main
from avatar_app.face import landmarks as L
from avatar_app.pipeline.avatar import Avatar
from avatar_app.pipeline.render.base import RenderSettings
from avatar_app.pipeline.render.mesh import MeshRenderer
from avatar_app.pipeline.render.mouth_sources import DriverView
from tests.conftest import open_mouth

SIZE = 512


def _inner_polygon(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points[L.LIP_INNER_UPPER], points[L.LIP_INNER_LOWER][1:-1][::-1]])[:, :2]


def _mask(shape, poly, erode=0) -> np.ndarray:
    m = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return cv2.erode(m, np.ones((2 * erode + 1,) * 2, np.uint8)) > 0 if erode else m > 0


@pytest.fixture(scope="module")
def driver(mona_avatar) -> DriverView:
    """The Mona Lisa as the driver, mouth wide open, its inside painted upside down from a real mouth's: dark red at
    the top, a bright band at the bottom (a painted mouth has its teeth at the top)."""
    points = open_mouth(mona_avatar.landmarks, 0.6)
    image = mona_avatar.image.copy()
    poly = _inner_polygon(points)
    inside = _mask(image.shape, poly)
    ys = np.flatnonzero(inside.any(1))
    mid = (ys[0] + ys[-1]) / 2
    rows = np.arange(image.shape[0])[:, None]
    image[inside & (rows < mid)] = (20, 20, 120)  # BGR: dark red
    image[inside & (rows >= mid)] = (235, 240, 245)
    return DriverView(image, points)


def _render(avatar, mouth, target, driver, frames=3):
    r = MeshRenderer()
    r.prepare(avatar, RenderSettings(size=SIZE, mouth=mouth))
    for _ in range(frames):  # the mouth opens at a bounded rate
        out = r.render(target, driver)
    scale = np.array(r.output_size) / avatar.size
    return out, _inner_polygon(target) * scale, r


def _halves(out, poly):
    inside = _mask(out.shape, poly, erode=2)
    ys = np.flatnonzero(inside.any(1))
    mid = (ys[0] + ys[-1]) / 2
    rows = np.arange(out.shape[0])[:, None]
    grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(float)
    return grey[inside & (rows < mid)].mean(), grey[inside & (rows >= mid)].mean()


def test_my_mouth_shows_the_drivers_own_mouth_between_the_avatars_lips(mona_avatar, driver):
    target = open_mouth(mona_avatar.landmarks, 0.5)
    mine, poly, r = _render(mona_avatar, "mine", target, driver)
    assert r.mouth_source == "mine"
    top, bottom = _halves(mine, poly)
    assert bottom > top + 60, (top, bottom)  # the driver's bright band lies at the bottom, where it was
    painted, _, _ = _render(mona_avatar, "painted", target, driver)
    p_top, p_bottom = _halves(painted, poly)
    assert p_top > p_bottom  # the painted mouth (teeth at the top) is what the driver's replaced
    # Without the driver's picture (no face this frame) the painted mouth stands in.
    fallback, _, _ = _render(mona_avatar, "mine", target, None)
    assert np.array_equal(fallback, painted)


def test_my_mouth_takes_the_portraits_colours(mona_avatar, driver):
    target = open_mouth(mona_avatar.landmarks, 0.5)
    bright, poly, _ = _render(mona_avatar, "mine", target, driver)
    grey = cv2.cvtColor(cv2.cvtColor(mona_avatar.image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    dim = (mona_avatar.image.astype(np.float32) * 0.5).astype(np.uint8)
    inside = _mask(bright.shape, poly, erode=3)
    lab = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2LAB).astype(float)[inside]  # noqa: E731
    # A black-and-white portrait gets a grey mouth, though the driver's is red.
    bw, _, _ = _render(Avatar(**{**mona_avatar.__dict__, "image": grey}), "mine", target, driver)
    chroma = lambda im: np.hypot(lab(im)[:, 1] - 128, lab(im)[:, 2] - 128).mean()  # noqa: E731
    assert chroma(bw) < 4 < chroma(bright), (chroma(bw), chroma(bright))
    # A darker portrait gets a darker mouth (brightness relative to the skin around it).
    dark, _, _ = _render(Avatar(**{**mona_avatar.__dict__, "image": dim}), "mine", target, driver)
    assert lab(dark)[:, 0].mean() < 0.8 * lab(bright)[:, 0].mean()


@pytest.mark.parametrize("mouth", ["painted", "mine"])
def test_the_inside_meets_the_lips_without_a_drawn_edge(mona_avatar, driver, mouth):
    """Down the middle of the mouth, from the upper lip into the opening, the picture changes over a band of
    pixels, not in one step (a polygon pasted on reads as a sticker with an outline). At 1024 px, about the
    mouth's size in a 1280x720 call."""
    target = open_mouth(mona_avatar.landmarks, 0.5)
    r = MeshRenderer()
    r.prepare(mona_avatar, RenderSettings(size=1024, mouth=mouth))
    for _ in range(3):
        out = r.render(target, driver)
    grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY).astype(float)
    scale = np.array(r.output_size) / mona_avatar.size
    top = target[L.LIP_INNER_UPPER[5], :2] * scale
    width = np.linalg.norm(np.subtract(*target[list(L.MOUTH_CORNERS), :2]) * scale)
    x, y = int(round(top[0])), int(round(top[1]))
    band = int(round(0.06 * width))
    column = grey[y - band: y + 2 * band, x - 1: x + 2].mean(1)
    lip, inside = column[: band // 2].mean(), column[-band // 2:].mean()
    contrast = abs(lip - inside)
    assert contrast > 20, column.round()  # lips and the inside differ here...
    assert np.abs(np.diff(column)).max() < 0.6 * contrast, (column.round(), contrast)  # ...and meet over a band


def test_the_neural_mouth_draws_from_the_lips_and_the_drivers_mouth(mona_avatar, driver):
    """The shipped mouth model (onnxruntime): it draws the inside (not the painted one, not a flat colour) and
    what it draws depends on the driver's mouth, so that input cannot be thrown away."""
    pytest.importorskip("onnxruntime")
    target = open_mouth(mona_avatar.landmarks, 0.5)
    neural, poly, r = _render(mona_avatar, "neural", target, driver)
    assert r.mouth_source == "neural"
    painted, _, _ = _render(mona_avatar, "painted", target, driver)
    inside = _mask(neural.shape, poly, erode=3)
    diff = np.abs(neural.astype(float) - painted.astype(float))[inside].mean()
    assert diff > 10, diff
    grey = cv2.cvtColor(neural, cv2.COLOR_BGR2GRAY).astype(float)[inside]
    assert grey.std() > 5  # not a flat colour
    dark = DriverView(np.zeros_like(driver.image) + 40, driver.points)
    other, _, _ = _render(mona_avatar, "neural", target, dark)
    assert np.abs(other.astype(float) - neural.astype(float))[inside].mean() > 3


def test_a_face_model_given_as_the_mouth_model_is_refused_in_one_line(capsys, tmp_path):
    from avatar_app.pipeline.render.neural import default_model

    pytest.importorskip("onnxruntime")
    out = tmp_path / "out.mp4"
    code = main(["render", "--portrait", "assets/portraits/mona_lisa.jpg", "--driver", "demo", "--out", str(out),
                 "--mouth", "neural", "--mouth-model", str(default_model())])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("avatar-app:")]
    assert code == 2 and len(err) == 1 and "not a mouth model" in err[0], err
    assert not out.exists()
