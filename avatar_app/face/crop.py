"""The face crop: the square around a face that the neural networks see (training data, fine-tuning, the app's
neural renderer and the exported manifest all frame it here), and the warps that cut it out of an image."""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face.landmarks import LIP_OUTER_LOWER, LIP_OUTER_UPPER

# The crop's side, in multiples of the landmarks' larger extent: the head, hair and some background.
CROP_SCALE = 1.8

Box = tuple[float, float, float]  # x0, y0, side in image pixels


def _centre_and_side(points: np.ndarray, scale: float) -> tuple[float, float, float]:
    x0, y0 = points[:, :2].min(0)
    x1, y1 = points[:, :2].max(0)
    return (x0 + x1) / 2, (y0 + y1) / 2, scale * max(x1 - x0, y1 - y0)


def crop_box(points: np.ndarray, scale: float = CROP_SCALE) -> Box:
    """A square (x0, y0, side) centred on the landmarks' box, ``scale`` times its larger side: the model's view."""
    cx, cy, side = _centre_and_side(points, scale)
    return float(cx - side / 2), float(cy - side / 2), float(side)


def face_box(points: np.ndarray, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """crop_box() on whole pixels (x0, y0, side), for crop()."""
    cx, cy, side = _centre_and_side(points, scale)
    side = round(side)
    return round(cx - side / 2), round(cy - side / 2), side


def box_affine(box: Box, size: int) -> np.ndarray:
    """The 2 x 3 float32 affine taking image pixels to the pixels of ``box`` resized to size x size."""
    x0, y0, side = box
    k = size / side
    return np.array([[k, 0, -x0 * k], [0, k, -y0 * k]], np.float32)


def to_crop(points: np.ndarray, box: Box, size: int) -> np.ndarray:
    """Image-pixel landmarks -> crop pixels at size x size (z scales with x), float32."""
    x0, y0, side = box
    k = size / side
    return ((np.asarray(points, np.float64) - [x0, y0, 0.0]) * k).astype(np.float32)


def _warp(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    # Outside the image, edge pixels repeat, in training's crops and the app's alike: the networks never meet a
    # border they were not trained on.
    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_crop(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The square ``box`` of an image resized to size x size (bilinear): prepare-data's crop."""
    return _warp(image, box_affine(box, size), size)


def face_crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The square ``affine`` maps to size x size as the networks were trained on it: cut at twice the size, then
    area-averaged down, as prepare-data cut at 256 and the data loader resized to the model's size."""
    patch = _warp(image, affine * np.float32(2), 2 * size)
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def crop(image: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """A whole-pixel ``box`` (face_box()) cut out and resized to size x size; parts outside the frame repeat its
    edge (a hard black border would be an edge the mesh warp drags along and the face detector may react to)."""
    x0, y0, side = box
    h, w = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = image[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


# -- the mouth crop ---------------------------------------------------------------------------------------------
# The mouth model's view: a square turned with the mouth, centred on the outer lips, MOUTH_CROP_SCALE times the
# corner-to-corner width on a side, so the lips, the top of the chin and the base of the nose are in it.
MOUTH_CROP_SCALE = 1.9


def mouth_affine(points: np.ndarray, size: int, scale: float = MOUTH_CROP_SCALE) -> np.ndarray:
    """The 2 x 3 float32 similarity taking image pixels to the mouth crop at size x size, from 478 landmarks:
    the outer lips' centre goes to the crop's centre and the line between the mouth corners becomes horizontal,
    the corners at x = size/2 ± size/(2·scale) on one row.
    Built from the landmarks alone, so a turned, scaled or moved face gives the same crop."""
    p = np.asarray(points, np.float64)[:, :2]
    outer = np.unique(np.concatenate([LIP_OUTER_UPPER, LIP_OUTER_LOWER]))
    left, right = p[LIP_OUTER_UPPER[0]], p[LIP_OUTER_UPPER[-1]]  # the outer corners (61, 291)
    # The centre: midway between the corners along the mouth, midway between the outer lips' extremes across it
    # (not the points' mean, which the dense upper contour would pull upwards; and not the extremes along it,
    # which a tracker's lip points overshooting a corner would move).
    axis = (right - left) / max(np.linalg.norm(right - left), 1e-6)
    normal = np.array([-axis[1], axis[0]])
    v = (p[outer] - left) @ normal
    centre = (left + right) / 2 + normal * (v.min() + v.max()) / 2
    k = size / (scale * max(float(np.linalg.norm(right - left)), 1e-6))  # crop pixels per image pixel
    rot = np.array([axis, normal]) * k  # rows: the crop's x and y axes in image pixels, scaled
    return np.hstack([rot, (size / 2 - rot @ centre)[:, None]]).astype(np.float32)


def to_affine_crop(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Image-pixel landmarks -> the pixels of the crop ``affine`` makes (z scales like x, as in to_crop), float32."""
    p = np.asarray(points, np.float64)
    a = np.asarray(affine, np.float64)
    out = p.copy()
    out[:, :2] = p[:, :2] @ a[:, :2].T + a[:, 2]
    if p.shape[1] > 2:
        out[:, 2] = p[:, 2] * np.sqrt(abs(np.linalg.det(a[:, :2])))
    return out.astype(np.float32)


def mouth_crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """The mouth crop of an image (face_crop's sampling: cut at twice the size, area-averaged down)."""
    return face_crop(image, affine, size)
