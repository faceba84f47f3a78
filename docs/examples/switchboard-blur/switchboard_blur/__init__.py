"""switchboard-blur: a real, small Switchboard plugin that blurs part of an image.

Install it (``pip install docs/examples/switchboard-blur``) and the ``blur`` tool appears in
``switchboard.specialists.default_registry()`` through its entry point. Teach the router to call
it with ``switchboard train router --add-tools`` (docs/plugins.md): the ``examples`` below are
what it learns from — every fifth one is held out to measure unseen phrasings.
"""

from __future__ import annotations

import re
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field, field_validator
from switchboard.core import ExampleRequest, Image, ImageOut, InvalidInputError, Specialist

# A target made only of these words names the whole image ("the whole picture"), not an object.
WHOLE_IMAGE = {"the", "this", "whole", "entire", "full", "image", "picture", "photo", "everything"}


class BlurArgs(BaseModel):
    """Blur the object a referring expression names (``target``), a box, or — with neither, or
    a target like "the whole image" — the whole image."""

    target: str | None = Field(None, description="referring expression of the object to blur")
    box: tuple[int, int, int, int] | None = Field(None, description="XYXY pixel box to blur")
    strength: Literal["light", "strong"] = "strong"

    @field_validator("target")
    @classmethod
    def _whole_image(cls, value: str | None) -> str | None:
        words = set(re.findall(r"[a-z]+", (value or "").lower()))
        return None if value is None or words <= WHOLE_IMAGE else value


def _ex(request: str, strength: str = "strong", target: bool = True) -> ExampleRequest:
    args = {"target": "{ref}"} if target else {}
    return ExampleRequest(request=request, args=args | {"strength": strength})


class BlurSpecialist(Specialist):
    name = "blur"
    description = "Blur (anonymize) an object or a region of an image, or the whole image."
    tasks = ("blur", "anonymize")
    Args = BlurArgs
    # Index % 5 == 4 (the 5th, 10th, 15th) are held out by `switchboard train router
    # --add-tools` and scored by `switchboard eval plugin`.
    examples = (
        _ex("blur the {ref}"),
        _ex("make the {ref} unrecognizable"),
        _ex("soften the {ref} a little", "light"),
        _ex("blur the whole picture", target=False),
        _ex("could you blur out the {ref}?"),
        _ex("smudge the {ref}"),
        _ex("give the {ref} a slight blur", "light"),
        _ex("anonymize the {ref}"),
        _ex("blur everything in this image", target=False),
        _ex("apply a light blur to the {ref}", "light"),
        _ex("hide the {ref} behind a blur"),
        _ex("lightly blur the {ref}", "light"),
        _ex("put a gentle blur over the whole image", "light", target=False),
        _ex("obscure the {ref}"),
        _ex("make this whole image blurry", target=False),
    )

    # Gaussian kernel size as a share of the region's shorter side (odd sizes only).
    _KERNEL_SHARE = {"light": 0.08, "strong": 0.25}

    def run(self, media: Image, args: BlurArgs, signal: object = None) -> ImageOut:
        pixels = media.pixels
        h, w = pixels.shape[:2]
        if args.target is not None:  # the object, found by the segment tool
            from switchboard.specialists import default_registry

            masks = default_registry().get("segment")(media, {"target": args.target})
            ys, xs = np.nonzero(masks.masks[0])
            if not len(xs):
                raise InvalidInputError(f"no pixels found for {args.target!r}")
            # Its box, grown by a tenth a side: a mask may miss an edge, and a shape blurred
            # inside its own outline stays recognizable by that outline.
            gx, gy = max(2, (xs.max() - xs.min()) // 10), max(2, (ys.max() - ys.min()) // 10)
            x1, y1 = max(0, xs.min() - gx), max(0, ys.min() - gy)
            x2, y2 = min(w, xs.max() + 1 + gx), min(h, ys.max() + 1 + gy)
        else:
            x1, y1, x2, y2 = args.box or (0, 0, w, h)
            if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                raise InvalidInputError(f"box {args.box} is outside the {w}x{h} image")
        side = min(x2 - x1, y2 - y1)
        k = max(3, int(side * self._KERNEL_SHARE[args.strength]) | 1)
        # The blur reads a margin around the box; only the box's pixels change.
        bx1, by1, bx2, by2 = max(0, x1 - k), max(0, y1 - k), min(w, x2 + k), min(h, y2 + k)
        blurred = cv2.GaussianBlur(pixels[by1:by2, bx1:bx2], (k, k), 0)
        out = pixels.copy()
        out[y1:y2, x1:x2] = blurred[y1 - by1 : y2 - by1, x1 - bx1 : x2 - bx1]
        mask = np.zeros((h, w), dtype=bool)
        mask[y1:y2, x1:x2] = True
        return ImageOut(image=out, edit_mask=mask)
