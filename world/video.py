"""ShapeWorld videos: shapes that move, bounce, occlude one another, enter and leave.

Each object keeps its id as its track id. Per frame the ground truth is the visible mask and
box of every object and whether it is present (enough of it is visible to be seen).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .scene import (
    MIN_VISIBLE_PIXELS,
    Background,
    ShapeObject,
    render,
    sample_background,
    sample_object,
)

MOTIONS = ("bounce", "bounce", "enter", "leave")


@dataclass
class VideoClip:
    """``frames`` ``[T, H, W, 3]`` uint8; ``masks`` ``[T, N, H, W]`` visible; ``boxes``
    ``[T, N, 4]`` XYXY; ``present`` ``[T, N]``. Object ``n`` has track id ``objects[n].id``."""

    seed: int
    size: int
    fps: float
    background: Background
    objects: list[ShapeObject]
    motions: list[str]
    frames: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    present: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def _trajectory(
    obj: ShapeObject, motion: str, velocity: np.ndarray, size: int, num_frames: int
) -> list[ShapeObject]:
    """Positions frame by frame; "bounce" reflects at the walls, "leave" flies out."""
    pos, vel = np.array([obj.x, obj.y]), velocity.copy()
    out = []
    for _ in range(num_frames):
        out.append(replace(obj, x=float(pos[0]), y=float(pos[1])))
        pos = pos + vel
        if motion == "leave":
            continue
        for axis in (0, 1):
            lo, hi = obj.radius, size - obj.radius
            # An entering object only bounces once it is fully inside.
            inside = lo <= out[-1].x if axis == 0 else lo <= out[-1].y
            inside = inside and (out[-1].x <= hi if axis == 0 else out[-1].y <= hi)
            if inside and (pos[axis] < lo or pos[axis] > hi):
                vel[axis] = -vel[axis]
                pos[axis] = np.clip(pos[axis], lo, hi)
    return out


def generate_video(
    seed: int,
    size: int = 256,
    num_frames: int = 16,
    fps: float = 8.0,
    num_objects: int | None = None,
) -> VideoClip:
    """A clip of 1–4 moving shapes, deterministic by ``seed``."""
    rng = np.random.default_rng(seed)
    background = sample_background(rng)
    n = num_objects if num_objects is not None else int(rng.integers(1, 5))
    paths, motions, objects = [], [], []
    for obj_id in range(n):
        obj = sample_object(rng, obj_id, size)
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        speed = rng.uniform(0.02, 0.05) * size  # per frame
        heading = rng.uniform(0, 2 * np.pi)
        vel = speed * np.array([np.cos(heading), np.sin(heading)])
        if motion == "enter":
            # Start just outside the frame, heading in.
            side = int(rng.integers(4))
            axis, out_pos = side % 2, (-obj.radius if side < 2 else size + obj.radius)
            pos = [obj.x, obj.y]
            pos[axis] = out_pos
            obj = replace(obj, x=float(pos[0]), y=float(pos[1]))
            vel[axis] = abs(vel[axis]) * (1 if side < 2 else -1)
            vel[axis] = np.sign(vel[axis]) * max(abs(vel[axis]), 0.6 * speed)
        objects.append(obj)
        motions.append(motion)
        paths.append(_trajectory(obj, motion, vel, size, num_frames))
    frames = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    masks = np.zeros((num_frames, n, size, size), dtype=bool)
    boxes = np.zeros((num_frames, n, 4), dtype=np.float32)
    for t in range(num_frames):
        scene = render([p[t] for p in paths], background, size, seed)
        frames[t], masks[t], boxes[t] = scene.image, scene.masks, scene.boxes
    present = masks.reshape(num_frames, n, -1).sum(axis=2) >= MIN_VISIBLE_PIXELS
    return VideoClip(seed, size, fps, background, objects, motions, frames, masks, boxes, present)
