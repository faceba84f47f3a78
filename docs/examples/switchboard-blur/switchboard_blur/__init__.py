"""switchboard-blur: a real, small Switchboard plugin that blurs part of an image.

Install it (``pip install docs/examples/switchboard-blur``) and the ``blur`` tool appears in
``switchboard.specialists.default_registry()`` through its entry point.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, Field
from switchboard.core import ExampleRequest, Image, ImageOut, InvalidInputError, Specialist


class BlurArgs(BaseModel):
    """Blur the box (XYXY pixels) or, without a box, the whole image."""

    box: tuple[int, int, int, int] | None = Field(None, description="XYXY pixel box to blur")
    strength: Literal["light", "strong"] = "strong"


class BlurSpecialist(Specialist):
    name = "blur"
    description = "Blur (anonymize) a region of an image, or the whole image."
    tasks = ("blur", "anonymize")
    Args = BlurArgs
    examples = (
        ExampleRequest(request="blur the {ref}", args={"box": "{box}", "strength": "strong"}),
        ExampleRequest(
            request="make the {ref} unrecognizable", args={"box": "{box}", "strength": "strong"}
        ),
        ExampleRequest(
            request="soften the {ref} a little", args={"box": "{box}", "strength": "light"}
        ),
        ExampleRequest(request="blur the whole picture", args={"box": None, "strength": "strong"}),
    )

    # Gaussian kernel size as a share of the region's shorter side (odd sizes only).
    _KERNEL_SHARE = {"light": 0.08, "strong": 0.25}

    def run(self, media: Image, args: BlurArgs, signal: object = None) -> ImageOut:
        pixels = media.pixels
        h, w = pixels.shape[:2]
        x1, y1, x2, y2 = args.box or (0, 0, w, h)
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise InvalidInputError(f"box {args.box} is outside the {w}x{h} image")
        side = min(x2 - x1, y2 - y1)
        k = max(3, int(side * self._KERNEL_SHARE[args.strength]) | 1)
        out = pixels.copy()
        out[y1:y2, x1:x2] = cv2.GaussianBlur(pixels[y1:y2, x1:x2], (k, k), 0)
        mask = np.zeros((h, w), dtype=bool)
        mask[y1:y2, x1:x2] = True
        return ImageOut(image=out, edit_mask=mask)
