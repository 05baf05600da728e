"""The measures of the call's picture that need no face tracker: a seam (a hard edge the portrait never had) and
a background that moves where the real scene stood still."""

import cv2
import numpy as np
import pytest

from avatar_app.measure.picture import false_edges, still_region_error


def _scene(seed=0, size=(360, 640)) -> np.ndarray:
    """A painting-like picture: soft blobs of colour with some texture."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    grain = cv2.GaussianBlur(rng.normal(0, 12, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    return np.clip(base.astype(np.float32) + grain, 0, 255).astype(np.uint8)


def _warp(image, dx, dy):
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(image, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_a_smooth_move_is_no_seam_even_compressed():
    scene = _scene()
    h, w = scene.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    moved = _warp(scene, 6 * np.sin(xx / 90), 4 * np.cos(yy / 70))  # a head turning, a jaw dropping
    assert not false_edges(moved, scene).flagged
    jpeg = cv2.imdecode(cv2.imencode(".jpg", moved, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
    assert not false_edges(jpeg, scene).flagged


def test_a_tear_is_a_seam_unless_it_is_where_new_edges_belong():
    scene = _scene(1)
    h, w = scene.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    line = 150 + 10 * np.sin(xx / 17)  # a jagged line across the picture, as across a forehead
    above = (yy < line).astype(np.float32)
    torn = _warp(scene, 0 * above, -25 * above)  # what lies above it is displaced by 25 px
    flat = cv2.GaussianBlur(scene, (0, 0), 8)
    torn = np.where(above[..., None] > 0, cv2.addWeighted(torn, 0.3, flat, 0.7, 40), torn)  # skin against sky
    found = false_edges(torn, scene)
    assert found.flagged and found.longest_px > 0.04 * np.hypot(w, h)
    exclude = np.zeros((h, w), bool)
    exclude[100:200] = True  # e.g. the inside of a mouth, where teeth are new edges
    assert not false_edges(torn, scene, exclude=exclude).flagged
    with pytest.raises(ValueError):
        false_edges(torn, scene, exclude=exclude[:10])


def test_the_still_region_is_where_the_real_scene_did_not_move():
    scene = _scene(2)
    person = np.zeros(scene.shape[:2], bool)
    person[100:300, 250:400] = True
    real = scene.copy()
    real[person] = _warp(scene, 8, 0)[person]  # the person moved, the room did not
    assert still_region_error(real, scene, scene) < 0.5  # the portrait itself: the room is where it was
    dragged = _warp(scene, 3, 0)  # an avatar that drags the room along with the head
    assert still_region_error(real, scene, dragged) > 5
    other = _scene(3)  # another scene altogether: nothing is still, there is no figure to give
    assert still_region_error(other, scene, scene) is None
    with pytest.raises(ValueError):
        still_region_error(real, scene, scene[:10])
