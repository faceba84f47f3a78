"""ShapeWorld scenes: coloured shapes on textured backgrounds, with exact visible masks.

Everything is deterministic by seed: ``generate_scene(seed)`` returns the same bytes on every
machine. Masks are drawn without anti-aliasing, so a pixel belongs to exactly one object (or the
background) and ``masks[i]`` is the *visible* part of object ``i`` after occlusion by the
objects drawn above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

import cv2
import numpy as np
from switchboard.core.vocabulary import COLORS

SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
COLOR_NAMES = tuple(COLORS)
# Radius as a fraction of the image side; the gaps between bands keep size words unambiguous.
SIZES: dict[str, tuple[float, float]] = {
    "small": (0.055, 0.075),
    "medium": (0.095, 0.12),
    "large": (0.145, 0.18),
}
SIZE_NAMES = tuple(SIZES)
BACKGROUNDS = ("noise", "stripes", "checker", "gradient", "plain")
# An object must keep this share of its own area visible, or the scene is re-drawn.
MIN_VISIBLE_FRACTION = 0.45
MIN_VISIBLE_PIXELS = 30


@dataclass(frozen=True)
class ShapeObject:
    """One shape: geometry in pixels (centre ``(x, y)``, radius, rotation in degrees)."""

    id: int
    shape: str
    color: str
    size: str
    x: float
    y: float
    radius: float
    angle: float = 0.0

    def describe(self) -> str:
        return f"{self.size} {self.color} {self.shape}"


@dataclass(frozen=True)
class Background:
    kind: str
    seed: int
    tint: tuple[int, int, int]


@dataclass
class Scene:
    """A rendered scene. Objects are listed bottom to top (drawing order = z-order).

    ``image`` is HWC uint8 RGB; ``full_masks``/``masks`` are ``[N, H, W]`` bool (whole shape and
    visible part); ``boxes`` are ``[N, 4]`` XYXY of the visible part (exclusive end).
    """

    seed: int
    size: int
    background: Background
    objects: list[ShapeObject]
    image: np.ndarray
    full_masks: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.boxes = np.array([_mask_box(m) for m in self.masks], dtype=np.float32).reshape(-1, 4)

    def index(self, object_id: int) -> int:
        for i, obj in enumerate(self.objects):
            if obj.id == object_id:
                return i
        raise KeyError(f"no object with id {object_id}")

    def visible_fraction(self, i: int) -> float:
        full = self.full_masks[i].sum()
        return float(self.masks[i].sum() / full) if full else 0.0

    def others_in_box(self) -> np.ndarray:
        """For each object, how many other objects show pixels inside its box ``[N]``: the
        clutter a box prompt has to see through (0 = the object is alone in its box)."""
        counts = np.zeros(len(self.objects), dtype=np.int64)
        for i, (x0, y0, x1, y1) in enumerate(self.boxes.astype(int)):
            inside = self.masks[:, y0:y1, x0:x1].any(axis=(1, 2))
            counts[i] = int(inside.sum()) - int(inside[i])
        return counts


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@cache
def _unit_outline(shape: str) -> np.ndarray:
    """Outline of a shape of radius 1 centred on the origin, ``[P, 2]`` (x, y), y down."""

    def ring(n: int, start: float = -np.pi / 2) -> np.ndarray:
        t = start + np.arange(n) * 2 * np.pi / n
        return np.stack([np.cos(t), np.sin(t)], axis=1)

    if shape == "circle":
        return ring(64)
    if shape == "square":
        return ring(4, start=np.pi / 4)
    if shape == "triangle":
        return ring(3) * 1.1  # scaled so its area is closer to the other shapes'
    if shape == "hexagon":
        return ring(6, start=0.0)
    if shape == "diamond":
        return ring(4) * np.array([0.62, 1.0])  # a narrow rhombus, never a rotated square
    if shape == "star":
        outer, inner = ring(5), ring(5, start=-np.pi / 2 + np.pi / 5) * 0.45
        return np.stack([outer, inner], axis=1).reshape(-1, 2)
    if shape == "cross":
        a = 0.34  # half arm width
        return np.array(
            [
                (-a, -1),
                (a, -1),
                (a, -a),
                (1, -a),
                (1, a),
                (a, a),
                (a, 1),
                (-a, 1),
                (-a, a),
                (-1, a),
                (-1, -a),
                (-a, -a),
            ],
            dtype=float,
        )
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        pts = np.stack([x, y], axis=1) / 16.0
        return pts - pts.mean(axis=0)
    raise ValueError(f"unknown shape {shape!r}")


def object_polygon(obj: ShapeObject) -> np.ndarray:
    """The object's outline in pixel coordinates, ``[P, 2]`` (x, y)."""
    pts = _unit_outline(obj.shape) * obj.radius
    th = np.deg2rad(obj.angle)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return pts @ rot.T + np.array([obj.x, obj.y])


def object_mask(obj: ShapeObject, height: int, width: int | None = None) -> np.ndarray:
    """The whole (unoccluded) shape as an HW bool mask; parts outside the frame are cut."""
    width = width or height
    canvas = np.zeros((height, width), dtype=np.uint8)
    # Sub-pixel precision (shift=4) keeps small shapes faithful; lineType 8 = no anti-aliasing.
    pts = np.round(object_polygon(obj) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def render_background(bg: Background, size: int) -> np.ndarray:
    """A low-saturation textured background, HWC uint8 (deterministic by ``bg.seed``)."""
    rng = np.random.default_rng(bg.seed)
    tint = np.array(bg.tint, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if bg.kind == "noise":
        coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
        field_ = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) * 14
        field_ += rng.normal(0, 4, (size, size)).astype(np.float32)
    elif bg.kind == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(0.06, 0.15)
        field_ = 12 * np.sign(
            np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
        )
    elif bg.kind == "checker":
        cells = int(rng.integers(4, 10))
        field_ = 12 * (((xx * cells).astype(int) + (yy * cells).astype(int)) % 2 * 2 - 1).astype(
            np.float32
        )
    elif bg.kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        field_ = 40 * ((xx - 0.5) * np.cos(theta) + (yy - 0.5) * np.sin(theta))
    else:
        field_ = rng.normal(0, 2, (size, size)).astype(np.float32)
    img = tint[None, None, :] + field_[:, :, None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _object_fill(obj: ShapeObject, size: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The object's shaded colour over its bounding square (clipped to the frame)."""
    r = int(np.ceil(obj.radius * 1.15)) + 1
    # Clamped so an object (partly) outside the frame gives an empty, not a wrapped, slice.
    y0 = min(max(int(obj.y) - r, 0), size)
    y1 = max(min(int(obj.y) + r + 1, size), y0)
    x0 = min(max(int(obj.x) - r, 0), size)
    x1 = max(min(int(obj.x) + r + 1, size), x0)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # Light from the top-left: +-10% shading keeps the colour name unambiguous.
    shade = 1.0 + 0.1 * (-(xx - obj.x) - (yy - obj.y)) / max(obj.radius, 1.0)
    base = np.array(COLORS[obj.color], dtype=np.float32)
    fill = np.clip(base[None, None, :] * np.clip(shade, 0.88, 1.12)[:, :, None], 0, 255)
    return fill.astype(np.uint8), (slice(y0, y1), slice(x0, x1))


def visible_masks(full: np.ndarray) -> np.ndarray:
    """Visible parts ``[N, H, W]`` of whole masks ``[N, H, W]`` listed bottom to top."""
    owner = np.full(full.shape[1:], -1, dtype=np.int16)
    for i in range(full.shape[0]):
        owner[full[i]] = i
    return owner[None, :, :] == np.arange(full.shape[0], dtype=np.int16)[:, None, None]


def render(objects: list[ShapeObject], background: Background, size: int, seed: int = 0) -> Scene:
    """Draw ``objects`` bottom to top over ``background`` and compute visible masks."""
    image = render_background(background, size)
    full = np.zeros((len(objects), size, size), dtype=bool)
    for i, obj in enumerate(objects):
        full[i] = object_mask(obj, size)
        fill, (sy, sx) = _object_fill(obj, size)
        local = full[i][sy, sx]
        image[sy, sx][local] = fill[local]
    return Scene(
        seed=seed,
        size=size,
        background=background,
        objects=list(objects),
        image=image,
        full_masks=full,
        masks=visible_masks(full),
    )


def sample_background(rng: np.random.Generator) -> Background:
    kind = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    # Greys with a faint tint: never saturated enough to be read as a shape colour.
    level = float(rng.choice([rng.uniform(70, 110), rng.uniform(150, 200)]))
    tint = tuple(int(np.clip(level + rng.uniform(-12, 12), 0, 255)) for _ in range(3))
    return Background(kind=kind, seed=int(rng.integers(2**31)), tint=tint)  # type: ignore[arg-type]


def sample_object(
    rng: np.random.Generator,
    object_id: int,
    size: int,
    *,
    shape: str | None = None,
    color: str | None = None,
    size_name: str | None = None,
    margin: float = 1.0,
) -> ShapeObject:
    """A random object fully inside the frame (``margin`` ≥ 1 keeps it off the border)."""
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    color = color or COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
    size_name = size_name or SIZE_NAMES[int(rng.integers(len(SIZE_NAMES)))]
    lo, hi = SIZES[size_name]
    radius = float(rng.uniform(lo, hi) * size)
    pad = radius * 1.15 * margin + 2
    x, y = rng.uniform(pad, size - pad, size=2)
    angle = 0.0 if shape == "circle" else float(rng.uniform(-20, 20))
    return ShapeObject(object_id, shape, color, size_name, float(x), float(y), radius, angle)


def masks_valid(full: np.ndarray, visible: np.ndarray) -> bool:
    """Every object keeps enough of itself visible to be referred to."""
    vis = visible.sum(axis=(1, 2))
    whole = np.maximum(full.sum(axis=(1, 2)), 1)
    return bool(((vis >= MIN_VISIBLE_PIXELS) & (vis / whole >= MIN_VISIBLE_FRACTION)).all())


def is_valid(scene: Scene) -> bool:
    return masks_valid(scene.full_masks, scene.masks)


def truncate_at_border(obj: ShapeObject, size: int, rng: np.random.Generator) -> ShapeObject:
    """Move ``obj`` so the frame cuts it: its centre lands between 0.4 radii outside and 0.8
    radii inside a random edge (as objects entering or leaving a camera's view)."""
    edge = int(rng.integers(4))
    offset = float(rng.uniform(-0.4, 0.8)) * obj.radius
    pos = offset if edge < 2 else size - offset
    return replace(obj, x=pos, y=obj.y) if edge % 2 == 0 else replace(obj, x=obj.x, y=pos)


def generate_scene(
    seed: int,
    size: int = 256,
    num_objects: int | None = None,
    max_objects: int = 8,
    truncate_prob: float = 0.0,
) -> Scene:
    """A random scene of 1–``max_objects`` shapes, deterministic by ``seed``.

    Objects are added one at a time; an object that would hide too much of itself or of
    another is re-sampled (a few tries), then dropped. With ``truncate_prob > 0`` that share of
    objects is cut by the frame's border (detector training); at 0 no random numbers are drawn
    for it, so the default scenes stay exactly as they are.
    """
    rng = np.random.default_rng(seed)
    background = sample_background(rng)
    n = num_objects if num_objects is not None else int(rng.integers(1, max_objects + 1))
    objects: list[ShapeObject] = []
    full = np.zeros((0, size, size), dtype=bool)
    for obj_id in range(n):
        for _ in range(12):
            cand = sample_object(rng, obj_id, size)
            if truncate_prob > 0 and rng.random() < truncate_prob:
                cand = truncate_at_border(cand, size, rng)
            trial = np.concatenate([full, object_mask(cand, size)[None]])
            if masks_valid(trial, visible_masks(trial)):
                objects, full = [*objects, cand], trial
                break
    return render(objects, background, size, seed)


def with_objects(scene: Scene, objects: list[ShapeObject]) -> Scene:
    """The same background re-rendered with another object list (for edits)."""
    return render(objects, scene.background, scene.size, scene.seed)
