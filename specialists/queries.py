"""Resolving a target said in words against an object list: "the blue star", "red objects",
"the second circle from the left", "the biggest person", "the bus on the right".

Works with any detector's class words (:class:`~.objects.SceneObject` ``label``), the colour words
of :mod:`switchboard.core.vocabulary` and size/position words; knows no data generator. A target
no object matches resolves to None: the caller reports it as not found, never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from switchboard.core.vocabulary import COLOR_NAMES, GENERIC_NOUNS, PLACES, SIZE_WORDS

from .objects import SceneObject

_IRREGULAR = {"crosses": "cross", "people": "person", "buses": "bus", "boxes": "box",
              "men": "man", "women": "woman", "children": "child", "mice": "mouse",
              "knives": "knife", "benches": "bench", "glasses": "glass"}  # fmt: skip
ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_RELATIONS = ("left of", "right of", "above", "below")
# Centres closer than this share of the image side are "level" (no left/right, above/below).
LEVEL_MARGIN = 0.06
# Superlatives: (key on an object, pick the largest?)
_EXTREMES = {
    "biggest": ("area", True), "largest": ("area", True), "smallest": ("area", False),
    "tiniest": ("area", False), "leftmost": ("x", False), "rightmost": ("x", True),
    "topmost": ("y", False), "highest": ("y", False), "bottommost": ("y", True),
    "lowest": ("y", True),
}  # fmt: skip
_SIDES = {"left": ("x", False), "right": ("x", True), "top": ("y", False),
          "bottom": ("y", True)}  # fmt: skip


@dataclass
class Query:
    shape: str | None = None  # a class word of the detector
    color: str | None = None
    size: str | None = None
    single: bool = False  # "the blue star": one object wanted, not all of them
    extreme: tuple[str, bool] | None = None  # "biggest", "leftmost", "on the left"
    place: str | None = None  # "in the top left corner"


def class_of(word: str, classes: dict[str, str]) -> str | None:
    """The class (of ``classes``: lower-case → name) ``word`` names, singular or plural."""
    for w in (
        word,
        _IRREGULAR.get(word),
        word[:-1] if word.endswith("s") else None,
        word[:-2] if word.endswith("es") else None,
    ):
        if w and w in classes:
            return classes[w]
    return None


def parse_query(text: str, class_names: list[str]) -> Query:
    """Pick out a class word, a colour, a size, a superlative and a place; "the X" (singular)
    asks for one."""
    t = text.lower()
    words = re.findall(r"[a-z]+", t)
    q = Query()
    classes = {c.lower(): c for c in class_names}
    for w in words:
        if w in COLOR_NAMES:
            q.color = w
        elif w in SIZE_WORDS:
            q.size = w
        elif w in _EXTREMES:
            q.extreme, q.single = _EXTREMES[w], True
        elif class_of(w, classes) is not None:
            q.shape = class_of(w, classes)
            plural = w not in classes
            q.single = q.single or (not plural and "all" not in words and "every" not in words)
        elif w in GENERIC_NOUNS and w.endswith("s"):
            q.single = False
    for i, w in enumerate(words[:-1]):  # "the left person", "the right one": a side as adjective
        after, before = words[i + 1], words[i - 1] if i else ""
        if (
            w in _SIDES
            and before not in _SIDES
            and after not in _SIDES
            and (
                after in COLOR_NAMES
                or after in SIZE_WORDS
                or after in GENERIC_NOUNS
                or class_of(after, classes) is not None
            )
        ):
            q.extreme, q.single = _SIDES[w], True
    joined = " ".join(words)
    for key, name in classes.items():  # multi-word class names ("traffic light")
        if " " in key and (key in joined or key + "s" in joined):
            q.shape = name
    m = re.search(
        r"\b(?:in|at|on|to) the (top left|top right|bottom left|bottom right|top|"
        r"bottom|left|right|center|centre|middle)\b(?: corner| side| part| half)?"
        r"(?: of the (?:picture|image|photo|frame))?",
        t,
    )
    if m:
        where = {"centre": "center", "middle": "center"}.get(m.group(1), m.group(1))
        if where in ("left", "right", "top", "bottom") and not re.search(r"corner|of the", m[0]):
            q.extreme, q.single = _SIDES[where], True  # "the bus on the right"
        elif where in PLACES:
            q.place = where
    return q


def _filter(objects: list[SceneObject], q: Query) -> list[SceneObject]:
    return [
        o
        for o in objects
        if (q.shape is None or o.label == q.shape)
        and (q.color is None or o.color == q.color)
        and (q.place is None or o.place == q.place)
    ]


def _key(o: SceneObject, what: str) -> float:
    return o.area if what == "area" else o.center[0] if what == "x" else o.center[1]


def _relation(a: SceneObject, rel: str, b: SceneObject, margin: float) -> bool:
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    return {
        "left of": dx < -margin,
        "right of": dx > margin,
        "above": dy < -margin,
        "below": dy > margin,
    }[rel]


def select(objects: list[SceneObject], q: Query) -> list[SceneObject]:
    """Every object ``q`` matches (one when it asks for one: the superlative's pick, else the
    size word's, else the most confident)."""
    cands = _filter(objects, q)
    if q.extreme is not None and cands:
        what, largest = q.extreme
        return [max(cands, key=lambda o: _key(o, what) * (1 if largest else -1))]
    if q.size and cands:
        same = [o for o in cands if o.size == q.size]
        if len(cands) > 1 and len(same) != 1:  # size words are relative: rank by area
            ranked = sorted(cands, key=lambda o: o.area)
            same = [{"small": ranked[0], "large": ranked[-1]}.get(q.size, ranked[len(ranked) // 2])]
        cands = same or cands
    if q.single and len(cands) > 1:
        return [max(cands, key=lambda o: o.score)]
    return cands


def resolve_referent(
    text: str,
    objects: list[SceneObject],
    class_names: list[str],
    image_side: float,
    unique: bool = False,
) -> SceneObject | None:
    """The object a referring expression means: attribute ("the small red star"), ordinal
    ("the second circle from the left"), superlative ("the biggest person", "the bus on the
    right"), place ("the star in the top left corner") or relational ("the circle left of the
    star"). None when nothing matches, or when the words name no class, colour or size the
    list has. Words that fit several objects with nothing to pick among them ("the person"
    beside two people) mean the most confident one, or None with ``unique`` (a caller that
    has another reading, the router's object index, keeps it)."""
    t = text.lower()
    margin = LEVEL_MARGIN * image_side
    m = re.search(
        r"(first|second|third|fourth|fifth|sixth|seventh|eighth) (.+?) from the "
        r"(left|right|top|bottom)",
        t,
    )
    if m:
        q = parse_query(m.group(2), class_names)
        if q.shape is None and q.color is None and not _generic(m.group(2)):
            return None
        what, reverse = _SIDES[m.group(3)]
        cands = sorted(_filter(objects, q), key=lambda o: _key(o, what), reverse=reverse)
        rank = ORDINAL_WORDS.index(m.group(1))
        return cands[rank] if rank < len(cands) else None
    for rel in _RELATIONS:
        if f" {rel} " in f" {t} ":
            head, tail = t.split(rel, 1)
            head_q = parse_query(head, class_names)
            head_q.single = False  # every candidate: the relation picks among them
            cands = select(objects, head_q)
            anchors = select(objects, parse_query(tail, class_names))
            if not anchors or not _names_something(tail, class_names):
                return None
            anchor = anchors[0]
            hits = [o for o in cands if o is not anchor and _relation(o, rel, anchor, margin)]
            if unique and len(hits) > 1:
                return None
            return max(hits, key=lambda o: o.score) if hits else None
    q = parse_query(t, class_names)
    if not _names_something(t, class_names):
        return None
    if unique and len(select(objects, Query(**{**q.__dict__, "single": False}))) > 1:
        return None
    hits = select(objects, Query(**{**q.__dict__, "single": True}))
    return hits[0] if hits else None


def referent_words(text: str) -> str:
    """The words of ``text`` that describe the referent itself: "the second circle from the
    left" → "circle", "the circle left of the star" → "the circle"."""
    t = text.lower()
    m = re.search(r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth) (.+?) from the ", t)
    if m:
        return m.group(1)
    for rel in _RELATIONS:
        if f" {rel} " in f" {t} ":
            return t.split(rel, 1)[0]
    return t


def contradicts(text: str, obj: SceneObject, class_names: list[str]) -> bool:
    """Whether the words ``text`` say a class or a colour that listed object ``obj`` does not
    have ("the small triangle" of a red heart): then the words and an object index that points
    at ``obj`` are two readings that disagree, and the words are what the user said."""
    q = parse_query(referent_words(text), class_names)
    return (q.shape is not None and obj.label != q.shape) or (
        q.color is not None and obj.color != q.color
    )


def _generic(text: str) -> bool:
    return any(w in GENERIC_NOUNS for w in re.findall(r"[a-z]+", text.lower()))


def _names_something(text: str, class_names: list[str]) -> bool:
    """Whether ``text`` says a class word, a colour or a size, or a generic noun with no other
    content word: "the bus" with no bus class says something the list cannot have."""
    q = parse_query(text, class_names)
    if q.shape or q.color or q.size or q.extreme or q.place:
        return not (q.shape is None and unknown_noun(text, class_names))
    return False


_FUNCTION_WORDS = frozenset(
    {
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "to",
        "from",
        "and",
        "then",
        "it",
        "its",
        "that",
        "this",
        "one",
        "ones",
        "please",
        "me",
        "my",
        "can",
        "you",
        "with",
        "for",
        "is",
        "are",
        "be",
        "there",
        "here",
        "left",
        "right",
        "top",
        "bottom",
        "center",
        "centre",
        "middle",
        "corner",
        "side",
        "picture",
        "image",
        "photo",
        "frame",
        "clip",
        "video",
        "big",
        "small",
        "medium",
        "large",
        "every",
        "each",
        "some",
        "above",
        "below",
        "under",
        "over",
        "beside",
        "near",
        "next",
        "between",
        "behind",
        "front",
        "other",
        "another",
        "piece",
    }
)


def unknown_noun(text: str, class_names: list[str]) -> bool:
    """A content word that is no class, colour, size, place or generic noun ("the red bus"
    when no detector class is "bus"): the target names something the list does not have."""
    known = {c.lower(): c for c in class_names}
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in COLOR_NAMES or w in SIZE_WORDS or w in _EXTREMES or w in GENERIC_NOUNS:
            continue
        if w in _FUNCTION_WORDS or w in ORDINAL_WORDS or class_of(w, known) is not None:
            continue
        if any(w in k.split() for k in known):
            continue
        return True
    return False
