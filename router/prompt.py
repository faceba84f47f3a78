"""What the router reads at run time, written the same way training writes it: the system
prompt, the object list, the frames sampled from a video, and the observations a tool's result
comes back as. Imports no data generator (the agent builds its prompts from here).

The object list (``specialists/objects.py``) goes into the user's message after the image:

    Objects:
    #1<object> small red circle, top left
    #2<object> large blue star, center

Each ``<object>`` token's embedding is written by the router's object encoder from the image's
patch features pooled over that detection's box plus a code of the box (the Groma/GLaMM
pattern: one token per region beside its words); the words carry the detector's class, the
colour read off the pixels, a size and a place. Answers and calls point at objects by their
``#k``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from switchboard.specialists.objects import SceneObject

from .codec import OBJECT_TOKEN
from .vision import sample_frames

SYSTEM = (
    "You are Switchboard, an assistant that sees and edits images and videos. Answer in words, "
    "or call a tool with <call>{json}</call>."
)
DONE = "Done."
VIDEO_FRAMES = 4
NO_OBJECTS = "Objects: none found.\n"
# "#3" in the router's words: a pointer at listed object 3 (a grounding answer).
OBJECT_REF = re.compile(r"#(\d+)")


def objects_text(objects: list[SceneObject] | None) -> str:
    """The object list as the router reads it (empty when there is no image)."""
    if objects is None:
        return ""
    if not objects:
        return NO_OBJECTS
    lines = [f"#{o.index}{OBJECT_TOKEN} {o.line().split(' ', 1)[1]}" for o in objects]
    return "Objects:\n" + "\n".join(lines) + "\n"


def user_message(text: str, media: bool, objects: list[SceneObject] | None, regions: int) -> str:
    """The user's message as the router reads it: ``{media}`` (the image placeholders), the
    object list, one ``<region>`` per user region, then the words."""
    head = "{media}" + objects_text(objects) if media else ""
    return head + "<region>" * regions + text


def sampled_frames(frames: np.ndarray) -> tuple[list[np.ndarray], list[int | None]]:
    """The :data:`VIDEO_FRAMES` frames the router sees of a video ``[T, H, W, 3]`` and their
    frame indices."""
    idx = sample_frames(len(frames), VIDEO_FRAMES)
    return [frames[t] for t in idx], list(range(len(idx)))


def box_text(box: Any) -> str:
    return "(" + ",".join(str(int(round(float(v)))) for v in box) + ")"


def object_of(box: Any, objects: list[SceneObject] | None, min_iou: float = 0.7) -> int | None:
    """The ``#k`` of the listed object ``box`` (pixel XYXY) is, when one overlaps it enough."""
    if not objects:
        return None
    b = np.asarray(box, float)
    best, best_iou = None, min_iou
    for o in objects:
        a = np.asarray(o.xyxy, float)
        lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
        inter = float(np.prod(np.clip(rb - lt, 0, None)))
        union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)
        iou = inter / union if union > 0 else 0.0
        if iou >= best_iou:
            best, best_iou = o.index, iou
    return best


def _where(box: Any, objects: list[SceneObject] | None) -> str:
    k = object_of(box, objects)
    return f"#{k} {box_text(box)}" if k is not None else box_text(box)


def observe_result(tool: str, result: Any, objects: list[SceneObject] | None = None) -> str:
    """A specialist's result as the short text the router reads back
    (``[segment → 1 mask, area 812 px, box #2 (40,52,88,97)]``); boxes of listed objects carry
    their ``#k``."""
    from switchboard.core.results import Boxes, ImageOut, Masks, Tracks, VideoOut

    if isinstance(result, Tracks):
        return f"[{tool} → {max(len(result.tracks), 1)} track]"
    if isinstance(result, ImageOut):
        return f"[{tool} → new image]"
    if isinstance(result, VideoOut):
        return f"[{tool} → new video]"
    if isinstance(result, Boxes):
        boxes = ", ".join(_where(b, objects) for b in result.xyxy)
        return f"[{tool} → {len(result.xyxy)} boxes: {boxes}]"
    if isinstance(result, Masks) and result.masks:
        box = result.boxes()[0]
        where = _where(box, objects) if box is not None else "(0,0,0,0)"
        return f"[{tool} → 1 mask, area {int(result.masks[0].sum())} px, box {where}]"
    return f"[{tool} → done]"
