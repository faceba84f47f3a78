"""edit: recolour, remove, add, replace and move objects, and generate images, with diffusers.

Every local edit is an inpainting pass of diffusers' ``StableDiffusionInpaintPipeline`` on a
square crop around the edit region, resized to the model's working size (64 px for the tiny
ShapeWorld model, 512 for Stable Diffusion), then pasted back with a feathered mask: pixels
outside the (slightly dilated) region are byte-identical to the input, at the input's own
resolution. ``move`` is a remove at the old place and an add at the new one; ``generate`` paints
a background on an empty canvas and adds each described object at its place.

Conditioning is the target description ("a blue star", "background") as MiniLM token
embeddings (tiny) or SD's CLIP embeddings (full) — or, on the signal path, the router's own
tokens in that space (``SignalSpec(8, 384)`` for the tiny model).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator
from switchboard.core import (
    ExampleRequest,
    Image,
    ImageOut,
    InvalidInputError,
    NotFoundError,
    SignalSpec,
    Specialist,
    SpecialistFailedError,
    Track,
    Video,
    VideoOut,
    mask_to_box,
)
from switchboard.core.config import get_settings, models_dir
from switchboard.core.regions import BoolMask
from switchboard.core.specialist import check_object_resolved
from switchboard.core.vocabulary import COLORS, PLACES

from .colors import color_of_pixels
from .diffusion import COND_DIM, NUM_COND_TOKENS
from .fill import fill_from_surroundings, fill_smooth, recolor_within
from .objects import detect_objects
from .video_edit import (
    FRAME_BATCH,
    ObjectPath,
    check_video_op,
    recolor_all,
    remove_all,
    replace_all,
    shift,
)

EDIT_OPS = ("recolor", "remove", "add", "replace", "move", "generate")
BACKGROUND = "background"  # the description a removed object's region is painted with
# Object diameter as a share of the image side, per size word (ShapeWorld's radius bands x 2).
SIZE_SHARE = {"small": 0.13, "medium": 0.215, "large": 0.325}
MIN_CROP = 48  # pixels: the smallest crop window, so small regions keep some context
CROP_SCALE = 1.6  # crop side / region side: context around the region for the model
FEATHER = 2  # pixels of soft edge outside the region
# Adding into a box: a pixel counts as painted when a channel moved by more than this.
MATTE_DIFF = 40
BLOB_COLOR_DIST = 48.0  # RGB distance: a painted pixel this near the object's colour is the object


MOVE_GAP_PX = 2  # a moved object keeps this far from other objects' boxes where it can


def place_box(place: str, height: int, width: int) -> tuple[float, float, float, float]:
    """The third of the image (XYXY) that a place word names ("top left": the top-left cell
    of a 3x3 grid)."""
    col, row = PLACES[place]
    return col * width / 3, row * height / 3, (col + 1) * width / 3, (row + 1) * height / 3


def free_spot(
    mask: np.ndarray, occupied: np.ndarray, area: tuple[float, float, float, float]
) -> tuple[int, int]:
    """The shift ``(dx, dy)`` that puts ``mask`` (kept whole inside the image) with its box's
    centre in ``area`` (XYXY), over the fewest ``occupied`` pixels, nearest the area's centre
    among those; the nearest placement to the area when none centres in it."""
    x1, y1, x2, y2 = (int(v) for v in mask_to_box(mask))
    tpl = mask[y1:y2, x1:x2].astype(np.float32)
    bh, bw = tpl.shape
    # overlap[y, x]: occupied pixels under the mask with its box's top-left at (x, y).
    overlap = cv2.matchTemplate(occupied.astype(np.float32), tpl, cv2.TM_CCORR)
    ty, tx = np.mgrid[0 : overlap.shape[0], 0 : overlap.shape[1]].astype(np.float32)
    cx, cy = tx + bw / 2, ty + bh / 2
    ax1, ay1, ax2, ay2 = area
    outside = np.hypot(np.clip(np.maximum(ax1 - cx, cx - ax2), 0, None),
                       np.clip(np.maximum(ay1 - cy, cy - ay2), 0, None))  # fmt: skip
    centre = np.hypot(cx - (ax1 + ax2) / 2, cy - (ay1 + ay2) / 2)
    if (outside == 0).any():
        cost = np.where(outside == 0, np.round(overlap) * 1e4 + centre, np.inf)
    else:
        cost = outside
    y, x = np.unravel_index(int(np.argmin(cost)), cost.shape)
    return int(x) - x1, int(y) - y1


def describe(color: str | None, shape: str | None) -> str:
    """The target description the model is conditioned on: "a blue star", "a red object"."""
    return f"a {color or 'colored'} {shape or 'object'}"


def crop_window(
    box: tuple[float, float, float, float], height: int, width: int, min_side: int = MIN_CROP
) -> tuple[int, int, int]:
    """A square window ``(x0, y0, side)`` around ``box`` with context, inside the image."""
    x1, y1, x2, y2 = box
    side = int(round(max(CROP_SCALE * max(x2 - x1, y2 - y1), min_side)))
    side = max(1, min(side, height, width))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = int(round(min(max(cx - side / 2, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x0, y0, side


def resize(img: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    h = img.shape[0]
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
    return cv2.resize(img, (size, size), interpolation=interp)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A square HW bool mask resized to ``size``: a pixel is set when any of the area it covers
    is (so a thin region survives downscaling)."""
    if mask.shape[0] <= size:
        return resize(mask.astype(np.uint8), size, nearest=True) > 0
    return cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0


def latent_block_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """Grow a working-size mask to whole latent cells (``factor``×``factor`` pixels): the
    pipeline samples the mask at latent resolution, where a thin region could vanish."""
    h, w = mask.shape
    cells = mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))
    return np.repeat(np.repeat(cells, factor, axis=0), factor, axis=1)


def feather(mask: np.ndarray, radius: int = FEATHER) -> np.ndarray:
    """Alpha in [0, 1]: 1 inside ``mask``, falling to 0 within ``radius`` px outside it, and
    exactly 0 beyond (so the paste leaves every other pixel byte-identical)."""
    if radius <= 0:
        return mask.astype(np.float32)
    k = 2 * radius + 1
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
    alpha = cv2.GaussianBlur(grown.astype(np.float32), (k, k), radius / 2)
    alpha = np.where(mask, 1.0, alpha)
    return np.where(grown, alpha, 0.0).astype(np.float32)


def _object_blob(
    changed: np.ndarray, painted: np.ndarray, tint: tuple[int, int, int] | None
) -> np.ndarray:
    """The largest 8-connected blob of ``changed`` whose ``painted`` colour is within
    ``BLOB_COLOR_DIST`` of the object's colour (``tint``, refined to the median of the changed
    pixels near it; else the median of all changed pixels), holes closed."""
    if not changed.any():
        return changed
    px = painted.astype(np.float32)
    cols = px[changed]
    ref = np.median(cols, axis=0) if tint is None else np.asarray(tint, np.float32)
    near_ref = np.linalg.norm(cols - ref, axis=1) <= 2 * BLOB_COLOR_DIST
    if near_ref.any():
        ref = np.median(cols[near_ref], axis=0)
    blob = (changed & (np.linalg.norm(px - ref, axis=-1) <= BLOB_COLOR_DIST)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(blob, connectivity=8)
    if n <= 1:
        return changed
    blob = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    closed = cv2.morphologyEx(blob.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return closed.astype(bool) & changed | blob


def box_region(box: tuple[float, float, float, float], height: int, width: int) -> np.ndarray:
    """The pixels of an XYXY box as an HW bool mask (clipped to the image)."""
    x1, y1, x2, y2 = box
    region = np.zeros((height, width), bool)
    region[max(int(y1), 0) : int(np.ceil(y2)), max(int(x1), 0) : int(np.ceil(x2))] = True
    return region


def square_box(
    cx: float, cy: float, side: float, height: int, width: int
) -> tuple[float, float, float, float]:
    """A square of ``side`` centred on ``(cx, cy)``, clipped to the image."""
    return (
        max(cx - side / 2, 0.0),
        max(cy - side / 2, 0.0),
        min(cx + side / 2, float(width)),
        min(cy + side / 2, float(height)),
    )


REPLACE_SCALE = 1.25  # a new shape of the old one's size fits a square 1.25x its mask's box


def replace_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Where a replacing shape is painted: a square on the old object's box centre (any
    ShapeWorld shape of the same radius fits inside it)."""
    x1, y1, x2, y2 = mask_to_box(mask)
    h, w = mask.shape
    side = REPLACE_SCALE * max(x2 - x1, y2 - y1)
    return square_box((x1 + x2) / 2, (y1 + y2) / 2, side, h, w)


class GenObject(BaseModel):
    """One object of a generated image."""

    shape: str
    color: str
    place: str | None = Field(None, description="a named place; free places are filled in order")
    size: Literal["small", "medium", "large"] = "medium"


# The order in which objects without a place are spread over the canvas.
PLACE_ORDER = (
    "center", "left", "right", "top", "bottom", "top left", "bottom right", "top right",
    "bottom left",
)  # fmt: skip


def assign_places(objects: list[GenObject]) -> list[GenObject]:
    """Give every object without a place the first free one of ``PLACE_ORDER``."""
    used = {o.place for o in objects if o.place is not None}
    free = [p for p in PLACE_ORDER if p not in used]
    out = []
    for o in objects:
        if o.place is None:
            if not free:
                raise InvalidInputError(f"at most {len(PLACES)} objects fit on one canvas")
            o = o.model_copy(update={"place": free.pop(0)})
        elif o.place not in PLACES:
            raise InvalidInputError(f"unknown place {o.place!r}; expected one of {list(PLACES)}")
        out.append(o)
    return out


class EditArgs(BaseModel):
    """``op`` and what it needs. Regions: ``region`` (the object's mask or a free-hand mask,
    HW bool or COCO RLE), ``box`` (XYXY pixels), or ``target`` (a referring expression that
    segment resolves). ``add``/``move``/``generate`` place objects at a named ``place`` or a
    ``box``. ``prompt`` overrides the composed description; ``instruction`` is a whole-image
    instruction (full profile, InstructPix2Pix)."""

    op: Literal["recolor", "remove", "add", "replace", "move", "generate"] = Field(
        "recolor",
        description="on a video: recolor, remove or replace (the object is tracked and edited "
        "on every frame)",
    )
    target: str | None = Field(None, description="referring expression of the object to edit")
    every: bool = Field(
        False,
        description='edit every object ``target`` names ("all the blue shapes"): the agent '
        "runs one edit per listed member and checks that none is left",
    )
    object: int | None = Field(
        None,
        ge=1,
        description="#k of the object in the image's object list (the agent "
        "passes that detection's box)",
    )
    region: BoolMask | None = None
    box: tuple[float, float, float, float] | None = None
    frame: int = Field(0, ge=0, description="video: the frame `target`, `box` or `region` is on")
    color: str | None = Field(None, description="colour to paint (recolor/add/replace)")
    shape: str | None = Field(None, description="shape to paint (add/replace)")
    place: str | None = Field(None, description="where to add/move to: 'top left', 'center' …")
    size: Literal["small", "medium", "large"] | None = None
    objects: list[GenObject] | None = Field(None, description="generate: objects to draw")
    prompt: str | None = Field(None, description="description to paint, overriding the composed")
    instruction: str | None = None
    width: int = Field(256, ge=64, le=2048, description="generate: canvas width")
    height: int = Field(256, ge=64, le=2048, description="generate: canvas height")
    steps: int = Field(20, ge=1, le=200)
    # Classifier-free guidance: 4 measured best on 40 validation edits per kind (strict
    # success add 28 -> 30, replace 22 -> 24 of 40 against 3; 5-7 no better; recolour 40/40).
    guidance: float = Field(4.0, ge=1.0, le=20.0)
    seed: int = 0

    model_config = {"arbitrary_types_allowed": True}

    @model_validator(mode="after")
    def _consistent(self) -> EditArgs:
        if self.box is not None and not (self.box[2] > self.box[0] and self.box[3] > self.box[1]):
            raise ValueError(f"box {self.box} is not XYXY with x1 < x2 and y1 < y2")
        if self.place is not None and self.place not in PLACES:
            raise ValueError(f"unknown place {self.place!r}; expected one of {list(PLACES)}")
        return self


def parse_description(text: str, colors: list[str], shapes: list[str]) -> list[GenObject]:
    """ "a red circle at the top left and a small blue star" → objects (colour, shape, place,
    size words; pieces split on 'and' / commas)."""
    objects = []
    for piece in re.split(r",|\band\b|;", text.lower()):
        words = re.findall(r"[a-z]+", piece)
        color = next((w for w in words if w in colors), None)
        shape = next((s for s in shapes if s in words or s + "s" in words), None)
        if color is None and shape is None:
            continue
        if color is None or shape is None:
            raise InvalidInputError(f"say both a colour and a shape for {piece.strip()!r}")
        place = next((p for p in sorted(PLACES, key=len, reverse=True) if p in piece), None)
        size = next((w for w in words if w in SIZE_SHARE), "medium")
        objects.append(GenObject(shape=shape, color=color, place=place, size=size))
    if not objects:
        raise InvalidInputError(f"no object described in {text!r}")
    return objects


class EditSpecialist(Specialist):
    name = "edit"
    description = (
        "Edit or generate pixels: recolour, remove, add, replace or move an object, or draw "
        "a new image from a description; recolour, remove or replace an object through a "
        "whole video. Everything outside the edited region is unchanged."
    )
    tasks = EDIT_OPS
    Args = EditArgs
    signal = SignalSpec(num_tokens=NUM_COND_TOKENS, dim=COND_DIM)  # MiniLM token space
    media = ("image", "video", "none")
    examples = (
        ExampleRequest(
            request="make the {ref} {color}",
            args={"op": "recolor", "target": "{ref}", "color": "{color}"},
        ),
        ExampleRequest(request="remove the {ref}", args={"op": "remove", "target": "{ref}"}),
        ExampleRequest(
            request="add a {color} {shape} at the {place}",
            args={"op": "add", "color": "{color}", "shape": "{shape}", "place": "{place}"},
        ),
        ExampleRequest(
            request="draw a {color} {shape}",
            args={"op": "generate", "prompt": "a {color} {shape}"},
        ),
    )

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        p, op = intent.params, intent.task
        keep = {
            "recolor": ("color",),
            "remove": (),
            "move": ("place",),
            "replace": ("shape",),
            "add": ("color", "shape", "place", "size"),
        }
        if op == "generate" and p.get("objects"):
            objects = [
                {k: o[k] for k in ("shape", "color", "place", "size") if k in o}
                for o in p["objects"]
            ]
            return {"op": "generate", "objects": objects}
        if op not in keep:
            return None
        args: dict[str, Any] = {"op": op}
        if op != "add":
            if intent.target_text:
                args["target"] = intent.target_text
                if p.get("every"):
                    args["every"] = True
            elif "box" in p:  # e.g. one step of "remove every diamond", after a detect
                args["box"] = [float(v) for v in p["box"]]
            else:
                return None
        args.update({k: p[k] for k in keep[op] if k in p})
        return args

    def __init__(self, weights: str | Path | None = None, segmenter: Any = None) -> None:
        super().__init__()
        self.weights = weights
        self._segmenter = segmenter  # resolves regions from a box or a target; lazily
        self.pipe: Any = None
        self.pix2pix: Any = None
        self.conditioner: Any = None
        self.vocab: dict[str, list[str]] | None = None  # tiny: the words the model was taught
        self.work_size = 64
        self.frame_batch = FRAME_BATCH  # video frames per model pass (1: frame by frame)
        self._tracker: Any = None

    # -- loading ---------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: Any = None) -> EditSpecialist:
        from .diffusion import TextConditioner, load_full_pipelines, load_tiny_pipeline

        settings = get_settings()
        if self.weights is None and settings.profile == "full":
            if settings.edit_weights is None:
                raise SpecialistFailedError("edit", "profile 'full' needs SWITCHBOARD_EDIT_WEIGHTS")
            self.pipe, self.pix2pix = load_full_pipelines(
                settings.edit_weights, settings.edit_instruct_weights, dtype
            )
            self.conditioner, self.vocab = None, None
            enc = self.pipe.text_encoder
            # The signal is the text encoder's output space (77 x 768 for SD 1.x).
            self.signal = SignalSpec(
                num_tokens=self.pipe.tokenizer.model_max_length, dim=enc.config.hidden_size
            )
        else:
            path = Path(self.weights) if self.weights is not None else models_dir() / "edit-tiny"
            if not (path / "model_index.json").is_file():
                raise FileNotFoundError(f"edit weights not found: {path}")
            self.pipe = load_tiny_pipeline(path, dtype)
            self.conditioner = TextConditioner()
            self.vocab = json.loads((path / "switchboard.json").read_text())["vocabulary"]
            self.signal = type(self).signal
        self.pipe.to(device)
        self.work_size = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return super().load(device, dtype)

    def unload(self) -> None:
        self.pipe = self.pix2pix = self.conditioner = None
        super().unload()

    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from . import peer

            self._segmenter = peer(self, "segment")
        return self._segmenter

    @property
    def tracker(self) -> Any:
        if self._tracker is None:
            from . import peer

            self._tracker = peer(self, "track")
        return self._tracker

    # -- conditioning ----------------------------------------------------------------------
    def _check_word(self, kind: str, word: str | None) -> None:
        if word is None or self.vocab is None:
            return
        if word not in self.vocab[kind]:
            raise InvalidInputError(
                f"unknown {kind[:-1]} {word!r}; this model knows {', '.join(self.vocab[kind])}"
            )

    def _embeds(self, text: str, signal: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditioning, unconditional) embeddings ``[1, K, D]`` for the pipeline."""
        dev = self.pipe.unet.device
        dtype = self.pipe.unet.dtype
        if self.conditioner is not None:
            cond, uncond = self.conditioner([text, ""]).split(1)
        else:
            cond, uncond = self.pipe.encode_prompt(text, dev, 1, True, "")
        if signal is not None:
            # The router's signal refines the description: a residual on its tokens (the
            # heads' gate starts at zero, so an untrained signal changes nothing).
            cond = cond + torch.as_tensor(signal, dtype=cond.dtype).reshape(1, *cond.shape[1:])
        return cond.to(dev, dtype), uncond.to(dev, dtype)

    # -- the one inpainting pass -----------------------------------------------------------
    def inpaint(
        self,
        image: np.ndarray,
        region: np.ndarray,
        text: str,
        args: EditArgs,
        signal: Any = None,
        matte: bool = False,
        tint: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Repaint ``region`` (HW bool) of ``image`` as ``text`` describes (or as ``signal``
        conditions); returns the new image and the mask of pixels that may have changed.

        ``matte`` (adding an object into a box): paste only the pixels the model changed
        (a difference matte against the input, cleaned of specks). The rest of the box keeps its
        original bytes instead of the model's re-rendering of the background; ``tint`` (the
        new object's colour name) picks the object out of what changed (:func:`_object_blob`)."""
        h, w = image.shape[:2]
        x0, y0, side = crop_window(mask_to_box(region), h, w)
        crop = image[y0 : y0 + side, x0 : x0 + side]
        n = self.work_size
        factor = self.pipe.vae_scale_factor
        mask_w = latent_block_mask(resize_mask(region[y0 : y0 + side, x0 : x0 + side], n), factor)
        cond, uncond = self._embeds(text, signal)
        gen = torch.Generator(device="cpu").manual_seed(args.seed)
        img_t = torch.from_numpy(resize(crop, n)).permute(2, 0, 1)[None].float() / 255
        out = self.pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            image=img_t,
            mask_image=torch.from_numpy(mask_w)[None, None].float(),
            height=n,
            width=n,
            strength=1.0,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=gen,
            output_type="np",
        ).images[0]
        painted = resize((np.clip(out, 0, 1) * 255).round().astype(np.uint8), side)
        if matte:
            rgb = COLORS.get(tint) if tint else None
            region = self._matte(region, painted, crop, (y0, x0, side), rgb)
        # Paste: the region plus a feathered rim; everything else keeps its original bytes.
        # The feather of a pixel depends on the region within 2*FEATHER px of it, so it is
        # computed over the window grown by that much, not over the whole (possibly huge) image.
        pad = 2 * FEATHER
        py0, px0 = max(y0 - pad, 0), max(x0 - pad, 0)
        grown = feather(region[py0 : y0 + side + pad, px0 : x0 + side + pad])
        alpha = grown[y0 - py0 : y0 - py0 + side, x0 - px0 : x0 - px0 + side, None]
        result = image.copy()
        blend = alpha * painted.astype(np.float32) + (1 - alpha) * crop.astype(np.float32)
        changed = alpha[..., 0] > 0
        window = result[y0 : y0 + side, x0 : x0 + side]
        window[changed] = np.clip(blend.round(), 0, 255).astype(np.uint8)[changed]
        full_changed = np.zeros((h, w), bool)
        full_changed[y0 : y0 + side, x0 : x0 + side] = changed
        return result, full_changed

    @staticmethod
    def _matte(
        region: np.ndarray,
        painted: np.ndarray,
        crop: np.ndarray,
        window: tuple[int, int, int],
        tint: tuple[int, int, int] | None = None,
    ) -> np.ndarray:
        """The part of ``region`` where ``painted`` differs from ``crop`` (max channel gap >
        ``MATTE_DIFF``; opened to drop specks, closed to fill holes) — and of
        that, the new object alone: the largest connected blob of the changed pixels whose
        colour is the object's (``tint``, the requested colour, else the changed pixels'
        median). A neighbour the model re-rendered a little differently, or background it
        re-textured, changed too, but is not the object and keeps its pixels."""
        y0, x0, side = window
        diff = np.abs(painted.astype(np.int16) - crop.astype(np.int16)).max(axis=-1)
        m = (diff > MATTE_DIFF).astype(np.uint8)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        m = _object_blob(m.astype(bool), painted, tint).astype(np.uint8)
        out = np.zeros_like(region)
        out[y0 : y0 + side, x0 : x0 + side] = m.astype(bool)
        out &= region
        return out

    # -- regions ---------------------------------------------------------------------------
    def _check_box(self, box: tuple[float, ...], h: int, w: int) -> None:
        x1, y1, x2, y2 = box
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise InvalidInputError(f"box {box} is not XYXY inside the {w}x{h} image")

    def _object_mask(self, image: np.ndarray, args: EditArgs) -> np.ndarray:
        h, w = image.shape[:2]
        if args.region is not None:
            region = np.asarray(args.region, bool)
            if region.shape != (h, w):
                raise InvalidInputError(
                    f"region mask is {region.shape[1]}x{region.shape[0]}, image is {w}x{h}"
                )
            if not region.any():
                raise InvalidInputError("the region mask is empty")
            return region
        if args.box is not None:
            self._check_box(args.box, h, w)
            masks = self.segmenter(Image(pixels=image), {"box": args.box})
        elif args.target:
            masks = self.segmenter(Image(pixels=image), {"target": args.target})
        else:
            raise InvalidInputError(f"{args.op} needs a region, a box or a target")
        mask = np.asarray(masks.masks[0], bool)
        if not mask.any():
            raise InvalidInputError("the segmenter found nothing to edit there")
        return mask

    def _paint_box(self, h: int, w: int, args: EditArgs, size_px: float | None = None) -> tuple:
        if args.box is not None and args.op == "add":
            self._check_box(args.box, h, w)
            return args.box
        if args.place is None:
            raise InvalidInputError(f"{args.op} needs a place (e.g. 'top left') or a box")
        col, row = PLACES[args.place]
        side = min(size_px or SIZE_SHARE[args.size or "medium"] * min(h, w), h, w)
        cx, cy = (col + 0.5) * w / 3, (row + 0.5) * h / 3
        x1 = min(max(cx - side / 2, 0), w - side)
        y1 = min(max(cy - side / 2, 0), h - side)
        return (x1, y1, x1 + side, y1 + side)

    def _looks(self, image: np.ndarray, mask: np.ndarray, args: EditArgs) -> tuple:
        """(colour, shape) of the edited object: from the arguments, else the target words,
        else (colour) its pixels."""
        color, shape = args.color, args.shape
        words = re.findall(r"[a-z]+", (args.target or "").lower())
        known_shapes = self.vocab["shapes"] if self.vocab else []
        if shape is None:
            shape = next((s for s in known_shapes if s in words), None)
        if color is None:
            color = color_of_pixels(image[mask])
        return color, shape

    # -- run -------------------------------------------------------------------------------
    def run(
        self, media: Image | Video | None, args: EditArgs, signal: Any = None
    ) -> ImageOut | VideoOut:
        check_object_resolved(args)
        for kind, word in (("colors", args.color), ("shapes", args.shape)):
            self._check_word(kind, word)
        if args.op == "generate":
            if isinstance(media, Video):
                check_video_op(args.op, media)
            return self._generate(media, args, signal)
        if isinstance(media, Video):
            return self._edit_video(media, args, signal)
        if media is None:
            raise InvalidInputError(f"{args.op} needs an image")
        image = media.pixels
        h, w = image.shape[:2]
        if args.instruction is not None:
            return self._instruct(image, args)
        if args.op == "add":
            if args.color is None or args.shape is None:
                raise InvalidInputError("add needs a colour and a shape")
            region = box_region(self._paint_box(h, w, args), h, w)
            text = args.prompt or describe(args.color, args.shape)
            out, changed = self.inpaint(
                image, region, text, args, signal, matte=True, tint=args.color
            )
            return ImageOut(image=out, edit_mask=changed)
        mask = self._object_mask(image, args)
        color, shape = self._looks(image, mask, args)
        if args.op == "recolor":
            if args.color is None and args.prompt is None and signal is None:
                raise InvalidInputError("recolor needs a colour")
            painted, _ = self.inpaint(
                image, mask, args.prompt or describe(args.color, shape), args, signal
            )
            # The model gives the colour; the object keeps its outline and shading.
            out, changed = recolor_within(image, mask, painted), mask
        elif args.op == "remove":
            out, changed = self._remove(image, mask, args, signal)
        elif args.op == "replace":
            if args.shape is None and args.prompt is None and signal is None:
                raise InvalidInputError("replace needs a shape")
            # The old object is removed first (as a removal), then the new one painted into
            # its box: what the new shape does not cover is background, not the old object.
            cleared, gone = self._remove(image, mask, args.model_copy(update={"prompt": None}))
            region = box_region(replace_box(mask), h, w)
            text = args.prompt or describe(color, args.shape)
            out, added = self.inpaint(cleared, region, text, args, signal, matte=True, tint=color)
            changed = gone | added
        else:  # move: removed where it is, its own pixels where it goes
            out, changed = self._move(image, mask, args)
        return ImageOut(image=out, edit_mask=changed)

    # -- video ---------------------------------------------------------------------------------
    def _edit_video(self, video: Video, args: EditArgs, signal: Any) -> VideoOut:
        """Recolour, remove or replace the object through the whole clip (:mod:`.video_edit`):
        tracked, then edited on every frame inside its mask; the rest of every frame keeps its
        bytes."""
        check_video_op(args.op, video)
        if args.frame >= video.num_frames:
            raise InvalidInputError(
                f"frame {args.frame} is past the last frame ({video.num_frames - 1})"
            )
        if args.op == "recolor" and args.color is None and args.prompt is None and signal is None:
            raise InvalidInputError("recolor needs a colour")
        if args.op == "replace" and args.shape is None and args.prompt is None and signal is None:
            raise InvalidInputError("replace needs a shape")
        frames = video.frames
        # The object (masks per frame) and every other object the tracker followed (boxes,
        # kept out of the background estimate), from one pass of detection and tracking.
        track, others = self._track(video, args)
        path = ObjectPath(frames, track, others)
        ref = path.ref
        color, shape = self._looks(frames[ref], path.masks[ref], args)

        def paint(frame: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self.inpaint(frame, hole, args.prompt or BACKGROUND, args, signal)

        if args.op == "recolor":
            text = args.prompt or describe(args.color, shape)
            painted = self.paint_frames(frames, path.masks, text, args, signal)
            out, written = recolor_all(frames, path, painted)
        else:
            out, written = remove_all(frames, path, paint)
            if args.op == "replace":
                # The new shape is painted once, on the reference frame with the old object
                # removed, and follows the object from there.
                h, w = frames.shape[1:3]
                region = box_region(replace_box(path.masks[ref]), h, w)
                text = args.prompt or describe(color, args.shape)
                sprite, alpha = self.inpaint(
                    out[ref], region, text, args, signal, matte=True, tint=color
                )
                out, written = replace_all(out, written, frames, path, sprite, alpha)
        return VideoOut(frames=out, fps=video.fps, edit_masks=list(written), track=track)

    def _track(self, video: Video, args: EditArgs) -> tuple[Track, list[Track]]:
        """The edited object through the clip (the track specialist, masks on), and the other
        objects it followed (boxes only)."""
        targs: dict[str, Any] = {"frame": args.frame, "masks": True, "others": True}
        if args.region is not None:
            region = np.asarray(args.region, bool)
            if region.shape != (video.height, video.width):
                raise InvalidInputError(
                    f"region mask is {region.shape[1]}x{region.shape[0]}, "
                    f"video is {video.width}x{video.height}"
                )
            if not region.any():
                raise InvalidInputError("the region mask is empty")
            targs["box"] = mask_to_box(region)
        elif args.box is not None:
            self._check_box(args.box, video.height, video.width)
            targs["box"] = args.box
        elif args.target:
            targs["target"] = args.target
        else:
            raise InvalidInputError(f"{args.op} needs a region, a box or a target")
        tracks = self.tracker(video, targs)
        if tracks.tracks and tracks.tracks[0].masks:
            return tracks.tracks[0], tracks.others
        if "box" in targs:
            # The detector missed the object where it was shown: its mask on that frame (the
            # region, or segment's for the box) starts the path, which follows it from there
            # by its appearance.
            at = args.frame
            if args.region is not None:
                mask = np.asarray(args.region, bool)
            else:
                seg = self.segmenter(Image(pixels=video.frames[at]), {"box": targs["box"]})
                mask = np.asarray(seg.masks[0], bool)
            if mask.any():
                track = Track(track_id=0, frames=[at], xyxy=[mask_to_box(mask)], masks=[mask])
                return track, tracks.others
        what = args.target or "the object"
        raise NotFoundError(f"{what} could not be followed through the video")

    def paint_frames(
        self, frames: np.ndarray, masks: np.ndarray, text: str, args: EditArgs, signal: Any
    ) -> list[np.ndarray | None]:
        """The model's repaint of each frame's masked object (full frames, None where the mask
        is empty), ``frame_batch`` frames per pipeline call, each frame from the same noise and
        the same conditioning (so the frames are painted alike)."""
        n, factor = self.work_size, self.pipe.vae_scale_factor
        todo = [t for t, m in enumerate(masks) if m.sum() >= 8]
        out: list[np.ndarray | None] = [None] * len(frames)
        cond, uncond = self._embeds(text, signal)
        h, w = frames.shape[1:3]
        for at in range(0, len(todo), max(self.frame_batch, 1)):
            chunk = todo[at : at + max(self.frame_batch, 1)]
            windows = [crop_window(mask_to_box(masks[t]), h, w) for t in chunk]
            crops = [
                frames[t, y0 : y0 + s, x0 : x0 + s]
                for t, (x0, y0, s) in zip(chunk, windows, strict=True)
            ]
            mks = [latent_block_mask(resize_mask(masks[t, y0 : y0 + s, x0 : x0 + s], n), factor)
                   for t, (x0, y0, s) in zip(chunk, windows, strict=True)]  # fmt: skip
            imgs = np.stack([resize(c, n) for c in crops])
            img_t = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
            k = len(chunk)
            painted = self.pipe(
                prompt_embeds=cond.expand(k, -1, -1),
                negative_prompt_embeds=uncond.expand(k, -1, -1),
                image=img_t,
                mask_image=torch.from_numpy(np.stack(mks))[:, None].float(),
                height=n,
                width=n,
                strength=1.0,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                generator=[torch.Generator(device="cpu").manual_seed(args.seed) for _ in chunk],
                output_type="np",
            ).images
            for t, (x0, y0, s), p in zip(chunk, windows, painted, strict=True):
                full = frames[t].copy()
                full[y0 : y0 + s, x0 : x0 + s] = resize(
                    (np.clip(p, 0, 1) * 255).round().astype(np.uint8), s
                )
                out[t] = full
        return out

    def _move(
        self, image: np.ndarray, mask: np.ndarray, args: EditArgs
    ) -> tuple[np.ndarray, np.ndarray]:
        """The object under ``mask`` moved to ``args.place``: removed where it is (as a
        removal), and its own pixels (its exact look: a move changes where, not what) put where
        it overlaps the fewest other objects in the place's third of the image, nearest its
        centre; where it cannot help overlapping one, it goes behind it (a move never paints
        over another object). The other objects are the detector's on the cleared image."""
        h, w = mask.shape
        if args.place is None:
            raise InvalidInputError("move needs a place (e.g. 'top left')")
        out, gone = self._remove(image, mask, args.model_copy(update={"prompt": None}))
        objects = detect_objects(self._detector(), out)
        occupied = np.zeros((h, w), bool)
        for o in objects:
            x1, y1, x2, y2 = o.xyxy
            g = MOVE_GAP_PX
            occupied[max(int(y1) - g, 0) : int(np.ceil(y2)) + g,
                     max(int(x1) - g, 0) : int(np.ceil(x2)) + g] = True  # fmt: skip
        dx, dy = free_spot(mask, occupied, place_box(args.place, h, w))
        moved = shift(mask, dx, dy, (h, w))
        behind = np.zeros((h, w), bool)
        for o in objects:
            if box_region(o.xyxy, h, w)[moved].any():
                seg = self.segmenter(Image(pixels=out), {"box": o.xyxy})
                behind |= np.asarray(seg.masks[0], bool)
        put = moved & ~behind
        ys, xs = np.nonzero(put)
        out[ys, xs] = image[ys - dy, xs - dx]
        return out, gone | put

    def _detector(self) -> Any:
        from . import peer

        det = peer(self, "detect")
        if not det.loaded:
            det.load(self.device or "cpu")
        return det

    def _remove(
        self, image: np.ndarray, mask: np.ndarray, args: EditArgs, signal: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The object under ``mask`` removed: the hole filled from the image's own background
        where a patch of it matches the hole's surroundings, else by the smooth surface that
        fits them (:mod:`.fill`), else painted as "background" (or the request's own
        ``prompt``) by the model."""
        if args.prompt is None:
            filled = fill_from_surroundings(image, mask)
            if filled is None:
                filled = fill_smooth(image, mask)
            if filled is not None:
                return filled
        return self.inpaint(image, mask, args.prompt or BACKGROUND, args, signal)

    def _generate(self, media: Image | None, args: EditArgs, signal: Any) -> ImageOut:
        vocab = self.vocab or {"colors": [], "shapes": []}
        if args.objects is not None:
            objects = args.objects
        elif args.prompt is not None and self.vocab is not None:
            objects = parse_description(args.prompt, vocab["colors"], vocab["shapes"])
        elif args.prompt is not None:  # full profile: one text-to-image pass on the canvas
            objects = []
        else:
            raise InvalidInputError("generate needs a prompt or a list of objects")
        objects = assign_places(list(objects))
        for o in objects:
            self._check_word("colors", o.color)
            self._check_word("shapes", o.shape)
        if media is not None:
            canvas = media.pixels.copy()
        else:
            h, w = args.height, args.width
            canvas = np.full((h, w, 3), 128, np.uint8)
            everything = np.ones((h, w), bool)
            text = BACKGROUND if self.vocab is not None else args.prompt
            canvas, _ = self.inpaint(canvas, everything, text, args, None if objects else signal)
        h, w = canvas.shape[:2]
        for i, o in enumerate(objects):
            step = args.model_copy(
                update={
                    "op": "add",
                    "place": o.place,
                    "size": o.size,
                    "box": None,
                    "seed": args.seed + i + 1,
                }
            )
            region = box_region(self._paint_box(h, w, step), h, w)
            canvas, _ = self.inpaint(
                canvas, region, describe(o.color, o.shape), step, matte=True, tint=o.color
            )
        return ImageOut(image=canvas)

    def _instruct(self, image: np.ndarray, args: EditArgs) -> ImageOut:
        if self.pix2pix is None:
            raise InvalidInputError(
                "whole-image instructions need the full profile with "
                "SWITCHBOARD_EDIT_INSTRUCT_WEIGHTS (InstructPix2Pix weights)"
            )
        h, w = image.shape[:2]
        n = self.pix2pix.unet.config.sample_size * self.pix2pix.vae_scale_factor
        img_t = torch.from_numpy(cv2.resize(image, (n, n))).permute(2, 0, 1)[None].float() / 255
        out = self.pix2pix(
            prompt=args.instruction,
            image=img_t,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator(device="cpu").manual_seed(args.seed),
            output_type="np",
        ).images[0]
        out = cv2.resize((np.clip(out, 0, 1) * 255).round().astype(np.uint8), (w, h))
        return ImageOut(image=out, edit_mask=np.ones((h, w), bool))
