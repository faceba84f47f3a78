"""Words for what pixels show, shared by the run time and the ShapeWorld generator.

The colour palette is what the colour namer (``specialists/colors.py``) compares pixels with and
what ShapeWorld paints with; the size and place words are how the object list describes a box.
Defined here, below both, so that the run time never imports the data generator.
"""

from __future__ import annotations

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (38, 78, 220),
    "yellow": (240, 212, 36),
    "orange": (245, 135, 25),
    "purple": (135, 55, 190),
    "cyan": (30, 200, 215),
    "pink": (245, 125, 190),
}
COLOR_NAMES = tuple(COLORS)
SIZE_WORDS = ("small", "medium", "large")
# A 3x3 grid over the image, (column, row) → name.
PLACES: dict[str, tuple[int, int]] = {
    "top left": (0, 0),
    "top": (1, 0),
    "top right": (2, 0),
    "left": (0, 1),
    "center": (1, 1),
    "right": (2, 1),
    "bottom left": (0, 2),
    "bottom": (1, 2),
    "bottom right": (2, 2),
}
# Nouns that name no class: "every object", "the red things", "all items".
GENERIC_NOUNS = frozenset(
    {
        "object",
        "objects",
        "shape",
        "shapes",
        "thing",
        "things",
        "item",
        "items",
        "everything",
        "anything",
        "all",
        "any",
        "one",
        "ones",
    }
)


def plural_noun(noun: str) -> str:
    """English plural of a noun phrase's last word ("traffic lights", "buses", "crosses",
    "ponies", "people")."""
    head, _, last = noun.rpartition(" ")
    if last == "person":
        last = "people"
    elif last.endswith(("s", "x", "ch", "sh", "z")):
        last += "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return f"{head} {last}" if head else last


def article(words: str) -> str:
    """``words`` with "a" or "an" before them ("an orange star", "a red bus")."""
    w = words.strip()
    return ("an " if w[:1].lower() in "aeiou" else "a ") + w


def singular_noun(noun: str) -> str:
    """The singular of a noun phrase's last word, as :func:`plural_noun` writes plurals
    ("blue crosses" → "blue cross", "people" → "person", "ponies" → "pony"); a word that reads
    as singular already is kept ("bus", "glass")."""
    head, _, last = noun.rpartition(" ")
    if last == "people":
        last = "person"
    elif last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("ses", "xes", "ches", "shes", "zes")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us")):
        last = last[:-1]
    return f"{head} {last}" if head else last


def count_words(n: int, noun: str) -> str:
    """A number of things in words a reply uses: "a red bus", "2 people", "no stars"."""
    if n == 0:
        return f"no {plural_noun(noun)}"
    return article(noun) if n == 1 else f"{n} {plural_noun(noun)}"
