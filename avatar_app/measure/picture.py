"""What the video call sees, measured on the picture alone (no face tracker): edges the portrait never had (a
seam where a warp tore the painting), a background that moves where the real scene stood still, and sharpness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# false_edges works on a copy this wide (narrower pictures as they are): optical flow on a full 1280 x 720 call
# picture costs several times the frame budget, and a seam worth flagging is many pixels long at any size.
WORK_WIDTH = 640
# The gradient of the warped portrait is widened by this many work pixels before it explains an output edge, so a
# flow a pixel or two off does not turn every real edge into a false one.
ALIGN_TOLERANCE_PX = 4
# An output edge is false where its gradient (Sobel magnitude, grey levels per pixel, on a lightly blurred copy)
# exceeds the explained one by EDGE_MARGIN and is also EDGE_RATIO times as steep.
EDGE_MARGIN = 30.0
EDGE_RATIO = 2.0
# The flow is smoothed over this share of the picture's width before it warps the portrait: DIS follows a tear
# closely enough to reproduce it at its own scale; a flow this smooth follows a head, a jaw or a camera's glide
# but not a tear. Calibrated on the vox clip driving the shipped Mona Lisa, 1280x720 call pictures: the old
# renderer's forehead seam (frames 20-40, t = 0.8-1.6 s) flagged 21 of 21 (the shortest 68 px long), today's
# renderer 0 of 76 (0-3 s; the longest 52 px, the bar 59 px).
FLOW_SMOOTHING = 0.05
# Flagged when the longest false-edge line is longer than this share of the picture's diagonal.
SEAM_LENGTH_SHARE = 0.04


@dataclass(frozen=True)
class FalseEdges:
    """Hard edges in the call picture that the portrait at rest does not explain."""

    flagged: bool  # the longest false edge is long enough to be seen as a seam
    longest_px: float  # length of the longest false-edge line, in pixels of the output
    share: float  # share of the output's pixels that lie on a false edge
    mask: np.ndarray  # bool, the output's size: where the false edges are (for a contact sheet)


def _grey(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _gradient(grey: np.ndarray) -> np.ndarray:
    # The blur takes the 8 x 8 block steps of JPEG and H.264 below the margin; a seam is a step of tens of
    # grey levels and survives it.
    soft = cv2.GaussianBlur(grey, (5, 5), 1.0).astype(np.float32)
    gx = cv2.Sobel(soft, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(soft, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy) / 4.0  # per pixel: the 3 x 3 Sobel weighs a step 4 times


def false_edges(output: np.ndarray, portrait: np.ndarray, exclude: np.ndarray | None = None) -> FalseEdges:
    """Find hard edges in `output` (the call picture) that `portrait` (the same picture at rest, in the same
    framing) does not have, such as the seam a torn warp leaves across a forehead.

    Dense optical flow (DIS, medium preset), smoothed over FLOW_SMOOTHING of the width, carries the portrait onto
    the output. A smooth flow follows a head turning or a mouth opening but cannot reproduce a tear, so a torn
    edge is missing from the warped portrait.
    Output pixels whose gradient exceeds the warped portrait's (widened by ALIGN_TOLERANCE_PX) by EDGE_MARGIN
    and EDGE_RATIO are false edge; after a small closing they are joined into 8-connected lines, and a line's
    length is the pixel count of its skeleton. The picture is flagged when the longest line is longer than
    SEAM_LENGTH_SHARE of its diagonal. `exclude` (bool, the output's size) marks where new edges are
    legitimate, such as the inside of the mouth (teeth) and the eyes. A portrait of another size is resized to
    the output's; both are measured on a copy WORK_WIDTH wide.
    """
    h, w = output.shape[:2]
    if exclude is not None and exclude.shape[:2] != (h, w):
        raise ValueError(f"exclude mask is {exclude.shape[:2]}, the output is {(h, w)}")
    scale = min(1.0, WORK_WIDTH / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(_grey(output), size, interpolation=cv2.INTER_AREA)
    por = cv2.resize(_grey(portrait), size, interpolation=cv2.INTER_AREA)

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow = dis.calc(out, por, None)  # out(p) ~ por(p + flow(p))
    flow = cv2.GaussianBlur(flow, (0, 0), FLOW_SMOOTHING * size[0])
    gx, gy = np.meshgrid(np.arange(size[0], dtype=np.float32), np.arange(size[1], dtype=np.float32))
    warped = cv2.remap(por, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    g_out = _gradient(out)
    reach = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * ALIGN_TOLERANCE_PX + 1,) * 2)
    explained = cv2.dilate(_gradient(warped), reach)
    false = (g_out > explained + EDGE_MARGIN) & (g_out > EDGE_RATIO * explained)
    if exclude is not None:
        small = cv2.resize(exclude.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        false &= small == 0
    false = cv2.morphologyEx(false.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))

    longest = 0.0
    n, labels = cv2.connectedComponents(false, connectivity=8)
    if n > 1:
        skeleton = cv2.ximgproc.thinning(false * 255)
        lengths = np.bincount(labels[skeleton > 0], minlength=n)[1:]
        longest = float(lengths.max()) / scale
    mask = cv2.resize(false, (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return FalseEdges(
        flagged=longest > SEAM_LENGTH_SHARE * math.hypot(w, h),
        longest_px=longest,
        share=float(false.mean()),
        mask=mask,
    )


STILL_TOL = 6  # grey levels (after a 3 x 3 box blur): a pixel of the real frame this close to the source's is still


def still_region_error(real: np.ndarray, source: np.ndarray, output: np.ndarray) -> float | None:
    """Where the real frame still equals the source frame (the scene behind the person, wherever nothing moved;
    a 2-pixel margin off the edges of what moved), the mean absolute difference of the output from the real
    frame, in grey levels. The source frame itself scores the floor that compression leaves; a warp that drags
    the background along with the head scores above it. None when under 1 % of the frame is still."""
    if not (real.shape == source.shape == output.shape):
        raise ValueError(f"still_region_error needs pictures of one size, got {real.shape}, {source.shape}, {output.shape}")
    a = cv2.blur(real, (3, 3)).astype(np.int16)
    b = cv2.blur(source, (3, 3)).astype(np.int16)
    still = (np.abs(a - b).max(2) <= STILL_TOL).astype(np.uint8)
    still = cv2.erode(still, np.ones((5, 5), np.uint8)).astype(bool)
    if still.mean() < 0.01:
        return None
    return float(np.abs(output.astype(np.float32) - real.astype(np.float32))[still].mean())
