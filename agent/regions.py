"""The region a user drew, bound to the call that points at it.

The router sees a drawn click, box or sketch as one ``<region>`` token and answers "segment this"
with ``segment(target="this")``: the words name the region but carry no pixels. Before the call
runs, :func:`bind_region` gives it the region's geometry in the argument the specialist's own
schema declares for it — ``box``, ``points`` (+ ``point_labels``), ``mask`` or ``region`` — when
the call points at the region, and it has no location of its own: its ``target`` is deictic
("this", "that one", "this circle", "it", "the selected area"), absent, or words the user never
said — the router's reading of the region itself (asked "segment this" over a sketch, it may
answer ``target="square"``, the outline's shape), for which the region's own pixels are the
better reference. A target the user named ("segment the red circle" with a box drawn) is left
alone: the user's words win over the drawing. The bound arguments are what the call record and
the trace show.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from switchboard.core.rle import encode_rle

LOCATION_ARGS = ("box", "points", "mask", "region")
_DEMONSTRATIVES = {"this", "that", "these", "those"}  # "this circle" points as "this" does
_PRONOUNS = {"it", "here", "there", "them"}
_ARTICLES = {"the", "a", "an"}
_DEICTIC_NOUNS = {"", "one", "object", "shape", "thing", "region", "area", "part", "box",
                  "selection", "spot", "bit", "item"}  # fmt: skip
_SELECTED = re.compile(
    r"^(the )?(selected|marked|highlighted|drawn|chosen|outlined|boxed|circled|"
    r"sketched|pointed)( at)? ?(\w+)?$"
)


def is_deictic(target: str) -> bool:
    """Whether ``target`` points at the drawn region rather than naming an object."""
    words = re.sub(r"[^a-z ]", " ", target.lower()).split()
    if not words:
        return True
    phrase = " ".join(words)
    if words[0] in _DEMONSTRATIVES or (words[0] in _PRONOUNS and len(words) == 1):
        return True
    if len(words) == 2 and words[0] == "the" and words[1] in {"region", "selection", "area", "box"}:
        return True
    found = _SELECTED.match(phrase)
    return bool(found) and (found.group(4) or "") in _DEICTIC_NOUNS


def _box_of(mask: np.ndarray) -> list[float] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def said(target: str, text: str) -> bool:
    """Whether every word of ``target`` (but articles) is in the user's ``text``."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return all(w in words for w in re.findall(r"[a-z]+", target.lower()) if w not in _ARTICLES)


def bind_region(
    schema: dict[str, Any],
    args: dict[str, Any],
    region: dict[str, Any] | None,
    text: str | None = None,
) -> dict[str, Any]:
    """``args`` with the drawn ``region`` (``{"box"|"point"|"mask": …}``) in the location field
    the tool's JSON ``schema`` has, when the call points at it; otherwise ``args`` unchanged.
    ``text``: the user's request — a target it never said was read off the region."""
    if not region:
        return args
    props = schema.get("properties", {})
    if any(args.get(k) not in (None, [], "") for k in LOCATION_ARGS):
        return args
    target = args.get("target")
    named = target is not None and not (isinstance(target, str) and is_deictic(target))
    if named and (text is None or said(target, text)):
        return args  # the user named it: the words win over the drawing
    ((kind, value),) = region.items()
    bound: dict[str, Any] = {}
    if kind == "box" and "box" in props:
        bound["box"] = [float(v) for v in value]
    elif kind == "point" and "points" in props:
        bound["points"] = [[float(value[0]), float(value[1])]]
        if "point_labels" in props:
            bound["point_labels"] = [1]
    elif kind == "mask":
        mask = np.asarray(value, bool)
        field = next((f for f in ("mask", "region") if f in props), None)
        if field is not None:
            bound[field] = encode_rle(mask)
        elif "box" in props and (box := _box_of(mask)) is not None:
            bound["box"] = box
    if not bound:
        return args
    return {k: v for k, v in args.items() if k != "target"} | bound
