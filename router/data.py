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

Every item with an image carries the object list the agent's perceive step would give the
router (our detector run on the image, :mod:`switchboard.specialists.objects`); calls on a
listed referent carry its ``object`` index, and grounding answers point at ``#k``. Half the
items rename the detector's classes, consistently over the list, the request, the call and the
answer, to nouns drawn from :data:`TRAIN_NOUNS`, so the router learns to read and copy the class
words it is shown instead of memorising ShapeWorld's eight.

A request over a group ("remove every diamond") is one call on the group's words with
``every``; the agent carries it out member by member (:mod:`switchboard.agent.plans`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import numpy as np
from switchboard.core import HybridCall, Registry
from switchboard.core.vocabulary import plural_noun
from switchboard.specialists.objects import SceneObject, detect_objects
from switchboard.world.language import NUMBER_WORDS
from switchboard.world.requests import Intent, Request, generate_scene_from_clip
from switchboard.world.scene import SHAPES, Scene, generate_scene
from switchboard.world.video import generate_video

from .codec import format_reply
from .prompt import DONE, SYSTEM, VIDEO_FRAMES, box_text, object_of, sampled_frames, user_message

__all__ = ["DONE", "SYSTEM", "VIDEO_FRAMES", "Item", "items_for", "observe", "sampled_frames"]

# Class words the router is trained to read (the COCO categories); the renamed test split
# uses :data:`HELD_OUT_NOUNS`, none of which is here.
TRAIN_NOUNS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
# Colour words are not class words here: "orange" the fruit would read as a colour.
TRAIN_NOUNS = tuple(n for n in TRAIN_NOUNS if n not in ("orange", "skis"))
HELD_OUT_NOUNS = (
    "lantern", "violin", "kettle", "pineapple", "anchor", "helmet", "candle", "trumpet",
    "penguin", "rocket", "lemon", "drum", "feather", "compass", "tractor", "owl",
)  # fmt: skip
RENAME_SHARE = 0.5
# Tasks whose every shape word names a detected object (add/replace/generate also name what
# the editor is to paint: its vocabulary, not the detector's, so they keep ShapeWorld's words).
RENAMABLE = ("segment", "detect", "track", "recolor", "remove", "move", "caption", "question",
             "remove_all", "segment_recolor", "recolor_all")  # fmt: skip
MATCH_IOU = 0.5  # a detection is the referent's when their boxes overlap this much


def draw_names(rng: np.random.Generator, nouns: tuple[str, ...] = TRAIN_NOUNS) -> dict[str, str]:
    """A consistent renaming of ShapeWorld's shapes to distinct nouns of ``nouns``."""
    picked = rng.choice(len(nouns), size=len(SHAPES), replace=False)
    return {shape: nouns[int(k)] for shape, k in zip(SHAPES, picked, strict=True)}


def rename_text(text: str, names: dict[str, str] | None) -> str:
    """``text`` with every shape word (singular or plural) replaced by its new noun."""
    if not names:
        return text
    from switchboard.world.language import plural

    table = {plural(s): plural_noun(n) for s, n in names.items()} | names
    pattern = re.compile(r"\b(" + "|".join(sorted(table, key=len, reverse=True)) + r")\b")
    return pattern.sub(lambda m: table[m.group(1)], text)


def rename_args(args: dict[str, Any], names: dict[str, str] | None) -> dict[str, Any]:
    if not names:
        return args
    out = dict(args)
    for key in ("target", "query"):
        if isinstance(out.get(key), str):
            out[key] = rename_text(out[key], names)
    if isinstance(out.get("shape"), str) and "op" not in out:  # detect's class, not a paint
        out["shape"] = names.get(out["shape"], out["shape"])
    return out


@cache
def _detector() -> Any:
    from switchboard.specialists.detect import DetectSpecialist

    return DetectSpecialist().load("cpu")


def scene_objects(image: np.ndarray, names: dict[str, str] | None = None) -> list[SceneObject]:
    """The object list of ``image`` as the agent's perceive step writes it (our detector at
    the list's threshold), class words renamed by ``names``."""
    objects = detect_objects(_detector(), image)
    if names:
        objects = [replace(o, label=names.get(o.label, o.label)) for o in objects]
    return objects


def match_object(objects: list[SceneObject] | None, box: Any) -> int | None:
    """The ``#k`` of the listed object that is the true box ``box`` (IoU ≥ 0.5), or None."""
    return object_of(box, objects, MATCH_IOU)


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
    objects: list[SceneObject] | None = None  # the object list in the prompt (None: no image)
    ground_box: Any = None  # grounding items: the true box (pixels) the answer must point at


def ordered_args(cls: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments in the order of the tool's ``Args`` fields (the grammar's property order)."""
    fields = list(cls.Args.model_fields)
    return {k: args[k] for k in sorted(args, key=fields.index)}


def call_for(
    intent: Intent,
    registry: Registry,
    object_index: int | None = None,
    names: dict[str, str] | None = None,
) -> HybridCall | None:
    """The first registered tool that serves ``intent``, with its arguments (the listed
    referent's ``object`` index where the tool takes one; class words renamed by ``names``)."""
    for name in registry.names():
        cls = registry.cls(name)
        args = cls.args_for(intent)
        if args is not None:
            args = rename_args(args, names)
            if object_index is not None and "object" in cls.Args.model_fields:
                args.pop("box", None)  # the object's box is what the agent passes
                args["object"] = object_index
            return HybridCall(tool=name, args=ordered_args(cls, args))
    return None


def observe(
    call: HybridCall,
    scene: Scene | None,
    ids: list[int],
    objects: list[SceneObject] | None = None,
    video: bool = False,
) -> str:
    """The short text a tool's result comes back as (from the ground truth of ``ids``), as
    :func:`~switchboard.router.prompt.observe_result` writes it from a real result."""
    if call.tool == "track":
        return f"[track → {max(len(ids), 1)} track]"
    if call.tool == "edit":
        return "[edit → new video]" if video else "[edit → new image]"
    if scene is None or not ids:
        return f"[{call.tool} → done]"
    idx = [scene.index(i) for i in ids if any(o.id == i for o in scene.objects)]

    def where(i: int) -> str:
        k = match_object(objects, scene.boxes[i])
        return f"#{k} {box_text(scene.boxes[i])}" if k is not None else box_text(scene.boxes[i])

    if call.tool == "detect":
        return f"[detect → {len(idx)} boxes: {', '.join(where(i) for i in idx)}]"
    if call.tool == "segment" and idx:
        i = idx[0]
        area = int(scene.masks[i].sum())
        return f"[segment → 1 mask, area {area} px, box {where(i)}]"
    return f"[{call.tool} → done]"


def plan(request: Request, scene: Scene | None) -> list[tuple[Intent, list[int]]]:
    """The request's steps as intents with the object ids each step concerns. A request over a
    group ("remove every diamond", "make all the blue shapes red") is one call on the group's
    words with ``every``: the agent runs it once per member (agent/plans.py) and checks that
    none is left."""
    groups = [i for i in request.intents if "group" in i.params]
    if groups:
        first = groups[0]
        ids = [i for it in groups for i in it.targets]
        params = {k: v for k, v in first.params.items() if k != "group"} | {"every": True}
        return [(Intent(first.task, ids, first.target_text, params), ids)]
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


def caption_for(scene: Scene, objects: list[SceneObject] | None, names: dict | None) -> str:
    """The scene's caption with its objects in the order of the object list (the ones the
    detector missed last): the order the router can follow when it copies the list."""
    from switchboard.world.language import caption, plural

    if not scene.objects:
        return caption(scene)
    rank = {}
    for i in range(len(scene.objects)):
        k = match_object(objects, scene.boxes[i])
        rank[i] = k if k is not None else 1000 + i
    groups: dict[str, int] = {}
    for i in sorted(rank, key=rank.get):
        o = scene.objects[i]
        key = f"{o.size} {o.color} {o.shape}"
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for key, count in groups.items():
        size, color, shape = key.split(" ")
        noun = (names or {}).get(shape, shape)
        if count == 1:
            parts.append(("an " if size[0] in "aeiou" else "a ") + f"{size} {color} {noun}")
        else:
            many = plural_noun(noun) if names else plural(shape)
            parts.append(f"{NUMBER_WORDS[count]} {size} {color} {many}")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} on a {scene.background.kind} background"


def _answer(request: Request, scene: Scene | None, objects: Any, names: Any) -> str | None:
    if request.answer is None:
        return None
    if request.task == "caption" and scene is not None:
        return caption_for(scene, objects, names)
    return rename_text(request.answer, names)


ABSENT_TASKS = ("segment", "recolor", "remove", "track")


def items_for(
    request: Request,
    registry: Registry,
    names: dict[str, str] | None = None,
    absent: str | None = None,
) -> list[Item]:
    """Every step of ``request`` as an :class:`Item`; ``names`` renames the detector's classes
    (only for :data:`RENAMABLE` tasks). ``absent``: the request names its referent's class by
    this noun, which the list does not have — the router is to call with the words alone (no
    object index), so that the tool reports it not found (only the first step is returned)."""
    images, frames, scene = media_for(request)
    if request.task not in RENAMABLE:
        names = None
    objects = scene_objects(images[0], names) if images else None
    said_names = names
    if absent is not None and request.task in ABSENT_TASKS and scene is not None:
        ref = scene.objects[scene.index(request.intents[0].targets[0])]
        said_names = {**(names or {}), ref.shape: absent}
    else:
        absent = None
    text = rename_text(request.text, said_names)
    user = {"role": "user", "content": user_message(text, bool(images), objects, 0)}
    base = [{"role": "system", "content": SYSTEM}, user]

    def item(messages: list, target: str, **kw: Any) -> Item:
        return Item(list(messages), images, frames, target, request.task, objects=objects, **kw)

    answer = _answer(request, scene, objects, names)
    if answer is not None:  # words, no tool
        return [item(base, answer, answer=answer)]
    steps = plan(request, scene)
    calls = []
    for it, ids in steps:
        k = None
        if (
            scene is not None
            and ids
            and absent is None
            and it.task != "detect"
            and not it.params.get("every")
        ):
            k = match_object(objects, scene.boxes[scene.index(ids[0])])
        calls.append(call_for(it, registry, k, said_names))
    if absent is not None and calls[0] is not None:
        target = format_reply("", calls[:1], registry, with_signals=False)
        return [item(base, target, calls=calls[:1])]
    if calls[0] is None:  # no registered tool serves it: say so
        said = f"I have no tool for that ({steps[0][0].task})."
        return [item(base, said, answer=said)]
    out: list[Item] = []
    history = list(base)
    video = request.media == "video"
    for k, ((_, ids), call) in enumerate(zip(steps, calls, strict=True)):
        if call is None:
            break
        target = format_reply("", [call], registry, with_signals=False)
        out.append(item(history, target, step=k, calls=[call]))
        history += [
            {"role": "assistant", "content": target},
            {"role": "user", "content": observe(call, scene, ids, objects, video)},
        ]
    out.append(item(history, DONE, step=len(out), answer=DONE))
    return out
