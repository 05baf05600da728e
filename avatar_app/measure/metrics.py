"""How close an animated frame is to the real one: image metrics on BGR uint8 frames and a landmark error
normalised by the face's scale, shared by the benchmarks and the evaluation command.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from avatar_app.face.landmarks import inter_ocular  # noqa: F401 - the scale every error is in, re-exported

# SSIM constants of Wang, Bovik, Sheikh and Simoncelli (2004).
_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03
_DATA_RANGE = 255.0

# Iris centres of the 478-point mesh, eye contours of the 68-point iBUG layout (0-based).


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {a.dtype} and {b.dtype}")


def luminance(image: np.ndarray) -> np.ndarray:
    """Y (ITU-R BT.601) of a BGR uint8 image as float64 in 0..255; a grey image is returned as is."""
    if image.ndim == 2:
        return image.astype(np.float64)
    b, g, r = (image[..., i].astype(np.float64) for i in range(3))
    # Computed in float rather than with cvtColor, which rounds Y back to uint8.
    return 0.299 * r + 0.587 * g + 0.114 * b


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of the luminance of two BGR (or grey) uint8 images; 1 when identical.

    Gaussian window 11 px, sigma 1.5, K1 0.01, K2 0.03, data range 255. As in Wang et al.'s reference code,
    the map is averaged over the 'valid' part only (windows that lie wholly inside the image), so border
    padding cannot flatter or penalise a result.
    """
    _check_pair(a, b)
    x, y = luminance(a), luminance(b)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (_SSIM_WINDOW, _SSIM_WINDOW), _SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    c1 = (_SSIM_K1 * _DATA_RANGE) ** 2
    c2 = (_SSIM_K2 * _DATA_RANGE) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    r = _SSIM_WINDOW // 2
    if min(ssim_map.shape) > 2 * r:
        ssim_map = ssim_map[r:-r, r:-r]
    return float(ssim_map.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all channels (peak 255); inf for identical images."""
    _check_pair(a, b)
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(_DATA_RANGE**2 / mse)


def l1(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference over all pixels and channels, as a fraction of 255."""
    _check_pair(a, b)
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))) / _DATA_RANGE)


def landmark_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean Euclidean distance (x, y) between corresponding points, in units of ref's inter-ocular distance."""
    pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    if pred.shape[0] != ref.shape[0] or pred.ndim != 2 or ref.ndim != 2:
        raise ValueError(f"landmark sets differ: {pred.shape} vs {ref.shape}")
    scale = inter_ocular(ref)
    if not scale > 0:
        raise ValueError("reference landmarks have zero inter-ocular distance")
    return float(np.linalg.norm(pred[:, :2] - ref[:, :2], axis=1).mean() / scale)
