"""Language about scenes: relations, captions, referring expressions and questions.

Positions come from the centres of the *visible* boxes, so words describe what a person sees.
A referring expression is only produced when it picks out exactly one object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene import Scene

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
PLURALS = {"cross": "crosses"}
# Centres closer than this share of the image side are "level": no left/right or above/below.
RELATION_MARGIN = 0.06
RELATIONS = ("left of", "right of", "above", "below")
ORDER_FROM = {"left": (0, False), "right": (0, True), "top": (1, False), "bottom": (1, True)}


def plural(shape: str) -> str:
    return PLURALS.get(shape, shape + "s")


def centers(scene: Scene) -> np.ndarray:
    """``[N, 2]`` (x, y) centres of the visible boxes."""
    b = scene.boxes
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def relation_holds(scene: Scene, i: int, rel: str, j: int) -> bool:
    """Whether object index ``i`` is ``rel`` object index ``j`` (clearly, past the margin)."""
    c = centers(scene)
    m = RELATION_MARGIN * scene.size
    dx, dy = c[i, 0] - c[j, 0], c[i, 1] - c[j, 1]
    return {"left of": dx < -m, "right of": dx > m, "above": dy < -m, "below": dy > m}[rel]


def relations(scene: Scene) -> list[tuple[int, str, int]]:
    """All pairwise spatial relations and occlusions as ``(id_a, relation, id_b)``."""
    out = []
    n = len(scene.objects)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            a, b = scene.objects[i].id, scene.objects[j].id
            out += [(a, rel, b) for rel in RELATIONS if relation_holds(scene, i, rel, j)]
            # i is drawn above j and hides part of it.
            if i > j and (scene.full_masks[i] & scene.full_masks[j]).any():
                out.append((a, "occludes", b))
    return out


def _matches(scene: Scene, **attrs: str) -> list[int]:
    return [
        i
        for i, o in enumerate(scene.objects)
        if all(getattr(o, k) == v for k, v in attrs.items() if v is not None)
    ]


def _noun(shape: str | None, color: str | None = None, size: str | None = None) -> str:
    words = [w for w in (size, color) if w]
    return " ".join([*words, shape or "shape"])


@dataclass(frozen=True)
class Referring:
    """A referring expression: ``text`` (without article) picks out ``target`` (object id)."""

    text: str
    target: int
    kind: str  # "attribute" | "relational" | "ordinal" | "superlative"


def attribute_expressions(scene: Scene, i: int) -> list[Referring]:
    """Shortest attribute phrases that identify object index ``i`` (e.g. "red star")."""
    o = scene.objects[i]
    out = []
    for attrs in (
        {"shape": o.shape},
        {"color": o.color, "shape": o.shape},
        {"color": o.color},
        {"size": o.size, "shape": o.shape},
        {"size": o.size, "color": o.color, "shape": o.shape},
    ):
        if _matches(scene, **attrs) == [i]:
            text = _noun(attrs.get("shape"), attrs.get("color"), attrs.get("size"))
            if "shape" not in attrs:
                text = f"{attrs['color']} shape"
            out.append(Referring(text, o.id, "attribute"))
    return out


def relational_expressions(scene: Scene, i: int) -> list[Referring]:
    """ "the circle left of the star": the shape alone is ambiguous, the relation is not."""
    o = scene.objects[i]
    same = _matches(scene, shape=o.shape)
    if len(same) < 2:
        return []
    out = []
    for j, _anchor in enumerate(scene.objects):
        if j == i:
            continue
        anchor_names = attribute_expressions(scene, j)
        if not anchor_names:
            continue
        for rel in RELATIONS:
            holders = [k for k in same if k != j and relation_holds(scene, k, rel, j)]
            if holders == [i]:
                out.append(
                    Referring(f"{o.shape} {rel} the {anchor_names[0].text}", o.id, "relational")
                )
    return out


def ordinal_expressions(scene: Scene, i: int) -> list[Referring]:
    """ "the second circle from the left": only when the order is clear-cut."""
    o = scene.objects[i]
    same = _matches(scene, shape=o.shape)
    if len(same) < 2:
        return []
    c = centers(scene)
    m = RELATION_MARGIN * scene.size
    out = []
    for side, (axis, reverse) in ORDER_FROM.items():
        others = [k for k in same if k != i]
        # The rank is clear-cut when no other object of the shape is level with the target.
        if np.min(np.abs(c[others, axis] - c[i, axis])) <= m:
            continue
        ahead = c[others, axis] > c[i, axis] if reverse else c[others, axis] < c[i, axis]
        rank = int(ahead.sum())
        out.append(Referring(f"{ORDINALS[rank]} {o.shape} from the {side}", o.id, "ordinal"))
    return out


# A superlative by size needs the winner's visible box this many times the runner-up's area.
SIZE_RATIO = 1.4
CORNERS = ("top left", "top right", "bottom left", "bottom right")


def _place(scene: Scene, i: int) -> str:
    from switchboard.core.vocabulary import PLACES

    c = centers(scene)[i]
    col, row = (min(2, int(3 * v / scene.size)) for v in c)
    return next(name for name, cell in PLACES.items() if cell == (col, row))


def superlative_expressions(scene: Scene, i: int) -> list[Referring]:
    """What people say when one of several same-shape objects stands out: "the biggest
    circle", "the leftmost star", "the star on the right" (of two), "the circle in the top
    left corner" (the only one in that ninth of the picture)."""
    o = scene.objects[i]
    same = _matches(scene, shape=o.shape)
    if len(same) < 2:
        return []
    out = []
    b = scene.boxes
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    others = [k for k in same if k != i]
    if area[i] >= SIZE_RATIO * max(area[others]):
        out.append(Referring(f"biggest {o.shape}", o.id, "superlative"))
    if area[i] * SIZE_RATIO <= min(area[others]):
        out.append(Referring(f"smallest {o.shape}", o.id, "superlative"))
    c = centers(scene)
    m = RELATION_MARGIN * scene.size
    for side, (axis, reverse) in ORDER_FROM.items():
        gap = c[i, axis] - c[others, axis]
        if ((gap > m) if reverse else (gap < -m)).all():
            word = {
                "left": "leftmost",
                "right": "rightmost",
                "top": "topmost",
                "bottom": "bottommost",
            }[side]
            out.append(Referring(f"{word} {o.shape}", o.id, "superlative"))
            if len(same) == 2 and side in ("left", "right"):
                out.append(Referring(f"{o.shape} on the {side}", o.id, "superlative"))
    place = _place(scene, i)
    if all(_place(scene, k) != place for k in others):
        where = f"{place} corner" if place in CORNERS else place
        text = f"{o.shape} in the {where}" if place != "center" else f"{o.shape} in the center"
        out.append(Referring(text, o.id, "superlative"))
    return out


def referring_expressions(scene: Scene) -> list[Referring]:
    """Every unambiguous expression for every object in the scene."""
    out: list[Referring] = []
    for i in range(len(scene.objects)):
        out += attribute_expressions(scene, i)
        out += relational_expressions(scene, i)
        out += ordinal_expressions(scene, i)
        out += superlative_expressions(scene, i)
    return out


def best_name(scene: Scene, object_id: int) -> str | None:
    """The shortest phrase that identifies the object, or None when none does."""
    i = scene.index(object_id)
    for fn in (attribute_expressions, ordinal_expressions, relational_expressions):
        exprs = fn(scene, i)
        if exprs:
            return exprs[0].text
    return None


def caption(scene: Scene) -> str:
    """One sentence naming every object, grouped by description, plus the background."""
    if not scene.objects:
        return f"an empty {scene.background.kind} background"
    groups: dict[str, int] = {}
    for o in scene.objects:
        key = f"{o.size} {o.color} {o.shape}"
        groups[key] = groups.get(key, 0) + 1
    parts = []
    for key, count in groups.items():
        if count == 1:
            parts.append(("an " if key[0] in "aeiou" else "a ") + key)
        else:
            size, color, shape = key.split(" ")
            parts.append(f"{NUMBER_WORDS[count]} {size} {color} {plural(shape)}")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{listed} on a {scene.background.kind} background"


@dataclass(frozen=True)
class Question:
    text: str
    answer: str
    kind: str  # "count" | "color" | "shape" | "exists"


def questions(scene: Scene, rng: np.random.Generator) -> list[Question]:
    """Counting and attribute questions with their answers (from the scene's ground truth)."""
    from .scene import COLOR_NAMES, SHAPES

    out = []
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    n = len(_matches(scene, shape=shape))
    out.append(Question(f"how many {plural(shape)} are there?", NUMBER_WORDS[n], "count"))
    color = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
    n = len(_matches(scene, color=color))
    out.append(Question(f"how many {color} shapes are there?", NUMBER_WORDS[n], "count"))
    out.append(Question("how many shapes are there?", NUMBER_WORDS[len(scene.objects)], "count"))
    for i, o in enumerate(scene.objects):
        if _matches(scene, shape=o.shape) == [i]:
            out.append(Question(f"what color is the {o.shape}?", o.color, "color"))
        if _matches(scene, color=o.color) == [i]:
            out.append(Question(f"what shape is the {o.color} object?", o.shape, "shape"))
    shape, color = (
        SHAPES[int(rng.integers(len(SHAPES)))],
        COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))],
    )
    found = bool(_matches(scene, shape=shape, color=color))
    out.append(Question(f"is there a {color} {shape}?", "yes" if found else "no", "exists"))
    return out
