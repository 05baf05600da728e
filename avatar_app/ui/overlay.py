"""The alignment overlay: the portrait's face ghosted over the camera picture, with both landmark sets.

The portrait is placed on the driver's face by scale and position only, never rotated, so a difference in
head tilt or turn stays visible: the user turns until the two outlines agree, then calibrates. Without a face
in view the ghost sits in the middle of the picture, to show where to put one.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_app.face import landmarks as L

PORTRAIT_COLOUR = (60, 200, 255)  # BGR: amber, the portrait's points and outline
DRIVER_COLOUR = (255, 220, 60)  # BGR: cyan, the user's
MAX_WIDTH = 640  # composed at preview size, not at the camera's full resolution
_OUTLINES = (L.FACE_OVAL, L.EYE_UPPER[0], L.EYE_LOWER[0], L.EYE_UPPER[1], L.EYE_LOWER[1],
             L.LIP_OUTER_UPPER, L.LIP_OUTER_LOWER)


def placement(portrait_points: np.ndarray, driver_points: np.ndarray | None, frame_size: tuple[int, int]) -> np.ndarray:
    """2 x 3 affine (scale and shift, no rotation) taking portrait pixels onto the camera frame."""
    src = np.asarray(portrait_points, np.float64)[L.RIGID, :2]
    src_c = src.mean(0)
    src_r = np.sqrt(((src - src_c) ** 2).sum(1).mean())
    if driver_points is not None:
        dst = np.asarray(driver_points, np.float64)[L.RIGID, :2]
        dst_c = dst.mean(0)
        dst_r = np.sqrt(((dst - dst_c) ** 2).sum(1).mean())
    else:  # the face a third of the frame's height, in the middle
        w, h = frame_size
        dst_c = np.array([w / 2, h * 0.45])
        full = np.asarray(portrait_points, np.float64)[:, 1]
        dst_r = src_r * (h / 3) / max(full.max() - full.min(), 1e-6)
    s = dst_r / max(src_r, 1e-9)
    t = dst_c - s * src_c
    return np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])


def alignment_overlay(
    camera: np.ndarray,
    portrait: np.ndarray,
    portrait_points: np.ndarray,
    driver_points: np.ndarray | None,
    opacity: float = 0.45,
) -> np.ndarray:
    """The camera frame (at most MAX_WIDTH wide) with the portrait's face ghosted on it and both landmark sets
    drawn: the portrait's in amber, the driver's (when there is a face) in cyan. Inputs are BGR uint8."""
    h, w = camera.shape[:2]
    k = min(1.0, MAX_WIDTH / w)
    if k < 1.0:
        camera = cv2.resize(camera, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
        driver_points = None if driver_points is None else np.asarray(driver_points, np.float64) * [k, k, 1]
    h, w = camera.shape[:2]
    m = placement(portrait_points, driver_points, (w, h))
    ghost = cv2.warpAffine(portrait, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    placed = np.asarray(portrait_points, np.float64)[:, :2] @ m[:, :2].T + m[:, 2]

    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(placed[L.FACE_OVAL]).astype(np.int32)], 255)
    feather = max(3, int(0.04 * max(1.0, np.ptp(placed[:, 0]))) | 1)
    alpha = cv2.GaussianBlur(mask, (feather, feather), 0).astype(np.float32)[..., None] * (opacity / 255.0)
    out = (camera.astype(np.float32) * (1 - alpha) + ghost.astype(np.float32) * alpha).astype(np.uint8)

    radius = 1
    _draw(out, placed, PORTRAIT_COLOUR, radius)
    if driver_points is not None:
        _draw(out, np.asarray(driver_points, np.float64)[:, :2], DRIVER_COLOUR, radius)
    return out


def _draw(image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int], radius: int) -> None:
    for chain in _OUTLINES:
        closed = chain is L.FACE_OVAL
        cv2.polylines(image, [np.round(points[chain]).astype(np.int32)], closed, colour, 1, cv2.LINE_AA)
    h, w = image.shape[:2]
    p = np.round(points).astype(np.int32)
    inside = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)
    for x, y in p[inside]:
        cv2.circle(image, (int(x), int(y)), radius, colour, -1, cv2.LINE_AA if radius > 1 else cv2.LINE_8)
