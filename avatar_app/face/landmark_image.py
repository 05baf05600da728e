"""The landmark image the neural networks see: the 68-point iBUG layout drawn as coloured polylines on black.

No torch here: the app rasterises landmarks for an exported generator at run time with OpenCV alone.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face.landmarks import (DLIB68_PARTS, LIP_INNER_LOWER, LIP_INNER_UPPER, LIP_OUTER_LOWER,
                                      LIP_OUTER_UPPER, dlib68_part, to_dlib68)

LAYOUT = "ibug-68 polylines from mediapipe-478 (mp2dlib)"
COLOURS = {  # RGB, 0-255
    "jaw": (255, 255, 255),
    "right_brow": (255, 128, 0),
    "left_brow": (255, 200, 0),
    "nose_bridge": (0, 255, 0),
    "nostrils": (0, 200, 120),
    "right_eye": (0, 128, 255),
    "left_eye": (0, 200, 255),
    "outer_lip": (255, 0, 128),
    "inner_lip": (200, 0, 255),
}
# Each part as drawn: name, first and last dlib point, whether it closes, its colour.
GROUPS = tuple((name, first, last, closed, COLOURS[name]) for name, first, last, closed in DLIB68_PARTS)


def draw_landmarks(points: np.ndarray, box: tuple[float, float, float], size: int, thickness: int = 2) -> np.ndarray:
    """478 landmarks (image pixels) -> an RGB float32 image (size x size x 3) in [0, 1] of the crop `box`."""
    x0, y0, side = box
    pts = (to_dlib68(np.asarray(points, np.float64))[:, :2] - [x0, y0]) * (size / side)
    canvas = np.zeros((size, size, 3), np.uint8)
    shift = 4  # sub-pixel precision for cv2.polylines
    fixed = np.round(pts * (1 << shift)).astype(np.int32)
    for _, a, b, closed, colour in GROUPS:
        cv2.polylines(canvas, [fixed[a : b + 1]], closed, colour, thickness, cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0


def outer_lip_mask(points68: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8, 1 inside the outer lip line (iBUG points 48-59) of 68 landmarks given in that image's pixels:
    where a warp is most wrong (teeth, the inside of the mouth)."""
    mask = np.zeros(shape, np.uint8)
    lip = np.asarray(points68)[dlib68_part("outer_lip"), :2]
    cv2.fillPoly(mask, [np.round(lip * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return mask


# The mouth model's landmark image: MediaPipe's dense lip contours (11 points a side, not dlib's 8 inner points,
# which are too coarse at a mouth crop), the opening filled, and the dlib nostrils and jaw where they fall.
MOUTH_LAYOUT = "mediapipe lip contours (outer/inner, upper/lower), filled opening, ibug nostrils and jaw"
MOUTH_COLOURS = {  # RGB, 0-255
    "opening": (0, 0, 96),
    "outer_upper": (255, 0, 128),
    "outer_lower": (255, 128, 0),
    "inner_upper": (200, 0, 255),
    "inner_lower": (0, 255, 200),
    "nostrils": (0, 200, 120),
    "jaw": (255, 255, 255),
}


def draw_mouth_landmarks(points: np.ndarray, size: int, thickness: int = 1) -> np.ndarray:
    """478 landmarks already in mouth-crop pixels (crop.to_affine_crop) -> RGB float32 (size x size x 3) in [0, 1]."""
    p = np.asarray(points, np.float64)[:, :2]
    p68 = to_dlib68(np.asarray(points, np.float64))[:, :2]
    shift = 4
    fixed = lambda q: np.round(q * (1 << shift)).astype(np.int32)  # noqa: E731
    canvas = np.zeros((size, size, 3), np.uint8)
    opening = np.concatenate([p[LIP_INNER_UPPER], p[LIP_INNER_LOWER][::-1]])
    cv2.fillPoly(canvas, [fixed(opening)], MOUTH_COLOURS["opening"], cv2.LINE_AA, shift)
    lines = (("jaw", p68[dlib68_part("jaw")]), ("nostrils", p68[dlib68_part("nostrils")]),
             ("outer_upper", p[LIP_OUTER_UPPER]), ("outer_lower", p[LIP_OUTER_LOWER]),
             ("inner_upper", p[LIP_INNER_UPPER]), ("inner_lower", p[LIP_INNER_LOWER]))
    for name, q in lines:
        cv2.polylines(canvas, [fixed(q)], False, MOUTH_COLOURS[name], thickness, cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255.0


def inner_lip_mask(points: np.ndarray, size: int, grow: int = 1) -> np.ndarray:
    """(size, size) float32: 1 inside the inner lip line (the opening: teeth, tongue, the dark of the mouth) of 478
    landmarks in crop pixels, grown by ``grow`` pixels so the inner edge of the lips counts too."""
    p = np.asarray(points, np.float64)[:, :2]
    opening = np.concatenate([p[LIP_INNER_UPPER], p[LIP_INNER_LOWER][::-1]])
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(opening * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask.astype(np.float32)
