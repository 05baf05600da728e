"""Still images in and out: portraits the user gives, snapshots the app saves.

Loading turns every way a file can be wrong into one line the user can act on; saving is atomic.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from avatar_app.atomic import atomic_path
from avatar_app.errors import InputFileError, OutputPathError, first_line

# Larger images are refused as possible decompression bombs: a small file can claim a huge size and
# exhaust memory when decoded. 40 MP is above any camera a portrait is likely to come from.
MAX_IMAGE_PIXELS = 40_000_000

_GIVE = "give a JPEG or PNG file"


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as BGR uint8 (H x W x 3), upright as its EXIF orientation says.

    Grey, palette and CMYK images become BGR; transparent areas become white, since what lies under
    them is undefined (often black) and a face on black reads as a different picture.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file - check the path")
    if path.is_dir():
        raise InputFileError(f"{path}: is a folder, not an image - {_GIVE}")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty - {_GIVE}")
    try:
        with warnings.catch_warnings():
            # PIL warns of bombs above ~89 MP as it opens; we refuse above MAX_IMAGE_PIXELS with one line instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)  # lazy: reads the header only
        with im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise InputFileError(
                    f"{path}: image is {w}x{h} pixels, over the {MAX_IMAGE_PIXELS // 1_000_000} MP limit"
                    " - resize it first"
                )
            im.load()  # full decode now, so a truncated file fails here and not later
            return _to_bgr(_upright(im))
    except InputFileError:
        raise
    except Image.DecompressionBombError as err:
        # PIL's own limit (about 179 MP) trips inside Image.open, before we can see the size; its message
        # still carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too large"
        raise InputFileError(
            f"{path}: image is {size}, over the {MAX_IMAGE_PIXELS // 1_000_000} MP limit - resize it first"
        ) from None
    except UnidentifiedImageError:
        raise InputFileError(f"{path}: not an image (cannot identify image file) - {_GIVE}") from None
    except PermissionError:
        raise InputFileError(f"{path}: permission denied - check you can read the file") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports corrupt data as any of these
        raise InputFileError(
            f"{path}: image is damaged or truncated ({first_line(err)}) - save it again as JPEG or PNG"
        ) from None


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is no reason to refuse the picture itself."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - PIL raises many kinds for malformed EXIF
        return im


def _to_bgr(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top byte, not a clipped one
        grey = (np.asarray(im, dtype=np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))
    rgb = np.asarray(im.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def save_image_atomic(path: str | os.PathLike, image_bgr: np.ndarray) -> None:
    """Write a BGR (or grey) uint8 image; the format follows the suffix (.png, .jpg, ...)."""
    path = Path(path)
    if image_bgr.dtype != np.uint8 or image_bgr.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 H x W (x 3) image, got {image_bgr.dtype} {image_bgr.shape}")
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder - give a file name such as {path / 'image.png'}")
    try:
        ok, data = cv2.imencode(path.suffix, image_bgr)
    except cv2.error:
        ok = False
    if not ok:
        kind = path.suffix or "(none)"
        raise OutputPathError(f"{path}: cannot save images of type '{kind}' - use .png or .jpg")
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data.tobytes())
    except OSError as err:
        raise OutputPathError(
            f"{path}: cannot write ({err.strerror or first_line(err)}) - choose a folder you can write to"
        ) from None


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit inside ``size`` (w, h), aspect kept, centred on black."""
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return np.ascontiguousarray(image)
    scale = min(w / iw, h / ih)
    nw, nh = max(1, min(w, int(round(iw * scale)))), max(1, min(h, int(round(ih * scale))))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interpolation)
    out = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    out[y:y + nh, x:x + nw] = resized
    return out
