"""COCO run-length encoding of binary masks (uncompressed ``counts`` lists).

The format is COCO's: runs over the mask in column-major (Fortran) order, starting with a run of
zeros (possibly of length 0). pycocotools accepts it through ``frPyObjects``.
"""

from __future__ import annotations

import numpy as np


def encode_rle(mask: np.ndarray) -> dict:
    """HW bool/uint8 mask → ``{"size": [H, W], "counts": [int, ...]}``."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {mask.shape}")
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    # Run boundaries: positions where the value changes, plus both ends.
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def decode_rle(rle: dict) -> np.ndarray:
    """``{"size": [H, W], "counts": [...]}`` → HW bool mask."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def rle_area(rle: dict) -> int:
    """Number of foreground pixels, without decoding."""
    return int(sum(rle["counts"][1::2]))
