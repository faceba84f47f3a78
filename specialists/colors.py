"""Naming the colour of an object from its pixels (used by detect and track queries).

Detection models know shapes (or any class names); colour words are read off the pixels, so
colour queries also work with full-size detectors on real photographs.
"""

from __future__ import annotations

import numpy as np
from switchboard.core.vocabulary import COLORS

_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[n] for n in _NAMES], dtype=np.float32)
# Below this saturation a pixel is background-like (ShapeWorld backgrounds are greys).
MIN_SATURATION = 0.35


def _saturation(rgb: np.ndarray) -> np.ndarray:
    mx, mn = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)


def saturated_median(pixels: np.ndarray) -> np.ndarray | None:
    """Median RGB (0..255) of the saturated pixels ``[N, 3]``; None if fewer than 4 are."""
    px = pixels.reshape(-1, 3).astype(np.float32)
    px = px[_saturation(px / 255.0) >= MIN_SATURATION]
    return np.median(px, axis=0) if len(px) >= 4 else None


# A colour word names what *is* that colour: most of the pixels saturated, their median near a
# palette colour. ShapeWorld objects: >= 0.86 saturated and <= 16 from the palette (99th
# percentile of 60 held-out scenes); the people in Ultralytics' photos: 0.32-0.88 and 128-164.
STRICT_SHARE, STRICT_DISTANCE = 0.5, 60.0


def color_of_pixels(pixels: np.ndarray, strict: bool = False) -> str | None:
    """The palette name nearest to the median of the saturated pixels ``[N, 3]``; None if
    too few pixels are saturated to tell (``strict``: unless most are saturated and their
    median is near that palette colour — what a word about a photo needs)."""
    median = saturated_median(pixels)
    if median is None:
        return None
    dist = np.sqrt(((_PALETTE - median) ** 2).sum(axis=1))
    if strict:
        px = pixels.reshape(-1, 3).astype(np.float32) / 255.0
        if (_saturation(px) >= MIN_SATURATION).mean() < STRICT_SHARE:
            return None
        if dist.min() > STRICT_DISTANCE:
            return None
    return _NAMES[int(np.argmin(dist))]


def color_labels(image: np.ndarray) -> np.ndarray:
    """HW int: for each pixel of an HWC uint8 ``image``, the index (in ``COLORS``' order) of
    the palette colour it is — saturated, nearest to that colour and within
    :data:`STRICT_DISTANCE` of it (ShapeWorld's shading keeps an object's every pixel within
    16) — or -1."""
    px = image.astype(np.float32)
    dist = np.sqrt(((px[..., None, :] - _PALETTE) ** 2).sum(-1))  # [H, W, colours]
    nearest = dist.argmin(-1)
    ok = (np.take_along_axis(dist, nearest[..., None], -1)[..., 0] <= STRICT_DISTANCE) & (
        _saturation(px / 255.0) >= MIN_SATURATION
    )
    return np.where(ok, nearest, -1)


def color_in_box(
    image: np.ndarray,
    xyxy: tuple[float, float, float, float],
    mask: np.ndarray | None = None,
    strict: bool = False,
) -> str | None:
    """Colour of the object in a box: inside ``mask`` when given, else the box's central half
    (where the object, not the background, dominates)."""
    px = box_pixels(image, xyxy, mask)
    return None if px is None else color_of_pixels(px, strict)


def box_pixels(
    image: np.ndarray, xyxy: tuple[float, float, float, float], mask: np.ndarray | None = None
) -> np.ndarray | None:
    """The pixels that tell a boxed object's colour: under ``mask`` when given, else the box's
    central half; None for an empty box."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 <= x1 or y2 <= y1:
        return None
    if mask is not None:
        return image[mask]
    cw, ch = (x2 - x1) // 4, (y2 - y1) // 4
    return image[y1 + ch : y2 - ch or y2, x1 + cw : x2 - cw or x2]
