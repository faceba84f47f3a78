"""The router's training and evaluation items, built from ShapeWorld requests and the registry.

The world states what the user wants (:class:`~switchboard.world.requests.Intent`); each
registered tool says how it would be called for it (``Specialist.args_for``). So the expected
calls follow the registry: register a tool and its intents get calls, unregister one and the
router is taught to answer in words instead. A request becomes one or more :class:`Item` s:

- the first step given the request (a call, or an answer in words: a caption, the answer to a
  question, a request for the missing image);
- for multi-step requests, each next step given the history: earlier calls with their
  observations (``[segment → 1 mask, area 812 px, box (40,52,88,97)]``), ending with a short
  answer once the work is done.

Plans that need a step the user did not spell out are written here: "remove every diamond"
becomes a ``detect`` of the group, then one ``remove`` per found box.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from switchboard.core import HybridCall, Registry
from switchboard.world.requests import Intent, Request, generate_scene_from_clip
from switchboard.world.scene import Scene, generate_scene
from switchboard.world.video import generate_video

from .codec import format_reply
from .vision import sample_frames

SYSTEM = (
    "You are Switchboard, an assistant that sees and edits images and videos. Answer in words, "
    "or call a tool with <call>{json}</call>."
)
DONE = "Done."
VIDEO_FRAMES = 4


@dataclass
class Item:
    """One training/eval example: chat messages (the user's first message holds the media
    placeholder ``{media}``), the media, and the reply to learn/produce."""

    messages: list[dict[str, str]]
    images: list[np.ndarray]
    frame_index: list[int | None]
    target: str
    task: str
    step: int = 0
    calls: list[HybridCall] = field(default_factory=list)  # what ``target`` calls (maybe none)
    answer: str | None = None  # what ``target`` says in words, when it calls nothing
    regions: list[np.ndarray] = field(default_factory=list)  # user region masks, in order


def ordered_args(cls: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments in the order of the tool's ``Args`` fields (the grammar's property order)."""
    fields = list(cls.Args.model_fields)
    return {k: args[k] for k in sorted(args, key=fields.index)}


def call_for(intent: Intent, registry: Registry) -> HybridCall | None:
    """The first registered tool that serves ``intent``, with its arguments."""
    for name in registry.names():
        cls = registry.cls(name)
        args = cls.args_for(intent)
        if args is not None:
            return HybridCall(tool=name, args=ordered_args(cls, args))
    return None


def _box_text(box: Any) -> str:
    return "(" + ",".join(str(int(round(float(v)))) for v in box) + ")"


def observe(call: HybridCall, scene: Scene | None, ids: list[int]) -> str:
    """The short text a tool's result comes back as (from the ground truth of ``ids``)."""
    if call.tool == "track":
        return f"[track → {max(len(ids), 1)} track]"
    if call.tool == "edit":
        return "[edit → new image]"
    if scene is None or not ids:
        return f"[{call.tool} → done]"
    idx = [scene.index(i) for i in ids if any(o.id == i for o in scene.objects)]
    if call.tool == "detect":
        boxes = ", ".join(_box_text(scene.boxes[i]) for i in idx)
        return f"[detect → {len(idx)} boxes: {boxes}]"
    if call.tool == "segment" and idx:
        i = idx[0]
        area = int(scene.masks[i].sum())
        return f"[segment → 1 mask, area {area} px, box {_box_text(scene.boxes[i])}]"
    return f"[{call.tool} → done]"


def observe_result(tool: str, result: Any) -> str:
    """A specialist's actual result as the same observation text :func:`observe` writes from
    ground truth (what the agent sends back to the router)."""
    from switchboard.core.results import Boxes, ImageOut, Masks, Tracks

    if isinstance(result, Tracks):
        return f"[{tool} → {max(len(result.tracks), 1)} track]"
    if isinstance(result, ImageOut):
        return f"[{tool} → new image]"
    if isinstance(result, Boxes):
        boxes = ", ".join(_box_text(b) for b in result.xyxy)
        return f"[{tool} → {len(result.xyxy)} boxes: {boxes}]"
    if isinstance(result, Masks) and result.masks:
        box = result.boxes()[0]
        where = _box_text(box) if box is not None else "(0,0,0,0)"
        return f"[{tool} → 1 mask, area {int(result.masks[0].sum())} px, box {where}]"
    return f"[{tool} → done]"


def sampled_frames(frames: np.ndarray) -> tuple[list[np.ndarray], list[int | None]]:
    """The :data:`VIDEO_FRAMES` frames the router sees of a video ``[T, H, W, 3]`` and their
    frame indices."""
    idx = sample_frames(len(frames), VIDEO_FRAMES)
    return [frames[t] for t in idx], list(range(len(idx)))


def plan(request: Request, scene: Scene | None) -> list[tuple[Intent, list[int]]]:
    """The request's steps as intents with the object ids each step concerns."""
    steps: list[tuple[Intent, list[int]]] = []
    groups = [i for i in request.intents if "group" in i.params]
    if groups and scene is not None:
        group = groups[0].params["group"]
        ids = [i for it in groups for i in it.targets]
        many = " ".join(filter(None, (group.get("color"), group.get("shape")))) or "objects"
        steps.append((Intent("detect", ids, many, dict(group)), ids))
        for it in groups:
            for oid in it.targets:
                box = [int(v) for v in scene.boxes[scene.index(oid)]]
                steps.append((Intent(it.task, [oid], None, {"box": box}), [oid]))
        return steps
    return [(it, list(it.targets)) for it in request.intents]


def media_for(request: Request) -> tuple[list[np.ndarray], list[int | None], Scene | None]:
    """The request's images (or sampled frames) and the scene its ids refer to."""
    if request.media == "image":
        scene = generate_scene(request.seed)
        return [scene.image], [None], scene
    if request.media == "video":
        clip = generate_video(request.seed)
        return (*sampled_frames(clip.frames), generate_scene_from_clip(clip))
    return [], [], None


def items_for(request: Request, registry: Registry) -> list[Item]:
    """Every step of ``request`` as an :class:`Item`."""
    images, frames, scene = media_for(request)
    user = {"role": "user", "content": "{media}" + request.text}
    base = [{"role": "system", "content": SYSTEM}, user]
    if request.answer is not None:  # words, no tool
        return [Item(base, images, frames, request.answer, request.task, answer=request.answer)]
    steps = plan(request, scene)
    calls = [call_for(it, registry) for it, _ in steps]
    if calls[0] is None:  # no registered tool serves it: say so
        text = f"I have no tool for that ({steps[0][0].task})."
        return [Item(base, images, frames, text, request.task, answer=text)]
    out: list[Item] = []
    history = list(base)
    for k, ((_, ids), call) in enumerate(zip(steps, calls, strict=True)):
        if call is None:
            break
        target = format_reply("", [call], registry, with_signals=False)
        out.append(Item(list(history), images, frames, target, request.task, k, [call]))
        history += [
            {"role": "assistant", "content": target},
            {"role": "user", "content": observe(call, scene, ids)},
        ]
    out.append(Item(list(history), images, frames, DONE, request.task, len(out), answer=DONE))
    return out
