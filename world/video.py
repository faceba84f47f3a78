"""ShapeWorld videos: shapes that move, bounce, occlude one another, enter and leave.

Each object keeps its id as its track id. Per frame the ground truth is the visible mask and
box of every object and whether it is present (enough of it is visible to be seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .edits import EditError, EditPair, sample_edit_params
from .language import attribute_expressions
from .scene import (
    MIN_VISIBLE_PIXELS,
    Background,
    Scene,
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
    # Each frame's objects where they are on it (bottom to top): what renders the frame again
    # with a change (:func:`apply_video_edit`).
    states: list[list[ShapeObject]] = field(default_factory=list, repr=False)

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
    states = [[p[t] for p in paths] for t in range(num_frames)]
    return VideoClip(
        seed, size, fps, background, objects, motions, frames, masks, boxes, present, states
    )


def frame_scene(clip: VideoClip, t: int) -> Scene:
    """Frame ``t`` of ``clip`` as a :class:`Scene` (objects where they are on that frame)."""
    return render(clip.states[t], clip.background, clip.size, clip.seed)


VIDEO_EDIT_OPS = ("recolor", "remove", "replace")


@dataclass
class VideoEditPair:
    """A clip and the same clip with one object edited on every frame: ``after`` is rendered
    again from the same trajectories, so the two differ only where the object was or is
    (``edit_masks`` ``[T, H, W]``); ``target`` is the object's id (its track id)."""

    op: str
    before: VideoClip
    after: VideoClip
    target: int
    params: dict[str, Any]
    edit_masks: np.ndarray = field(repr=False)

    def frame_pair(self, t: int) -> EditPair:
        """Frame ``t`` as an image :class:`EditPair` (what the image edit judge reads)."""
        before, after = frame_scene(self.before, t), frame_scene(self.after, t)
        return EditPair(self.op, before, after, self.target, self.params, self.edit_masks[t])


def _changed(obj: ShapeObject, op: str, params: dict[str, Any]) -> ShapeObject | None:
    if op == "recolor":
        return replace(obj, color=params["color"])
    if op == "replace":
        angle = 0.0 if params["shape"] == "circle" else obj.angle
        return replace(obj, shape=params["shape"], color=params.get("color") or obj.color,
                       angle=angle)  # fmt: skip
    if op == "remove":
        return None
    raise EditError(f"video edits are {VIDEO_EDIT_OPS}, not {op!r}")


def apply_video_edit(
    clip: VideoClip, op: str, target: int, params: dict[str, Any]
) -> VideoEditPair:
    """``clip`` with object ``target`` recoloured, removed or replaced on every frame."""
    ids = [o.id for o in clip.objects]
    if target not in ids:
        raise EditError(f"the clip has no object {target}")
    states = []
    for frame in clip.states:
        objs = [_changed(o, op, params) if o.id == target else o for o in frame]
        states.append([o for o in objs if o is not None])
    kept = [o for o in (_changed(o, op, params) if o.id == target else o for o in clip.objects)
            if o is not None]  # fmt: skip
    t_n, size = clip.num_frames, clip.size
    n = len(kept)
    frames = np.zeros_like(clip.frames)
    masks = np.zeros((t_n, n, size, size), dtype=bool)
    boxes = np.zeros((t_n, n, 4), dtype=np.float32)
    edit_masks = np.zeros((t_n, size, size), dtype=bool)
    i = ids.index(target)
    for t in range(t_n):
        scene = render(states[t], clip.background, size, clip.seed)
        frames[t], masks[t], boxes[t] = scene.image, scene.masks, scene.boxes
        edit_masks[t] = clip.masks[t, i]
        if op != "remove":
            edit_masks[t] |= scene.masks[[o.id for o in states[t]].index(target)]
    present = masks.reshape(t_n, n, size * size).sum(axis=2) >= MIN_VISIBLE_PIXELS
    motions = [m for o, m in zip(clip.objects, clip.motions, strict=True)
               if op != "remove" or o.id != target]  # fmt: skip
    after = VideoClip(clip.seed, size, clip.fps, clip.background, kept, motions, frames, masks,
                      boxes, present, states)  # fmt: skip
    return VideoEditPair(op, clip, after, target, params, edit_masks)


def generate_video_edit(seed: int, op: str, size: int = 256, num_frames: int = 16) -> VideoEditPair:
    """A random video edit, deterministic by ``seed``: the target is an object present on the
    first frame with an attribute expression there (what a user names it by), present on at
    least half the frames."""
    if op not in VIDEO_EDIT_OPS:
        raise EditError(f"video edits are {VIDEO_EDIT_OPS}, not {op!r}")
    rng = np.random.default_rng([seed, 17])
    for attempt in range(50):
        clip = generate_video(seed + attempt * 7919, size=size, num_frames=num_frames)
        first = frame_scene(clip, 0)
        named = [
            o.id
            for k, o in enumerate(clip.objects)
            if clip.present[0, k]
            and clip.present[:, k].mean() >= 0.5
            and attribute_expressions(first, first.index(o.id))
        ]
        if not named:
            continue
        target = named[int(rng.integers(len(named)))]
        params = sample_edit_params(first, op, target, rng)
        return apply_video_edit(clip, op, target, params)
    raise EditError(f"could not make a {op} video edit from seed {seed}")
