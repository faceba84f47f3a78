"""Regions a user points at: clicks (points with labels), boxes (XYXY pixels) and masks.

Coordinates are pixels of the image they refer to: x to the right, y down, ``(0, 0)`` the
top-left corner. A region is checked against its image with :meth:`check` before use.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from .errors import InvalidInputError
from .rle import decode_rle, encode_rle


class Points(BaseModel):
    """Clicks: ``xy`` is a list of ``(x, y)``; ``labels`` 1 = on the object, 0 = not on it."""

    kind: Literal["points"] = "points"
    xy: list[tuple[float, float]] = Field(min_length=1)
    labels: list[int] | None = None

    @model_validator(mode="after")
    def _labels_match(self) -> Points:
        if self.labels is None:
            self.labels = [1] * len(self.xy)
        if len(self.labels) != len(self.xy):
            raise ValueError(f"{len(self.xy)} points but {len(self.labels)} labels")
        if any(lb not in (0, 1) for lb in self.labels):
            raise ValueError("point labels must be 1 (positive) or 0 (negative)")
        return self

    def check(self, width: int, height: int) -> Points:
        for x, y in self.xy:
            if not (0 <= x < width and 0 <= y < height):
                raise InvalidInputError(f"point ({x}, {y}) is outside the {width}x{height} image")
        return self

    def to_mask(self, width: int, height: int) -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        for (x, y), label in zip(self.xy, self.labels or [], strict=True):
            if label:
                mask[int(y), int(x)] = True
        return mask


class Box(BaseModel):
    """An axis-aligned box ``XYXY`` in pixels: ``x1 < x2``, ``y1 < y2``."""

    kind: Literal["box"] = "box"
    xyxy: tuple[float, float, float, float]

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        x1, y1, x2, y2 = self.xyxy
        if not (x2 > x1 and y2 > y1):
            raise ValueError(f"box {self.xyxy} is not XYXY with x1 < x2 and y1 < y2")
        return self

    def check(self, width: int, height: int) -> Box:
        x1, y1, x2, y2 = self.xyxy
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise InvalidInputError(f"box {self.xyxy} is outside the {width}x{height} image")
        return self

    def to_mask(self, width: int, height: int) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in self.xyxy)
        mask = np.zeros((height, width), dtype=bool)
        mask[y1:y2, x1:x2] = True
        return mask


def _mask_validator(value: Any) -> np.ndarray:
    if isinstance(value, dict):
        try:
            return decode_rle(value)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"invalid RLE mask: {exc}") from exc
    arr = np.asarray(value)
    if arr.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("mask values must be 0/1 or bool")
        arr = arr.astype(bool)
    return arr


# The JSON form of a mask: uncompressed COCO RLE. ``x-bulk`` marks data a user or a tool
# supplies (a drawn region, an earlier result), never words the router writes: the router's call
# grammar leaves such fields out and the agent fills them in.
RLE_SCHEMA = {
    "type": "object",
    "description": "uncompressed COCO RLE: size [H, W], column-major run lengths from 0s",
    "properties": {
        "size": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
    },
    "required": ["size", "counts"],
    "x-bulk": True,
}

# An HW bool array field; JSON form is COCO RLE.
BoolMask = Annotated[
    np.ndarray,
    PlainValidator(_mask_validator),
    PlainSerializer(encode_rle, when_used="json"),
    WithJsonSchema(RLE_SCHEMA),
]


class Mask(BaseModel):
    """A free-hand region: an HW bool mask the size of the image."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["mask"] = "mask"
    mask: BoolMask

    def check(self, width: int, height: int) -> Mask:
        if self.mask.shape != (height, width):
            raise InvalidInputError(
                f"mask is {self.mask.shape[1]}x{self.mask.shape[0]}, image is {width}x{height}"
            )
        if not self.mask.any():
            raise InvalidInputError("mask region is empty")
        return self

    def to_mask(self, width: int, height: int) -> np.ndarray:
        return self.check(width, height).mask


Region = Annotated[Points | Box | Mask, Field(discriminator="kind")]


def region_box(region: Points | Box | Mask, width: int, height: int) -> tuple[int, int, int, int]:
    """The tight XYXY box (integer pixels, exclusive end) around a region."""
    if isinstance(region, Box):
        x1, y1, x2, y2 = region.xyxy
        return int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2))
    ys, xs = np.nonzero(region.to_mask(width, height))
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
