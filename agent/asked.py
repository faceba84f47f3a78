"""No unasked edits: an edit runs only with what the user asked for. The colour to paint, the
shape to draw and the place to move to are the user's words — this turn's, or an earlier turn's
the router reads ("now the blue one too" after "make it yellow"). A call whose colour, shape or
place nobody said (a greeting sent with a picture, read as "recolour something blue") is not
run; the agent asks instead of guessing.
"""

from __future__ import annotations

import re
from typing import Any

from switchboard.core.vocabulary import plural_noun

# The arguments of an edit call, per op, that must be the user's words.
_SAID = {"recolor": ("color",), "replace": ("shape",), "add": ("color", "shape"),
         "move": ("place",), "remove": ()}  # fmt: skip


def said_words(text: str, history: list[dict[str, str]] | None = None) -> str:
    """Everything the user said that the router read: earlier user turns and this one."""
    earlier = [m["content"] for m in history or [] if m.get("role") == "user"]
    return " ".join([*earlier, text]).lower()


def _said(value: str, said: str) -> bool:
    v = value.strip().lower()
    forms = {v, plural_noun(v), v.replace("color", "colour"), v.replace("center", "centre")}
    return any(re.search(rf"\b{re.escape(f)}\b", said) for f in forms if f)


def unasked(tool: str, args: dict[str, Any], said: str) -> list[str]:
    """The values of an edit call that the user never said (empty: the call was asked for)."""
    if tool != "edit":
        return []
    op = str(args.get("op") or "recolor")
    values = [str(args[k]) for k in _SAID.get(op, ()) if args.get(k)]
    if op == "generate":
        for o in args.get("objects") or []:
            o = o if isinstance(o, dict) else dict(o)
            values += [str(o[k]) for k in ("color", "shape") if o.get(k)]
    return [v for v in values if not _said(v, said)]


def question(missing: list[str]) -> str:
    """What the agent says instead of an edit nobody asked for."""
    words = " or ".join(f'"{w}"' for w in missing)
    return f"I haven't changed anything: you didn't mention {words}. What would you like me to do?"
