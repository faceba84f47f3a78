"""Typed, serializable results every specialist returns.

Masks travel as COCO RLE, images as base64 PNG in JSON; in Python they are numpy arrays.
``observation()`` gives the short text the router reads back after a call.
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
    model_validator,
)

from .media import RGBArray, _image_serializer, _image_validator
from .regions import BoolMask

XYXY = tuple[float, float, float, float]


def _fmt_box(box: XYXY) -> str:
    return "(" + ",".join(str(int(round(v))) for v in box) + ")"


def mask_to_box(mask: np.ndarray) -> XYXY | None:
    """Tight XYXY box of a HW bool mask (exclusive end), or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def xyxy_iou(a: Any, b: Any) -> float:
    """Intersection over union of two XYXY boxes (0 when both are empty)."""
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Masks(BaseModel):
    """N masks (HW bool each) with a score each; boxes are derived from the masks."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["masks"] = "masks"
    masks: list[BoolMask]
    scores: list[float]
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _lengths(self) -> Masks:
        if len(self.scores) != len(self.masks):
            raise ValueError(f"{len(self.masks)} masks but {len(self.scores)} scores")
        if self.labels is not None and len(self.labels) != len(self.masks):
            raise ValueError(f"{len(self.masks)} masks but {len(self.labels)} labels")
        return self

    def boxes(self) -> list[XYXY | None]:
        return [mask_to_box(m) for m in self.masks]

    def observation(self) -> str:
        parts = []
        for m, box in zip(self.masks, self.boxes(), strict=True):
            where = _fmt_box(box) if box else "empty"
            parts.append(f"area {int(m.sum())} px, box {where}")
        return f"{len(self.masks)} mask(s): " + "; ".join(parts) if parts else "no mask"


class Boxes(BaseModel):
    """N detections: XYXY pixel boxes with a label and a score each."""

    kind: Literal["boxes"] = "boxes"
    xyxy: list[XYXY]
    labels: list[str]
    scores: list[float]

    @model_validator(mode="after")
    def _lengths(self) -> Boxes:
        if not (len(self.xyxy) == len(self.labels) == len(self.scores)):
            raise ValueError("xyxy, labels and scores must have the same length")
        return self

    def observation(self) -> str:
        if not self.xyxy:
            return "no objects found"
        items = [
            f"{lb} {_fmt_box(b)} {s:.2f}"
            for b, lb, s in zip(self.xyxy, self.labels, self.scores, strict=True)
        ]
        return f"{len(items)} object(s): " + "; ".join(items)


class Track(BaseModel):
    """One object followed through a video: frame indices with a box (and mask) on each."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    track_id: int
    label: str = ""
    frames: list[int]
    xyxy: list[XYXY]
    masks: list[BoolMask] | None = None

    @model_validator(mode="after")
    def _lengths(self) -> Track:
        if len(self.frames) != len(self.xyxy):
            raise ValueError("a track needs one box per frame")
        if self.masks is not None and len(self.masks) != len(self.frames):
            raise ValueError("a track with masks needs one mask per frame")
        return self


class Tracks(BaseModel):
    """The tracks asked for; ``others``: every other object the tracker followed in the clip
    (boxes only), filled only when the call asks for them (``others``: the editor keeps them
    out of a removal's background)."""

    kind: Literal["tracks"] = "tracks"
    tracks: list[Track]
    num_frames: int = Field(ge=0)
    others: list[Track] = Field(default_factory=list)

    def observation(self) -> str:
        if not self.tracks:
            return f"no tracks over {self.num_frames} frames"
        items = [f"#{t.track_id} {t.label} on {len(t.frames)} frames" for t in self.tracks]
        return f"{len(self.tracks)} track(s): " + "; ".join(items)


class ImageOut(BaseModel):
    """A generated or edited image (HWC uint8 RGB) and, for edits, the region that changed."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["image"] = "image"
    image: RGBArray
    edit_mask: BoolMask | None = None

    def observation(self) -> str:
        h, w = self.image.shape[:2]
        if self.edit_mask is None:
            return f"image {w}x{h}"
        return f"image {w}x{h}, {int(self.edit_mask.sum())} px changed region"


def _frames_validator(value: Any) -> np.ndarray:
    if isinstance(value, list):  # base64 PNGs, as written by the serializer below
        value = np.stack([_image_validator(v) for v in value])
    if not isinstance(value, np.ndarray) or value.ndim != 4 or value.shape[3] != 3:
        raise ValueError(f"video frames must be a (T, H, W, 3) array, got {type(value)}")
    if value.dtype != np.uint8:
        raise ValueError(f"video frames must be uint8, got {value.dtype}")
    return value


# THWC uint8 frames; JSON form is a list of base64 PNGs (lossless: the keep region stays
# byte-identical on the wire too).
FramesArray = Annotated[
    np.ndarray,
    PlainValidator(_frames_validator),
    PlainSerializer(lambda v: [_image_serializer(f) for f in v], when_used="json"),
]


class VideoOut(BaseModel):
    """An edited video: every frame (THWC uint8 RGB, the input's size) at the input's ``fps``,
    the region that changed on each frame, the track the edit followed (its id and the frames
    the object was found on), and how many frames were edited."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    kind: Literal["video"] = "video"
    frames: FramesArray
    fps: float = Field(gt=0)
    edit_masks: list[BoolMask] | None = None
    track: Track | None = None

    @model_validator(mode="after")
    def _lengths(self) -> VideoOut:
        if self.edit_masks is not None and len(self.edit_masks) != len(self.frames):
            raise ValueError("a video edit needs one edit mask per frame")
        return self

    @property
    def edited_frames(self) -> int:
        return 0 if self.edit_masks is None else sum(bool(m.any()) for m in self.edit_masks)

    def observation(self) -> str:
        t, h, w = self.frames.shape[:3]
        return f"video {w}x{h}, {t} frames, edited on {self.edited_frames}"


class Text(BaseModel):
    kind: Literal["text"] = "text"
    text: str

    def observation(self) -> str:
        return self.text


Result = Annotated[Masks | Boxes | Tracks | ImageOut | VideoOut | Text, Field(discriminator="kind")]
