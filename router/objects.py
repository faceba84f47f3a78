"""The router's object memory: what its detector sees in an image, as features the signal
heads can point at.

The router's vision tower already runs our detector's backbone (``DetectorStem``); the object
memory runs the whole detector (the same weights, ``trained_models/detect-tiny`` by default,
any Ultralytics detector for real photographs) and turns each detection into one feature row:

    [x1, y1, x2, y2]  normalized by the image's longest side (SAM's padded square frame)
    score             the detector's confidence
    class             one-hot over the detector's classes
    rgb               median of the saturated pixels in the box's central half, 0..1
                      (zeros where too few are saturated: ShapeWorld backgrounds are greys)

Why: pointing at one of a handful of detections is a far smaller problem than pointing at one
of 256 patches, and a detection's box is already tight; the heads learn *which* one from the
router's states ("the circle left of the star"), the specialist gets the precise *where*. The
text path resolves the same detections with hand-written rules over the router's written
target; the hybrid path learns the choice from the router's own states.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

MAX_OBJECTS = 16
DETECT_CONF = 0.25  # the segment specialist's own threshold for referring expressions


def object_dim(num_classes: int) -> int:
    """Width of one object row: box 4, score 1, class one-hot, rgb 3."""
    return 4 + 1 + num_classes + 3


def box_rgb(image: np.ndarray, xyxy: tuple[float, float, float, float]) -> np.ndarray:
    """Median colour (0..1) of the saturated pixels in the box's central half — the pixels
    :func:`~switchboard.specialists.colors.color_in_box` names; zeros if too few are
    saturated."""
    from switchboard.specialists.colors import box_pixels, saturated_median

    px = box_pixels(image, xyxy)
    median = None if px is None else saturated_median(px)
    return np.zeros(3, np.float32) if median is None else (median / 255.0).astype(np.float32)


def object_rows(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    num_classes: int,
    max_objects: int = MAX_OBJECTS,
) -> torch.Tensor:
    """Detections (pixel XYXY, scores, class ids) of one HWC image → ``[M, object_dim]``,
    highest score first, at most ``max_objects``."""
    side = float(max(image.shape[:2]))
    order = np.argsort(-np.asarray(scores))[:max_objects]
    rows = np.zeros((len(order), object_dim(num_classes)), np.float32)
    for r, i in enumerate(order):
        b = np.asarray(boxes[i], np.float32)
        rows[r, :4] = np.clip(b / side, 0.0, 1.0)
        rows[r, 4] = float(scores[i])
        rows[r, 5 + int(classes[i])] = 1.0
        rows[r, 5 + num_classes :] = box_rgb(image, tuple(b))
    return torch.from_numpy(rows)


def detector_path(name: str | Path) -> Path:
    """A detector folder by path, or by name under ``trained_models/``."""
    from switchboard.core.config import models_dir

    path = Path(name)
    return path if path.exists() else models_dir() / str(name)


class ObjectProposer:
    """The detector behind the object memory (loaded on first use)."""

    def __init__(self, weights: str | Path | None = None, conf: float = DETECT_CONF) -> None:
        self.weights = weights
        self.conf = conf
        self._detector: Any = None

    @property
    def detector(self) -> Any:
        if self._detector is None:
            from switchboard.specialists.detect import DetectSpecialist

            self._detector = DetectSpecialist(self.weights).load("cpu")
        return self._detector

    @property
    def num_classes(self) -> int:
        return len(self.detector.class_names)

    def __call__(self, image: np.ndarray, max_objects: int = MAX_OBJECTS) -> torch.Tensor:
        """``[M, object_dim]`` rows of one HWC uint8 RGB image (M may be 0)."""
        boxes, scores, cls = self.detector.detect_all(image, conf=self.conf)
        return object_rows(image, boxes, scores, cls, self.num_classes, max_objects)


def pad_objects(rows: list[torch.Tensor | None], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item ``[M_i, dim]`` (or None) → ``[B, M, dim]`` and a mask ``[B, M]`` (True = real).
    ``M`` is at least 1 so that a batch without any detection still has a slot (masked)."""
    n = max([1] + [len(r) for r in rows if r is not None])
    out = torch.zeros(len(rows), n, dim)
    mask = torch.zeros(len(rows), n, dtype=torch.bool)
    for b, r in enumerate(rows):
        if r is not None and len(r):
            out[b, : len(r)], mask[b, : len(r)] = r.float(), True
    return out, mask


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``[..., M, 4]`` with one box each ``[..., 4]`` → ``[..., M]``."""
    b = b[..., None, :]
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).clamp_min(0).prod(-1)  # noqa: E731
    return inter / (area(a) + area(b) - inter).clamp_min(1e-9)
