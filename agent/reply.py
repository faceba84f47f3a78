"""The reply in words: one sentence per call, written from what the call did (its tool, its
arguments as the agent resolved them, its status and its result), so a user reads what was
done and on what — "I segmented the small red circle (#3) — mask 1." — and a failure reads as
one — "I couldn't find a yellow bus; I see 2 people." — without opening the call trace.

The router writes "Done." after its calls (what it was trained to say); :func:`describe_turn`
is what the agent says instead. Words the router writes itself (an answer after a detect, a
caption) are kept, and the sentences of the calls that failed follow them.
"""

from __future__ import annotations

from typing import Any

from switchboard.core.results import Boxes, ImageOut, Masks, Text, Tracks, VideoOut
from switchboard.core.vocabulary import article, count_words, plural_noun, singular_noun
from switchboard.specialists.objects import SceneObject

from .plans import group_words

# What each edit op did, and what failing at it reads as ("I couldn't recolour …").
_EDIT_DONE = {"recolor": "recoloured", "remove": "removed", "add": "added", "move": "moved",
              "replace": "replaced", "generate": "drew"}  # fmt: skip
_EDIT_VERB = {"recolor": "recolour", "remove": "remove", "add": "add", "move": "move",
              "replace": "replace", "generate": "draw"}  # fmt: skip
_TOOL_VERB = {"segment": "segment", "detect": "detect", "track": "track", "generate": "draw"}


def _the(words: str) -> str:
    w = words.strip()
    if w.lower().startswith(("the ", "a ", "an ", "every ", "all ")):
        return w
    return f"the {w}"


def subject(args: dict[str, Any], objects: list[SceneObject] | None) -> str:
    """What a call worked on, in words: the listed object it resolved to ("the small red
    circle (#3)"), the user's words ("the circle on the left"), or the region drawn."""
    k = args.get("object")
    if k is not None and objects and 1 <= int(k) <= len(objects):
        return f"the {objects[int(k) - 1].words()} (#{int(k)})"
    target = args.get("target")
    if isinstance(target, str) and target.strip():
        return _the(target)
    if args.get("mask") is not None or args.get("region") is not None:
        return "the region you marked"
    if args.get("points"):
        return "the object at the point you marked"
    if args.get("box") is not None:
        return "the object in the box"
    return "the image"


def _detected_words(args: dict[str, Any]) -> str:
    if args.get("shape") or not args.get("query"):
        words = [args.get("color"), args.get("shape") or "object"]
        return " ".join(str(w) for w in words if w)
    return str(args["query"])


def _edit_sentence(args: dict[str, Any], what: str) -> str:
    op = args.get("op") or "recolor"
    desc = " ".join(str(args[k]) for k in ("size", "color", "shape") if args.get(k)) or "object"
    if op == "recolor":
        return f"I recoloured {what} {args.get('color') or ''}".rstrip() + "."
    if op == "remove":
        return f"I removed {what}."
    if op == "add":
        place = f" in the {args['place']}" if args.get("place") else ""
        return f"I added {article(desc)}{place}."
    if op == "move":
        place = f" to the {args['place']}" if args.get("place") else ""
        return f"I moved {what}{place}."
    if op == "replace":
        return f"I replaced {what} with {article(args.get('shape') or 'new object')}."
    return _generate_sentence(args)


def group_sentence(result: dict[str, Any]) -> str:
    """A group edit in words: "I removed 3 blue shapes (#4, #2, #5)." and, when the check after
    it still finds some, how many are left."""
    args = result.get("args") or {}
    op = args.get("op") or "recolor"
    members, left = result["members"], result.get("left", 0)
    words = group_words(str(args.get("target") or "objects"))
    one = singular_noun(words)
    shown = f" ({', '.join(f'#{k}' for k in members)})" if members else ""
    what = count_words(max(result.get("edits", 0), len(members)), one) + shown
    if op == "recolor":
        line = f"I recoloured {what} {args.get('color') or ''}".rstrip() + "."
    elif op == "replace":
        line = f"I replaced {what} with {plural_noun(str(args.get('shape') or 'new object'))}."
    elif op == "move":
        line = f"I moved {what}" + (f" to the {args['place']}." if args.get("place") else ".")
    else:
        line = f"I {_EDIT_DONE.get(op, 'edited')} {what}."
    if left:
        be = "is" if left == 1 else "are"
        rounds = result.get("rounds", 1)
        line += f" {count_words(left, one)} {be} still there after {rounds} rounds."
    return line


def _generate_sentence(args: dict[str, Any]) -> str:
    objs = args.get("objects") or []
    parts = []
    for o in objs:
        o = o if isinstance(o, dict) else o.model_dump()
        place = f" in the {o['place']}" if o.get("place") else ""
        parts.append(
            article(
                f"{o.get('size') or ''} {o.get('color', '')} {o.get('shape', '')}".replace(
                    "  ", " "
                ).strip()
            )
            + place
        )
    if parts:
        listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"I drew a new image of {listed}."
    if args.get("prompt"):
        return f"I drew a new image of {args['prompt']}."
    return "I drew a new image."


def describe_call(
    result: dict[str, Any],
    objects: list[SceneObject] | None,
    counters: dict[str, int] | None = None,
) -> str:
    """One sentence for one call (a :class:`~switchboard.agent.graph.CallResult`).
    ``counters`` numbers the turn's masks and tracks as the page shows them (mask 1, 2 …)."""
    counters = counters if counters is not None else {}
    tool, args, status = result["tool"], result.get("args") or {}, result["status"]
    what = subject(args, objects)
    if status == "not_found":
        return f"{result['error']}."
    if status != "ok":
        if tool == "edit":
            verb = _EDIT_VERB.get(args.get("op") or "recolor", "edit")
            doing = f"{verb} {what}" if verb not in ("add", "draw") else f"{verb} that"
        elif tool in _TOOL_VERB:
            doing = f"{_TOOL_VERB[tool]} {what}"
        elif tool == "history":
            doing = str(args.get("op") or "undo")
        else:
            doing = f"run {tool}"
        why = result.get("error") or status
        if status == "timeout":
            return f"I couldn't {doing} in time: {why}."
        return f"I couldn't {doing}: {why}."
    res = result.get("result")
    if tool == "history":
        if args.get("op") == "redo":
            return "I redid the change: the image after it is current again."
        return "I undid the last change: the image before it is current again."
    if "members" in result and isinstance(res, ImageOut):
        return group_sentence(result)
    if tool == "edit" and isinstance(res, ImageOut):
        return _edit_sentence(args, what)
    if tool == "edit" and isinstance(res, VideoOut):  # "I removed the red star on 14 of 16 …"
        said = _edit_sentence(args, what)[:-1]
        return f"{said} on {res.edited_frames} of {len(res.frames)} frames of the video."
    if tool == "generate" and isinstance(res, ImageOut):
        return _generate_sentence(args)
    if isinstance(res, Masks):
        n = len(res.masks)
        first = counters.get("mask", 0) + 1
        counters["mask"] = first + n - 1
        if n == 0:
            return f"I found no mask for {what}."
        names = f"mask {first}" if n == 1 else f"masks {first}–{first + n - 1}"
        verb = "segmented" if tool == "segment" else f"ran {tool} on"
        return f"I {verb} {what} — {names}."
    if isinstance(res, Boxes):
        n = len(res.xyxy)
        words = _detected_words(args) if tool == "detect" else "object"
        if n == 0:
            return f"I found {count_words(0, words)}."
        return f"I found {count_words(n, words)} (boxes drawn on the image)."
    if isinstance(res, Tracks):
        if not res.tracks:
            return f"I couldn't follow {what}: it was not found over {res.num_frames} frames."
        t = res.tracks[0]
        first = counters.get("track", 0) + 1
        counters["track"] = first + len(res.tracks) - 1
        return f"I tracked {what} on {len(t.frames)} of {res.num_frames} frames — track {first}."
    if isinstance(res, ImageOut):
        return f"I ran {tool}; it made a new image."
    if isinstance(res, Text):
        return res.text.strip() or f"I ran {tool}."
    return f"I ran {tool}: {result.get('observation', '').strip('[]')}."


def describe_turn(results: list[dict[str, Any]], objects: list[SceneObject] | None) -> str:
    """The sentences of a turn's calls, in the order they ran; a sentence the turn already
    said (the same failure twice) is said once."""
    counters: dict[str, int] = {}
    ordered = sorted(results, key=lambda r: (r["step"], r["index"]))
    said: list[str] = []
    for r in ordered:
        line = describe_call(r, objects, counters)
        if line not in said:
            said.append(line)
    return " ".join(said)
