"""segment: masks from clicks, a box, a mask, a referring expression or signal tokens.

Built on segment-anything. ``load`` builds the model once; the image embedding is computed once
per image (``set_image``, cached by content) and every call after that only runs the prompt
encoder and mask decoder. The tiny profile loads the ShapeWorld-trained tiny SAM
(``trained_models/segment-tiny``); the full profile loads an official ViT-B/L/H checkpoint from
``SWITCHBOARD_SAM_CHECKPOINT`` (type ``SWITCHBOARD_SAM_MODEL_TYPE``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from switchboard.core import (
    ExampleRequest,
    Image,
    InvalidInputError,
    Masks,
    SignalSpec,
    Specialist,
    SpecialistFailedError,
    mask_to_box,
)
from switchboard.core.config import get_settings, models_dir
from switchboard.core.regions import BoolMask
from switchboard.core.specialist import check_object_resolved

from .sam import SAM_BUILDERS, SignalSam, SignalSamPredictor, load_sam_weights

NUM_SIGNAL_TOKENS = 2


BOX_SLACK = 0.02  # a box prompt's mask may reach this share of the box's side past it


def clip_to_box(masks: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Box-prompted masks kept inside their box (widened by :data:`BOX_SLACK`, at least 2 px):
    the object is in the box it was prompted with, so mask pixels far outside it are the model's
    leak onto the next object or the background (tiny SAM on a crowd photo), not the object."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = max(2.0, BOX_SLACK * (x2 - x1)), max(2.0, BOX_SLACK * (y2 - y1))
    h, w = masks.shape[-2:]
    keep = np.zeros((h, w), bool)
    keep[
        max(0, int(y1 - dy)) : min(h, int(np.ceil(y2 + dy))),
        max(0, int(x1 - dx)) : min(w, int(np.ceil(x2 + dx))),
    ] = True
    return masks & keep


class SegmentArgs(BaseModel):
    """Prompts in original-image pixels: ``points`` as ``[x, y]`` with ``point_labels`` (1 on the
    object, 0 off it), ``box`` XYXY, ``mask`` (HW bool or COCO RLE), and/or ``target`` — a
    referring expression resolved with the detector ("the circle left of the star")."""

    target: str | None = Field(None, description="referring expression of the object")
    object: int | None = Field(
        None,
        ge=1,
        description="#k of the object in the image's object list (the agent "
        "passes that detection's box)",
    )
    points: list[tuple[float, float]] | None = None
    point_labels: list[int] | None = None
    box: tuple[float, float, float, float] | None = None
    mask: BoolMask | None = None
    multimask: bool = Field(False, description="return 3 candidate masks with scores")

    model_config = {"arbitrary_types_allowed": True}

    @model_validator(mode="after")
    def _consistent(self) -> SegmentArgs:
        if self.points is not None:
            labels = self.point_labels if self.point_labels is not None else [1] * len(self.points)
            if len(labels) != len(self.points) or not self.points:
                raise ValueError("points and point_labels must be non-empty and of equal length")
            if any(v not in (0, 1) for v in labels):
                raise ValueError("point labels must be 0 or 1")
            self.point_labels = labels
        if self.box is not None and not (self.box[2] > self.box[0] and self.box[3] > self.box[1]):
            raise ValueError(f"box {self.box} is not XYXY with x1 < x2 and y1 < y2")
        return self


def build_segment_model(weights: str | Path | None = None) -> SignalSam:
    """The configured SAM: our tiny one (a folder with config.json) or an official checkpoint."""
    settings = get_settings()
    if weights is None and settings.profile == "full":
        if settings.sam_checkpoint is None:
            raise SpecialistFailedError(
                "segment", "profile 'full' needs SWITCHBOARD_SAM_CHECKPOINT"
            )
        return SAM_BUILDERS[settings.sam_model_type](settings.sam_checkpoint)
    path = Path(weights) if weights is not None else models_dir() / "segment-tiny"
    if path.is_dir():
        cfg = json.loads((path / "config.json").read_text())
        builder = SAM_BUILDERS[cfg.pop("builder")]
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
        sam = builder(**cfg) if cfg and builder is SAM_BUILDERS["tiny"] else builder()
        load_sam_weights(sam, path / "model.safetensors")
        return sam
    if not path.is_file():
        raise FileNotFoundError(f"SAM weights not found: {path}")
    return SAM_BUILDERS[settings.sam_model_type](path)


def innermost_point(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the mask pixel farthest from its boundary (its centre, for a click)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x) + 0.5, float(y) + 0.5


def _mask_prompt(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A free-hand mask as prompts SAM was trained on: its box and its innermost point."""
    return np.array(mask_to_box(mask), float), np.array([innermost_point(mask)])


class SegmentSpecialist(Specialist):
    name = "segment"
    description = (
        "Segment an object: a pixel mask from clicks, a box, a rough mask, a referring "
        "expression ('the circle left of the star') or the router's signal."
    )
    tasks = ("segment", "select", "cut out")
    Args = SegmentArgs
    signal = SignalSpec(num_tokens=NUM_SIGNAL_TOKENS, dim=256)
    examples = (
        ExampleRequest(request="segment the {ref}", args={"target": "{ref}"}),
        ExampleRequest(request="cut out the {ref}", args={"target": "{ref}"}),
        ExampleRequest(request="give me a mask of the object in this box", args={"box": "{box}"}),
    )

    def __init__(self, weights: str | Path | None = None, detector: Any = None) -> None:
        super().__init__()
        self.weights = weights
        self.detector = detector  # resolves ``target`` text; created lazily when needed
        self.predictor: SignalSamPredictor | None = None
        self._image_key: str | None = None
        # SAM's predictor holds one image embedding: a call embeds and decodes under the
        # specialist's lock (``Specialist.lock``), so parallel calls (and the tracker's frames,
        # which drive the predictor directly) never decode on another's image.

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        if intent.task == "segment" and intent.target_text:
            return {"target": intent.target_text}
        return None

    def load(self, device: str = "cpu", dtype: Any = None) -> SegmentSpecialist:
        sam = build_segment_model(self.weights).to(device).eval()
        self.predictor = SignalSamPredictor(sam)
        self._image_key = None
        return super().load(device, dtype)

    def unload(self) -> None:
        self.predictor, self._image_key = None, None
        super().unload()  # the detector is shared (the registry's); it unloads on its own

    def set_image(self, image: np.ndarray) -> None:
        """Embed ``image`` (HWC uint8 RGB) unless it is the one already embedded."""
        key = hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest() + str(image.shape)
        if key != self._image_key:
            with torch.no_grad():
                self.predictor.set_image(image, image_format="RGB")
            self._image_key = key

    def forget_image(self) -> None:
        """Drop the cached-image key (after the predictor was given another embedding)."""
        self._image_key = None

    def _resolve_target(self, image: np.ndarray, target: str) -> np.ndarray:
        from . import peer
        from .objects import detect_objects, not_found
        from .queries import resolve_referent

        if self.detector is None:  # the registry's detector: no second copy in memory
            self.detector = peer(self, "detect")
        if not self.detector.loaded:
            self.detector.load(self.device or "cpu")
        objects = detect_objects(self.detector, image)
        names = self.detector.class_names
        hit = resolve_referent(target, objects, names, float(max(image.shape[:2])))
        if hit is None:
            raise not_found(target, objects)
        return np.array(hit.xyxy, float)

    def run(self, media: Image, args: SegmentArgs, signal: Any = None) -> Masks:
        check_object_resolved(args)
        image = media.pixels
        h, w = image.shape[:2]
        points = np.array(args.points, float) if args.points is not None else None
        labels = np.array(args.point_labels) if args.points is not None else None
        box = np.array(args.box, float) if args.box is not None else None
        if points is not None and (
            (points < 0).any() or (points[:, 0] >= w).any() or (points[:, 1] >= h).any()
        ):
            raise InvalidInputError(f"a point is outside the {w}x{h} image")
        if box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h):
            raise InvalidInputError(f"box {args.box} is outside the {w}x{h} image")
        if args.mask is not None:
            if args.mask.shape != (h, w) or not args.mask.any():
                raise InvalidInputError(f"mask must be a non-empty {w}x{h} HW mask")
            mbox, mpoint = _mask_prompt(args.mask)
            box = mbox if box is None else box
            points = mpoint if points is None else np.concatenate([points, mpoint])
            labels = np.ones(len(points), int) if labels is None else np.concatenate([labels, [1]])
        if box is None and points is None and args.target and signal is None:
            # With the router's signal the referent is in the signal (the hybrid path): the
            # text target is not resolved a second time through the detector.
            box = self._resolve_target(image, args.target)
        if box is None and points is None and signal is None:
            raise InvalidInputError("segment needs a prompt: points, box, mask, target or a signal")
        # One click is ambiguous (part or whole?): take SAM's best of three, as SAM advises.
        multimask = args.multimask or (box is None and points is not None and len(points) == 1)
        sig = None if signal is None else torch.as_tensor(signal, dtype=torch.float32)
        with self.lock:
            self.set_image(image)
            masks, scores, _ = self.predictor.predict_with_signal(
                points, labels, box, None, sig, multimask
            )
        if box is not None:
            masks = clip_to_box(masks, box)
        order = np.argsort(-scores)
        if not args.multimask:
            order = order[:1]
        return Masks(masks=[masks[i] for i in order], scores=[float(scores[i]) for i in order])
