"""Parsing short object descriptions ("the blue star", "red objects", "circles") into filters."""

from __future__ import annotations

import re
from dataclasses import dataclass

from switchboard.world.scene import COLOR_NAMES, SIZE_NAMES

_IRREGULAR = {"crosses": "cross", "people": "person", "buses": "bus", "boxes": "box"}


@dataclass
class Query:
    shape: str | None = None
    color: str | None = None
    size: str | None = None
    single: bool = False  # "the blue star": one object wanted, not all of them


def _singular(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def parse_query(text: str, class_names: list[str]) -> Query:
    """Pick out a class name, a colour and a size word; "the X" (singular) asks for one."""
    words = re.findall(r"[a-z]+", text.lower())
    q = Query()
    classes = {c.lower(): c for c in class_names}
    for i, w in enumerate(words):
        if w in COLOR_NAMES:
            q.color = w
        elif w in SIZE_NAMES:
            q.size = w
        elif w in classes or _singular(w) in classes:
            q.shape = classes.get(w) or classes[_singular(w)]
            plural = w not in classes
            q.single = not plural and i > 0 and "the" in words[:i] and "all" not in words
    # Multi-word class names ("traffic light") match as phrases.
    joined = " ".join(words)
    for key, name in classes.items():
        if " " in key and key in joined:
            q.shape = name
    return q


ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_RELATIONS = ("left of", "right of", "above", "below")
# Same rule as ShapeWorld's language: centres closer than this share of the side are "level".
LEVEL_MARGIN = 0.06


@dataclass
class Detection:
    xyxy: tuple[float, float, float, float]
    shape: str
    color: str | None
    score: float

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.xyxy
        return (x1 + x2) / 2, (y1 + y2) / 2


def _filter(dets: list[Detection], q: Query) -> list[Detection]:
    return [
        d
        for d in dets
        if (q.shape is None or d.shape == q.shape) and (q.color is None or d.color == q.color)
    ]


def _relation(a: Detection, rel: str, b: Detection, margin: float) -> bool:
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    return {
        "left of": dx < -margin,
        "right of": dx > margin,
        "above": dy < -margin,
        "below": dy > margin,
    }[rel]


def resolve_referent(
    text: str, dets: list[Detection], class_names: list[str], image_side: float
) -> Detection | None:
    """Choose the detection a referring expression means: attribute ("the small red star"),
    ordinal ("the second circle from the left") or relational ("the circle left of the star").
    Returns the best-scoring candidate, or None when nothing matches."""
    t = text.lower()
    margin = LEVEL_MARGIN * image_side
    m = re.search(
        r"(first|second|third|fourth|fifth|sixth|seventh|eighth) (.+?) from the "
        r"(left|right|top|bottom)",
        t,
    )
    if m:
        cands = _filter(dets, parse_query(m.group(2), class_names))
        axis, reverse = {
            "left": (0, False),
            "right": (0, True),
            "top": (1, False),
            "bottom": (1, True),
        }[m.group(3)]
        cands = sorted(cands, key=lambda d: d.center[axis], reverse=reverse)
        rank = ORDINAL_WORDS.index(m.group(1))
        return cands[rank] if rank < len(cands) else None
    for rel in _RELATIONS:
        if f" {rel} " in f" {t} ":
            head, tail = t.split(rel, 1)
            cands = _filter(dets, parse_query(head, class_names))
            anchors = _filter(dets, parse_query(tail, class_names))
            if not anchors:
                return None
            anchor = max(anchors, key=lambda d: d.score)
            hits = [d for d in cands if d is not anchor and _relation(d, rel, anchor, margin)]
            return max(hits, key=lambda d: d.score) if hits else None
    q = parse_query(t, class_names)
    cands = _filter(dets, q)
    if q.size and len(cands) > 1:  # size words are relative: pick by box area
        cands = sorted(cands, key=lambda d: (d.xyxy[2] - d.xyxy[0]) * (d.xyxy[3] - d.xyxy[1]))
        return {"small": cands[0], "large": cands[-1]}.get(q.size, cands[len(cands) // 2])
    return max(cands, key=lambda d: d.score) if cands else None
