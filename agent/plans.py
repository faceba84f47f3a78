"""Requests over a group, carried to the end: "remove every diamond", "make all the blue shapes
red". The router writes one call on the group's words with ``every`` (router/data.py); the agent
runs it here once per member the words name in the image's object list, each edit on the image
the previous one made, and then looks again: the detector runs on the result and the words are
resolved anew. Members still there (one the editor missed, one the first list did not have) get
another round, up to ``rounds``; what is left after that is said in the reply, never hidden.

"Done" is what the observations say: nothing the words name is left (remove, replace), or
everything they name has the new colour (recolour). A move has no such check: it runs once per
member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from switchboard.core.errors import NotFoundError
from switchboard.core.results import ImageOut
from switchboard.specialists.objects import SceneObject, seen_words
from switchboard.specialists.queries import Query, parse_query, select, unknown_noun

ROUNDS = 3  # rounds of edits over what is still left, the first included
# Arguments that name the group, not one member: each member's call gets its box instead.
_GROUP_ARGS = ("every", "target", "object", "box", "region")


@dataclass
class GroupRun:
    """What a group call did: the final image, the listed members edited (``#k`` of the turn's
    object list), how many edits ran in all, and how many the words still name afterwards."""

    result: ImageOut
    members: list[int] = field(default_factory=list)
    edits: int = 0
    left: int = 0
    rounds: int = 0


def members_of(target: str, objects: list[SceneObject], classes: list[str]) -> list[SceneObject]:
    """Every listed object ``target`` names ("blue shapes", "the stars", "every red circle").
    Raises :class:`NotFoundError` when the words name a class the list cannot have or fit none."""
    found = [] if unknown_noun(target, classes) else select(objects, _group_query(target, classes))
    if not found:
        raise NotFoundError(f"I can't find any {group_words(target)}; I see {seen_words(objects)}")
    return found


def _group_query(target: str, classes: list[str]) -> Query:
    q = parse_query(target, classes)
    q.single = False  # "every star": all of them, whatever the noun's number
    return q


def group_words(target: str) -> str:
    """The group's words without their quantifier: "all the blue shapes" → "blue shapes"."""
    t = target.strip()
    for lead in ("all of the ", "all the ", "all ", "every ", "each ", "the "):
        if t.lower().startswith(lead):
            return t[len(lead) :]
    return t


def still_there(op: str, args: dict[str, Any], q: Query, objects: list[SceneObject]) -> list:
    """The objects that say the group edit is not done yet, in a fresh object list."""
    named = select(objects, q)
    if op == "recolor":
        return [o for o in named if o.color != args.get("color")]
    if op in ("remove", "replace"):
        return named
    return []  # a move: nothing to check in words


def run_every(
    edit: Callable[[np.ndarray, dict[str, Any]], ImageOut],
    image: np.ndarray,
    args: dict[str, Any],
    objects: list[SceneObject],
    classes: list[str],
    relist: Callable[[np.ndarray], list[SceneObject]],
    rounds: int = ROUNDS,
) -> GroupRun:
    """Run ``edit`` (one member's call: the image and that member's arguments) on every member
    of ``args["target"]``, round after round until :func:`still_there` finds none or ``rounds``
    are spent. ``relist`` is the detector's object list of an image."""
    target = str(args.get("target") or "")
    first = members_of(target, objects, classes)
    q = _group_query(target, classes)
    op = str(args.get("op") or "recolor")
    base = {k: v for k, v in args.items() if k not in _GROUP_ARGS}
    out = GroupRun(result=ImageOut(image=image))
    todo: list[SceneObject] = first
    listed = {id(o): o.index for o in objects}
    changed: np.ndarray | None = None
    while todo and out.rounds < rounds:
        out.rounds += 1
        for member in todo:
            made = edit(out.result.image, {**base, "box": [float(v) for v in member.xyxy]})
            if made.edit_mask is not None:  # the page shows what changed: every member's region
                m = np.asarray(made.edit_mask, bool)
                changed = m if changed is None else changed | m
            out.result = ImageOut(image=made.image, edit_mask=changed)
            out.edits += 1
            if id(member) in listed:
                out.members.append(listed[id(member)])
        if op not in ("remove", "replace", "recolor"):
            break
        todo = still_there(op, args, q, relist(np.asarray(out.result.image)))
    out.left = len(todo) if op in ("remove", "replace", "recolor") else 0
    return out
