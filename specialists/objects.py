"""The objects a detector sees in an image, in words: the list the router reads and calls point
at by index, and what a target said in words is resolved against.

Each detection becomes a :class:`SceneObject`: its box, the detector's class word (whatever its
weights name: "circle" for ours, "person" or "bus" for a detector trained on photographs), the
colour word read off its pixels (:mod:`.colors`, strictly: None unless most of them are close
to a named colour), a size word and a place word. Objects are numbered ``#1…#n`` from left to
right (ties top to bottom), so "the second X from the left" is the second X in the list.

Nothing here knows ShapeWorld: the size thresholds were measured on it (below), the words are
:mod:`switchboard.core.vocabulary`'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from switchboard.core.errors import NotFoundError
from switchboard.core.vocabulary import PLACES, article, count_words

from .colors import color_in_box

MAX_OBJECTS = 16  # more would make the router's prompt long for little use
LIST_CONF = 0.25  # the detector's threshold for the list (its mAP-optimal range on held-out)
# Size words from the box's longer side as a share of the image's longer side. Fitted on
# 2700 ShapeWorld objects of seeds 0-599 (their true visible boxes; occlusion shrinks some):
# these cuts name 97.6% of them with the generator's own size word.
SIZE_CUTS = (0.164, 0.248)


@dataclass
class SceneObject:
    """One listed detection. ``xyxy`` in pixels; ``index`` is its ``#k`` in the list."""

    index: int
    xyxy: tuple[float, float, float, float]
    label: str
    color: str | None
    size: str
    place: str
    score: float

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.xyxy
        return (x1 + x2) / 2, (y1 + y2) / 2

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.xyxy
        return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)

    def words(self) -> str:
        """ "small red circle" (no colour word when none could be read)."""
        return " ".join(w for w in (self.size, self.color, self.label) if w)

    def line(self) -> str:
        """ "#3 small red circle, top left": one line of the list the router reads."""
        return f"#{self.index} {self.words()}, {self.place}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SceneObject:
        return cls(**{**data, "xyxy": tuple(float(v) for v in data["xyxy"])})


def size_word(xyxy: tuple[float, float, float, float], side: float) -> str:
    x1, y1, x2, y2 = xyxy
    share = max(x2 - x1, y2 - y1) / max(side, 1.0)
    return "small" if share < SIZE_CUTS[0] else "medium" if share < SIZE_CUTS[1] else "large"


def place_word(xyxy: tuple[float, float, float, float], width: int, height: int) -> str:
    """The 3x3 cell of the box's centre ("top left", "center", …)."""
    cx, cy = (xyxy[0] + xyxy[2]) / 2, (xyxy[1] + xyxy[3]) / 2
    col = min(2, max(0, int(3 * cx / max(width, 1))))
    row = min(2, max(0, int(3 * cy / max(height, 1))))
    return next(name for name, cell in PLACES.items() if cell == (col, row))


def list_objects(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    names: list[str],
    max_objects: int = MAX_OBJECTS,
) -> list[SceneObject]:
    """Detections of one HWC uint8 RGB image (pixel XYXY ``[N, 4]``, scores ``[N]``, class ids
    ``[N]``) → the ``max_objects`` most confident, numbered left to right."""
    h, w = image.shape[:2]
    side = float(max(h, w))
    keep = np.argsort(-np.asarray(scores, float))[:max_objects]
    found = []
    for i in keep:
        b = tuple(float(v) for v in boxes[i])
        found.append((b, names[int(classes[i])], float(scores[i])))
    found.sort(key=lambda f: ((f[0][0] + f[0][2]) / 2, (f[0][1] + f[0][3]) / 2))
    return [
        SceneObject(
            k + 1,
            b,
            label,
            color_in_box(image, b, strict=True),
            size_word(b, side),
            place_word(b, w, h),
            round(score, 3),
        )
        for k, (b, label, score) in enumerate(found)
    ]


def detect_objects(detector: Any, image: np.ndarray, conf: float = LIST_CONF) -> list[SceneObject]:
    """The object list of one image by a loaded detect specialist (or anything with
    ``detect_all`` and ``class_names``): one box per object (class-agnostic NMS: measured on
    200 held-out scenes, 31 spare boxes instead of 98 for the same recall, 0.92)."""
    boxes, scores, classes = detector.detect_all(image, conf=conf, agnostic=True)
    return list_objects(image, boxes, scores, classes, detector.class_names)


def not_found(target: str, objects: list[SceneObject], where: str = "") -> NotFoundError:
    """The error for a target nothing listed matches, in words a user reads: "I can't find a
    bus on frame 0; I see 2 people" (``where``: " on frame 0" or nothing)."""
    t = target.strip()
    for lead in ("the ", "a ", "an "):
        if t.lower().startswith(lead):
            t = t[len(lead) :]
    return NotFoundError(f"I can't find {article(t)}{where}; I see {seen_words(objects)}")


def seen_words(objects: list[SceneObject], limit: int = 6) -> str:
    """What is there, for a not-found message: "2 people, a red bus" style, short."""
    if not objects:
        return "no objects"
    counts: dict[str, int] = {}
    for o in objects:
        key = " ".join(w for w in (o.color, o.label) if w)
        counts[key] = counts.get(key, 0) + 1
    parts = [count_words(n, k) for k, n in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(parts) + (f" and {more} more kinds" if more > 0 else "")
