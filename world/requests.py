"""User requests for every task, in many paraphrases, with their ground-truth intents.

A request's ground truth is a list of :class:`Intent` steps (task, referent object ids,
parameters), never tool JSON: the world knows nothing of tools, and each specialist maps intents
to its own arguments. Paraphrase templates are split into train/val/test by position
(``index % 5``: 0-2 train, 3 val, 4 test) so the test split measures unseen phrasing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .edits import PLACES, EditError, apply_edit, sample_edit_params
from .language import (
    Referring,
    attribute_expressions,
    caption,
    ordinal_expressions,
    plural,
    questions,
    relational_expressions,
    superlative_expressions,
)
from .scene import COLOR_NAMES, SHAPES, SIZE_NAMES, Scene, generate_scene
from .splits import SPLITS, check_split
from .video import generate_video

TEMPLATES: dict[str, tuple[str, ...]] = {
    "segment": (
        "segment the {ref}",
        "give me a mask of the {ref}",
        "cut out the {ref}",
        "select the {ref}",
        "outline the {ref} for me",
        "can you mask the {ref}?",
        "I need a segmentation of the {ref}",
        "highlight the pixels of the {ref}",
        "isolate the {ref} in this picture",
        "which pixels belong to the {ref}?",
    ),
    "detect": (
        "find all the {group}",
        "detect every {group_one}",
        "draw boxes around the {group}",
        "where are the {group}?",
        "locate each {group_one}",
        "put a bounding box on every {group_one}",
        "show me all {group}",
        "mark the {group} with boxes",
        "spot the {group} in this image",
        "list the positions of the {group}",
    ),
    "track": (
        "track the {ref} through the video",
        "follow the {ref}",
        "keep track of the {ref}",
        "trace the path of the {ref}",
        "where does the {ref} go in this clip?",
        "track the {ref} in every frame",
        "follow the {ref} until the end",
        "can you track the {ref}?",
        "show me the trajectory of the {ref}",
        "give me the {ref}'s track",
    ),
    "recolor": (
        "make the {ref} {color}",
        "change the color of the {ref} to {color}",
        "paint the {ref} {color}",
        "recolor the {ref} {color}",
        "turn the {ref} {color}",
        "can you color the {ref} {color}?",
        "I want the {ref} to be {color}",
        "switch the {ref} to {color}",
        "fill the {ref} with {color}",
        "give the {ref} a {color} color",
    ),
    "remove": (
        "remove the {ref}",
        "delete the {ref}",
        "erase the {ref}",
        "get rid of the {ref}",
        "take out the {ref}",
        "make the {ref} disappear",
        "please remove the {ref} from the image",
        "wipe out the {ref}",
        "I don't want the {ref} in the picture",
        "clear away the {ref}",
    ),
    "add": (
        "add a {desc} in the {place}",
        "put a {desc} in the {place}",
        "draw a {desc} in the {place}",
        "place a {desc} in the {place} of the picture",
        "insert a {desc} in the {place}",
        "I want a {desc} in the {place}",
        "paint a {desc} in the {place}",
        "can you add a {desc} to the {place}?",
        "there should be a {desc} in the {place}",
        "drop a {desc} into the {place}",
    ),
    "move": (
        "move the {ref} to the {place}",
        "shift the {ref} to the {place}",
        "drag the {ref} over to the {place}",
        "put the {ref} in the {place} instead",
        "relocate the {ref} to the {place}",
        "can you move the {ref} to the {place}?",
        "the {ref} should be in the {place}",
        "slide the {ref} to the {place}",
        "bring the {ref} to the {place}",
        "reposition the {ref} to the {place}",
    ),
    "replace": (
        "replace the {ref} with a {shape}",
        "turn the {ref} into a {shape}",
        "swap the {ref} for a {shape}",
        "change the {ref} into a {shape}",
        "make the {ref} a {shape} instead",
        "substitute a {shape} for the {ref}",
        "can you replace the {ref} by a {shape}?",
        "transform the {ref} into a {shape}",
        "I'd like a {shape} where the {ref} is",
        "exchange the {ref} for a {shape}",
    ),
    "generate": (
        "draw {desc_list}",
        "generate an image of {desc_list}",
        "create a picture with {desc_list}",
        "paint {desc_list}",
        "make an image showing {desc_list}",
        "render {desc_list}",
        "can you draw {desc_list}?",
        "I want a picture of {desc_list}",
        "produce an image with {desc_list}",
        "sketch {desc_list} for me",
    ),
    "caption": (
        "describe this image",
        "what do you see?",
        "what's in this picture?",
        "give me a caption for this image",
        "describe the scene",
        "tell me what is shown here",
        "what does this image contain?",
        "caption this",
        "summarize the picture",
        "what is in this image?",
    ),
    "question": (
        "{q}",
        "quick question: {q}",
        "tell me, {q}",
        "looking at the image, {q}",
        "{q} thanks",
        "please answer: {q}",
        "in this picture, {q}",
        "I'm curious, {q}",
        "can you check: {q}",
        "hey, {q}",
    ),
    "chat": (
        "hi!",
        "what can you do?",
        "who are you?",
        "thanks, that's all",
        "hello there",
        "how do I use you?",
        "good morning",
        "what tools do you have?",
        "thank you!",
        "bye for now",
    ),
    "remove_all": (
        "remove every {group_one}",
        "delete all the {group}",
        "erase all {group}",
        "get rid of every {group_one}",
        "take out all the {group}",
        "remove all of the {group}",
        "clear every {group_one} from the picture",
        "wipe out all {group}",
        "I don't want any {group} in the image",
        "make all the {group} disappear",
    ),
    "segment_recolor": (
        "select the {ref} and then make it {color}",
        "first outline the {ref}, then paint it {color}",
        "cut out the {ref} and recolor it {color}",
        "mask the {ref}, then turn it {color}",
        "segment the {ref} and change it to {color}",
        "find the {ref} and color it {color}",
        "isolate the {ref} and then paint it {color}",
        "outline the {ref} then make it {color}",
        "grab the {ref} and switch it to {color}",
        "mark the {ref} and fill it with {color}",
    ),
    "recolor_all": (
        "recolor every {group_one} {color}",
        "make all the {group} {color}",
        "paint all {group} {color}",
        "turn every {group_one} {color}",
        "change all the {group} to {color}",
        "color all of the {group} {color}",
        "make every {group_one} {color}",
        "I want all the {group} to be {color}",
        "recolor all {group} to {color}",
        "give every {group_one} a {color} color",
    ),
    # Edits through a whole video: the words of an image edit, with or without the video
    # named; the media (a clip) is what makes them video edits.
    "video_recolor": (
        "make the {ref} {color} in the video",
        "make the {ref} {color}",
        "change the color of the {ref} to {color} in every frame",
        "paint the {ref} {color} throughout the clip",
        "recolor the {ref} {color} in this video",
        "turn the {ref} {color} in the whole clip",
        "I want the {ref} to be {color} in the video",
        "can you make the {ref} {color} in every frame?",
        "switch the {ref} to {color} for the whole video",
        "give the {ref} a {color} color in this clip",
    ),
    "video_remove": (
        "remove the {ref} from the video",
        "remove the {ref}",
        "erase the {ref} from every frame",
        "delete the {ref} from this clip",
        "get rid of the {ref} in the video",
        "make the {ref} disappear from the video",
        "take the {ref} out of the clip",
        "wipe the {ref} out of every frame",
        "I don't want the {ref} in this video",
        "clear the {ref} out of the whole clip",
    ),
    "video_replace": (
        "replace the {ref} with a {shape} in the video",
        "turn the {ref} into a {shape}",
        "swap the {ref} for a {shape} in every frame",
        "make the {ref} a {shape} throughout the clip",
        "change the {ref} into a {shape} in this video",
        "replace the {ref} with a {shape}",
        "I want a {shape} instead of the {ref} in the video",
        "can you turn the {ref} into a {shape} in the clip?",
        "put a {shape} where the {ref} is in every frame",
        "swap out the {ref} for a {shape} in this video",
    ),
}
# More phrasings for the train split only (the val/test templates above stay as they are, so
# held-out numbers stay comparable). None repeats a val/test template or its distinctive verb
# ("outline", "locate", "relocate", "sketch", ...): the test still measures unseen phrasing.
TRAIN_ONLY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "segment": (
        "make a mask for the {ref}",
        "segment out the {ref}",
        "please mask the {ref}",
        "separate the {ref} from the background",
        "extract the {ref}",
        "I'd like the {ref} masked",
        "show me exactly which area is the {ref}",
        "pick out the {ref}",
        "what area does the {ref} cover?",
        "can I get the {ref}'s mask?",
        "what part of the picture is the {ref}?",
    ),
    "detect": (
        "box every {group_one}",
        "find each {group_one} and box it",
        "how about boxes for the {group}",
        "detect the {group}",
        "can you find the {group}?",
        "mark every {group_one}",
        "give me boxes for all {group}",
        "search the image for {group}",
        "give me the locations of the {group}",
        "where can I find every {group_one}?",
        "show where the {group} are",
    ),
    "track": (
        "track the {ref}",
        "follow the {ref} across the frames",
        "keep an eye on the {ref} in this video",
        "I need the {ref} tracked",
        "follow where the {ref} moves",
        "track the {ref} from start to finish",
        "please follow the {ref} in the clip",
        "can you follow the {ref} over time?",
        "where is the {ref} heading in this video?",
        "how does the {ref} move?",
        "which way does the {ref} head over time?",
    ),
    "recolor": (
        "color the {ref} {color}",
        "make the {ref} {color} please",
        "change the {ref} to {color}",
        "I'd like the {ref} in {color}",
        "repaint the {ref} {color}",
        "set the color of the {ref} to {color}",
        "the {ref} should be {color}",
        "could you make the {ref} {color}?",
    ),
    "remove": (
        "remove the {ref} please",
        "erase the {ref} from the picture",
        "delete the {ref} from this image",
        "can you remove the {ref}?",
        "the {ref} has to go",
        "get the {ref} out of the image",
        "eliminate the {ref}",
        "I want the {ref} gone",
    ),
    "add": (
        "add a {desc} to the {place}",
        "put a {desc} at the {place}",
        "can you put a {desc} in the {place}?",
        "draw a {desc} at the {place}",
        "I need a {desc} in the {place}",
        "add one {desc} in the {place}",
        "include a {desc} in the {place}",
        "paint a {desc} into the {place}",
    ),
    "move": (
        "move the {ref} over to the {place}",
        "shift the {ref} into the {place}",
        "put the {ref} at the {place}",
        "can you shift the {ref} to the {place}?",
        "I want the {ref} moved to the {place}",
        "transfer the {ref} to the {place}",
        "carry the {ref} to the {place}",
        "send the {ref} to the {place}",
    ),
    "replace": (
        "replace the {ref} by a {shape}",
        "swap the {ref} with a {shape}",
        "convert the {ref} into a {shape}",
        "put a {shape} in place of the {ref}",
        "change the shape of the {ref} to a {shape}",
        "I want a {shape} instead of the {ref}",
        "can you swap the {ref} for a {shape}?",
        "let the {ref} become a {shape}",
    ),
    "generate": (
        "draw me {desc_list}",
        "create an image of {desc_list}",
        "make a picture of {desc_list}",
        "generate {desc_list}",
        "please draw {desc_list}",
        "I'd like an image with {desc_list}",
        "can you create {desc_list}?",
        "show me a new picture with {desc_list}",
    ),
    "caption": (
        "describe this picture",
        "what can you see here?",
        "what does the picture show?",
        "tell me about this image",
        "caption this image please",
        "give me a short description",
        "what's shown in this image?",
        "explain what is in the picture",
    ),
    "question": (
        "one question: {q}",
        "tell me: {q}",
        "I wonder, {q}",
        "{q} please",
        "answer this: {q}",
        "in the image, {q}",
        "could you tell me: {q}",
        "quick one: {q}",
    ),
    "chat": (
        "hi there",
        "what are you?",
        "what can you help me with?",
        "good evening",
        "thanks a lot",
        "see you later",
        "how does this work?",
        "what are you able to do?",
    ),
    "remove_all": (
        "remove all the {group}",
        "delete every {group_one}",
        "erase every {group_one}",
        "get rid of all the {group}",
        "please remove all {group}",
        "can you delete all of the {group}?",
        "clean out every {group_one}",
        "I want all the {group} removed",
        "make every {group_one} go away",
        "have all the {group} vanish",
        "all of the {group} must go",
    ),
    "segment_recolor": (
        "segment the {ref} and then paint it {color}",
        "mask the {ref} and make it {color}",
        "cut out the {ref}, then make it {color}",
        "first segment the {ref}, then recolor it {color}",
        "mask the {ref} and color it {color}",
        "find the {ref}, then change its color to {color}",
        "segment the {ref}, then make it {color}",
        "get a mask of the {ref} and paint it {color}",
        "select the {ref}, then I'd like it to be {color}",
        "outline the {ref}; after that it should be {color}",
    ),
    "recolor_all": (
        "recolour all the {group} {color}",
        "make each {group_one} {color}",
        "turn all the {group} {color}",
        "can you paint every {group_one} {color}?",
        "change every {group_one} to {color}",
        "I'd like all {group} in {color}",
    ),
}
VIDEO_EDIT_TASKS = {"video_recolor": "recolor", "video_remove": "remove",
                    "video_replace": "replace"}  # fmt: skip
EXTRA_INDEX = 100  # train-only templates are numbered from here in ``Request.template``
CHAT_ANSWER = (
    "I can segment, detect, track, recolor, remove, add, move or replace shapes in "
    "your images and videos, or draw new pictures. Send an image and tell me what to do."
)
ASK_IMAGE = "Please send an image (or a video) for me to work on."
# Tasks that need an image; requests for them without one are answered by asking for it.
IMAGE_TASKS = (
    "segment",
    "detect",
    "recolor",
    "remove",
    "add",
    "move",
    "replace",
    "caption",
    "question",
    "remove_all",
    "segment_recolor",
    "recolor_all",
)
TASKS = (*TEMPLATES, "ask_media")
# The video edit tasks are drawn only where asked for (a training preset's ``task_weights``,
# an eval by name): with weight 0 here every earlier request draw stays the same.
TASK_WEIGHTS = (
    {t: 1.0 for t in TASKS}
    | {"segment": 2.0, "chat": 0.5, "ask_media": 0.5}
    | {t: 0.0 for t in VIDEO_EDIT_TASKS}
)


@dataclass
class Intent:
    """One step the user wants: ``task`` on ``targets`` (object ids) with ``params``."""

    task: str
    targets: list[int] = field(default_factory=list)
    target_text: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Request:
    text: str
    intents: list[Intent]
    media: str  # "image" | "video" | "none"
    seed: int
    split: str
    task: str
    template: int
    answer: str | None = None  # the words to answer with when no tool is needed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def templates_for(task: str, split: str) -> list[tuple[int, str]]:
    """``(index, template)`` pairs of ``task`` that belong to ``split``."""
    check_split(split)
    keep = {"train": (0, 1, 2), "val": (3,), "test": (4,)}[split]
    out = [(i, t) for i, t in enumerate(TEMPLATES[task]) if i % 5 in keep]
    if split == "train":
        out += [(EXTRA_INDEX + i, t) for i, t in enumerate(TRAIN_ONLY_TEMPLATES.get(task, ()))]
    return out


def _pick(rng: np.random.Generator, items: list | tuple) -> Any:
    return items[int(rng.integers(len(items)))]


def pick_referring(scene: Scene, rng: np.random.Generator) -> Referring | None:
    """A random unambiguous expression, each kind (attribute, relational, ordinal,
    superlative) as likely as the others when the scene has one."""
    by_kind: dict[str, list[Referring]] = {
        "attribute": [], "relational": [], "ordinal": [], "superlative": []
    }  # fmt: skip
    for i in range(len(scene.objects)):
        for r in (
            *attribute_expressions(scene, i),
            *relational_expressions(scene, i),
            *ordinal_expressions(scene, i),
            *superlative_expressions(scene, i),
        ):
            by_kind[r.kind].append(r)
    kinds = [k for k, v in by_kind.items() if v]
    return _pick(rng, by_kind[_pick(rng, kinds)]) if kinds else None


def _group(scene: Scene, rng: np.random.Generator) -> tuple[dict[str, str], str, str, list[int]]:
    """A group to detect: by shape, colour or both; returns (params, plural, singular, ids)."""
    o = _pick(rng, scene.objects)
    by = _pick(rng, ("shape", "color", "both"))
    if by == "shape":
        params, many, one = {"shape": o.shape}, plural(o.shape), o.shape
    elif by == "color":
        params, many, one = {"color": o.color}, f"{o.color} shapes", f"{o.color} shape"
    else:
        params = {"shape": o.shape, "color": o.color}
        many, one = f"{o.color} {plural(o.shape)}", f"{o.color} {o.shape}"
    ids = [x.id for x in scene.objects if all(getattr(x, k) == v for k, v in params.items())]
    return params, many, one, ids


def _desc(rng: np.random.Generator) -> dict[str, str]:
    return {
        "shape": _pick(rng, SHAPES),
        "color": _pick(rng, COLOR_NAMES),
        "size": _pick(rng, SIZE_NAMES),
    }


def make_request(seed: int, split: str = "train", task: str | None = None) -> Request:
    """A request with its intents, deterministic by ``seed``; the scene is ``generate_scene(seed)``
    (or ``generate_video(seed)`` for tracking)."""
    # Long on purpose: one dispatch over the task names, each branch a few lines; the branches
    # draw from one generator in a fixed order, and that order fixes every split's requests.
    rng = np.random.default_rng([seed, 11])
    if task is None:
        names = list(TASK_WEIGHTS)
        w = np.array([TASK_WEIGHTS[n] for n in names])
        task = names[int(rng.choice(len(names), p=w / w.sum()))]
    if task == "ask_media":
        inner = _pick(rng, ("segment", "recolor", "remove", "detect"))
        req = make_request(seed, split, inner)
        return Request(
            req.text,
            [Intent("ask_media", params={"for": inner})],
            "none",
            seed,
            split,
            "ask_media",
            req.template,
            ASK_IMAGE,
        )
    index, template = _pick(rng, templates_for(task, split))

    def done(
        text: str, intents: list[Intent], media: str = "image", answer: str | None = None
    ) -> Request:
        return Request(text, intents, media, seed, split, task, index, answer)

    if task == "chat":
        return done(template, [Intent("chat")], "none", CHAT_ANSWER)
    if task == "generate":
        descs = [_desc(rng) for _ in range(int(rng.integers(1, 4)))]
        words = [
            ("an " if d["size"][0] in "aeiou" else "a ") + f"{d['size']} {d['color']} {d['shape']}"
            for d in descs
        ]
        listed = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return done(
            template.format(desc_list=listed),
            [Intent("generate", params={"objects": descs})],
            "none",
        )
    if task == "track":
        clip = generate_video(seed)
        first = generate_scene_from_clip(clip)
        choices = [r for i in range(len(first.objects)) for r in attribute_expressions(first, i)]
        if not choices:
            return make_request(seed + 1, split, task)
        ref = _pick(rng, choices)
        return done(
            template.format(ref=ref.text),
            [Intent("track", [ref.target], ref.text, {"ref_kind": ref.kind})],
            "video",
        )

    if task in VIDEO_EDIT_TASKS:
        return _video_edit_request(seed, split, task, index, template, rng)

    scene = generate_scene(seed)
    if task == "caption":
        return done(template, [Intent("caption")], answer=caption(scene))
    if task == "question":
        q = _pick(rng, questions(scene, rng))
        return done(
            template.format(q=q.text),
            [Intent("question", params={"kind": q.kind})],
            answer=q.answer,
        )
    if task in ("detect", "remove_all"):
        params, many, one, ids = _group(scene, rng)
        text = template.format(group=many, group_one=one)
        if task == "detect":
            return done(text, [Intent("detect", ids, many, params)])
        return done(text, [Intent("remove", [i], many, {"group": params}) for i in ids])
    if task == "recolor_all":
        params, many, one, ids = _group(scene, rng)
        taken = {o.color for o in scene.objects if o.id in ids}
        color = _pick(rng, tuple(c for c in COLOR_NAMES if c not in taken))
        text = template.format(group=many, group_one=one, color=color)
        return done(
            text,
            [Intent("recolor", [i], many, {"group": params, "color": color}) for i in ids],
        )
    if task == "add":
        d = _desc(rng) | {"place": _pick(rng, tuple(PLACES))}
        desc = f"{d['size']} {d['color']} {d['shape']}"
        return done(template.format(desc=desc, place=d["place"]), [Intent("add", params=d)])

    ref = pick_referring(scene, rng)
    if ref is None:
        return make_request(seed + 1, split, task)
    base = {"ref_kind": ref.kind}
    if task == "segment":
        return done(
            template.format(ref=ref.text), [Intent("segment", [ref.target], ref.text, base)]
        )
    if task == "segment_recolor":
        params = sample_edit_params(scene, "recolor", ref.target, rng)
        return done(
            template.format(ref=ref.text, color=params["color"]),
            [
                Intent("segment", [ref.target], ref.text, base),
                Intent("recolor", [ref.target], ref.text, base | params),
            ],
        )
    params = sample_edit_params(scene, task, ref.target, rng)
    try:  # only ask for edits that can be made (room to move, nothing hidden)
        apply_edit(scene, task, ref.target, params, np.random.default_rng(seed))
    except EditError:
        return make_request(seed + 1, split, task)
    text = template.format(ref=ref.text, **{k: v for k, v in params.items()})
    return done(text, [Intent(task, [ref.target], ref.text, base | params)])


def _video_edit_request(
    seed: int, split: str, task: str, index: int, template: str, rng: np.random.Generator
) -> Request:
    """An edit of one object through ``generate_video(seed)``: the object is named by an
    attribute expression on the first frame (as a track request's is) and seen on at least
    half the frames."""
    from .video import frame_scene

    clip = generate_video(seed)
    first = generate_scene_from_clip(clip)
    choices = [
        r
        for k, o in enumerate(clip.objects)
        if clip.present[0, k] and clip.present[:, k].mean() >= 0.5
        for r in attribute_expressions(first, first.index(o.id))
    ]
    if not choices:
        return make_request(seed + 1, split, task)
    ref = _pick(rng, choices)
    op = VIDEO_EDIT_TASKS[task]
    params = sample_edit_params(frame_scene(clip, 0), op, ref.target, rng)
    text = template.format(ref=ref.text, **params)
    intent = Intent(op, [ref.target], ref.text, {"ref_kind": ref.kind} | params)
    return Request(text, [intent], "video", seed, split, task, index)


def generate_scene_from_clip(clip: Any) -> Scene:
    """The first frame of a clip as a :class:`Scene` (for naming the referent)."""
    from .scene import render

    return render(clip.objects, clip.background, clip.size, clip.seed)


def make_requests(split: str, n: int, offset: int = 0, task: str | None = None) -> list[Request]:
    lo, _ = SPLITS[split]
    return [make_request(lo + offset + k, split, task) for k in range(n)]
