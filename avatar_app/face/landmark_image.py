"""The landmark image the neural networks see: the 68-point iBUG layout drawn as coloured polylines on black.

No torch here: the app rasterises landmarks for an exported generator at run time with OpenCV alone.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face.landmarks import DLIB68_PARTS, dlib68_part, to_dlib68

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
