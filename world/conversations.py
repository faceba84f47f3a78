"""Scripted ShapeWorld conversations of 2–5 turns, with the ground truth of every turn.

A conversation is what a user of the page does: send a picture and a request, then go on
without sending it again — "now make it yellow", "no, the other one", "what colour was it
before?", "undo", "thanks!" — or change the topic with a new picture. Each turn carries what it
must achieve, judged on its outputs like the task suite (:mod:`switchboard.evals.agent`):

- ``mask``: a mask of object ``targets[0]`` of the turn's scene;
- ``edit``: the edit ``task`` (recolor/remove) of ``targets[0]`` with ``params``;
- ``boxes``: a box on each object of ``targets``;
- ``answer``: the words ``answer``;
- ``no_edit``: no edit and no new image (chat, thanks, greetings — also with a picture);
- ``undo`` / ``redo``: the session's current image is the one before / after the last change.

``scene`` is the turn's truth: the first picture, or it after the earlier turns' edits (an undo
goes back a version). Phrasings are split like the request templates (index mod 5: 0–2 train,
3 val, 4 test), so a test conversation says its follow-ups in words training never used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .edits import apply_edit, sample_edit_params
from .language import NUMBER_WORDS, Referring
from .requests import _group, pick_referring, templates_for
from .scene import Scene, generate_scene
from .splits import SPLITS, check_split

# Follow-up phrasings; an index mod 5 of 4 is a test phrasing, 3 a validation one.
FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "recolor_it": ("now make it {color}", "make it {color}", "colour it {color}",
                   "paint it {color} please", "now turn it {color}",
                   "change it to {color}", "fill it with {color}", "can you make it {color}?",
                   "recolour it {color}", "and now colour it {color}"),
    "correct": ("no, the {ref}", "no, I meant the {ref}", "not that one, the {ref}",
                "wrong one: the {ref}", "no no, the {ref} please",
                "I meant the {ref}", "no, segment the {ref}", "the other one: the {ref}",
                "sorry, the {ref}", "actually, the {ref}"),
    "recolor_that": ("make that one {color}", "colour that one {color}", "paint that one {color}",
                     "turn that one {color}", "now make that one {color}",
                     "change that one to {color}", "that one in {color} please",
                     "recolour that one {color}", "give that one a {color} colour",
                     "make that {color}"),
    "color_now": ("what colour is it now?", "what color is it now?", "which colour is it now?",
                  "so what colour does it have now?", "what color did it become?",
                  "and its colour now?", "what is its colour now?", "tell me its colour now",
                  "which color has it got now?", "now what colour is it?"),
    "color_before": ("what colour was it before?", "what color was it originally?",
                     "which colour did it have before?", "and what was its colour before?",
                     "what color was it before you changed it?",
                     "what was its original colour?", "which colour was it at first?",
                     "what colour did it use to be?", "before that, what colour was it?",
                     "what was the colour before the change?"),
    "how_many": ("how many did you find?", "how many were there?", "how many is that?",
                 "so how many are there?", "how many did you count?",
                 "how many of them did you find?", "what's the count?", "how many in total?",
                 "and how many was that?", "how many did you see?"),
    "thanks": ("thanks!", "thank you", "great, thanks", "perfect, thank you",
               "thanks, that's great", "nice, thanks", "cool, thank you", "awesome, thanks",
               "that's perfect", "thank you so much"),
    "greeting": ("good morning", "hello there", "hi!", "hey, how are you?", "good evening",
                 "hello!", "hi there", "good afternoon", "hey", "greetings"),
    "also": ("now the {ref} too", "the {ref} as well", "and the {ref} too",
             "same for the {ref}", "do the {ref} too", "the {ref} also",
             "now do the same to the {ref}", "and also the {ref}", "also the {ref}",
             "the {ref} too, please"),
    "undo": ("undo", "undo that", "go back", "revert that", "undo the last change",
             "take that back", "undo it", "back to how it was", "revert the change",
             "please undo"),
    "redo": ("redo", "redo that", "put it back", "bring the change back", "redo the last change",
             "redo it", "do it again", "bring it back", "apply it again", "please redo"),
}  # fmt: skip
# Scripts, round-robin over a split's conversations; each one's turns are built by _SCRIPTS.
SCRIPTS = ("pronoun", "correction", "colours", "count", "topic", "also", "undo_redo",
           "greeting", "long")  # fmt: skip
CONVERSATION_OFFSET = 6000  # seeds of a split used for conversations start here
STRIDE = 10  # seeds between two conversations (a script may skip a few scenes)
_KEEP = {"train": (0, 1, 2), "val": (3,), "test": (4,)}


@dataclass
class ConvTurn:
    text: str
    expect: str  # mask | edit | boxes | answer | no_edit | undo | redo
    media: str = "none"  # "image" when the turn sends a picture (``seed``'s scene)
    seed: int | None = None
    task: str = ""  # the edit op for ``edit``
    targets: list[int] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    ref: str | None = None  # the words that name the referent, where the turn says them
    kind: str = ""  # which phrase list (or world task) the words come from
    scene: Scene | None = field(default=None, repr=False)  # the truth the turn works on

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "scene"}


@dataclass
class Conversation:
    seed: int
    split: str
    script: str
    turns: list[ConvTurn]

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "split": self.split,
            "script": self.script,
            "turns": [t.to_json() for t in self.turns],
        }


class _Builder:
    """Turns of one conversation over a scene's versions (what undo and redo move along)."""

    def __init__(self, seed: int, split: str) -> None:
        self.seed, self.split = seed, split
        self.rng = np.random.default_rng([seed, 29])
        self.versions: list[Scene] = [generate_scene(seed)]
        self.head = 0
        self.turns: list[ConvTurn] = []

    @property
    def scene(self) -> Scene:
        return self.versions[self.head]

    def say(self, kind: str, **fmt: Any) -> str:
        phrases = FOLLOW_UPS[kind]
        keep = _KEEP[self.split]
        pool = [p for i, p in enumerate(phrases) if i % 5 in keep]
        return pool[int(self.rng.integers(len(pool)))].format(**fmt)

    def template(self, task: str, **fmt: Any) -> str:
        pool = templates_for(task, self.split)
        return pool[int(self.rng.integers(len(pool)))][1].format(**fmt)

    def ref(self, other_than: int | None = None) -> Referring:
        for _ in range(20):
            r = pick_referring(self.scene, self.rng)
            if r is not None and r.target != other_than:
                return r
        raise _Skip

    def add(self, turn: ConvTurn) -> ConvTurn:
        if not self.turns:  # the first turn sends the picture
            turn.media, turn.seed = "image", self.seed
        turn.scene = self.scene
        self.turns.append(turn)
        return turn

    def edit(self, op: str, target: int, params: dict[str, Any]) -> None:
        """The truth after ``op``: a new version after the current one (a branch drops the
        versions an undo left)."""
        after = apply_edit(self.scene, op, target, params, np.random.default_rng(self.seed)).after
        self.versions[self.head + 1 :] = [after]
        self.head += 1

    def color_for(self, target: int) -> str:
        return sample_edit_params(self.scene, "recolor", target, self.rng)["color"]


class _Skip(Exception):
    """This seed's scene cannot carry the script (too few objects to refer to)."""


def _segment(b: _Builder, r: Referring) -> None:
    b.add(
        ConvTurn(
            b.template("segment", ref=r.text),
            "mask",
            targets=[r.target],
            ref=r.text,
            kind="segment",
        )
    )


def _recolor(b: _Builder, r: Referring, text: str, kind: str, named: bool = False) -> str:
    """A recolour of ``r``'s object; ``named``: the words say ``r`` (else "it", "that one")."""
    color = b.color_for(r.target)
    b.add(
        ConvTurn(
            text.format(color=color),
            "edit",
            task="recolor",
            targets=[r.target],
            params={"color": color},
            ref=r.text if named else None,
            kind=kind,
        )
    )
    b.edit("recolor", r.target, {"color": color})
    return color


def _pronoun(b: _Builder) -> None:
    r = b.ref()
    _segment(b, r)
    _recolor(b, r, b.say("recolor_it", color="{color}"), "recolor_it")
    if b.rng.random() < 0.5:
        b.add(ConvTurn(b.say("undo"), "undo", kind="undo"))
        b.head -= 1


def _correction(b: _Builder) -> None:
    first = b.ref()
    _segment(b, first)
    r = b.ref(other_than=first.target)
    b.add(
        ConvTurn(
            b.say("correct", ref=r.text), "mask", targets=[r.target], ref=r.text, kind="correct"
        )
    )
    _recolor(b, r, b.say("recolor_that", color="{color}"), "recolor_that")


def _colours(b: _Builder) -> None:
    r = b.ref()
    old = b.scene.objects[b.scene.index(r.target)].color
    new = _recolor(b, r, b.template("recolor", ref=r.text, color="{color}"), "recolor", True)
    b.add(ConvTurn(b.say("color_now"), "answer", answer=new, kind="color_now"))
    b.add(ConvTurn(b.say("color_before"), "answer", answer=old, kind="color_before"))


def _count(b: _Builder) -> None:
    params, many, one, ids = _group(b.scene, b.rng)
    b.add(
        ConvTurn(
            b.template("detect", group=many, group_one=one),
            "boxes",
            targets=ids,
            params=params,
            ref=many,
            kind="detect",
        )
    )
    b.add(ConvTurn(b.say("how_many"), "answer", answer=NUMBER_WORDS[len(ids)], kind="how_many"))
    b.add(ConvTurn(b.say("thanks"), "no_edit", kind="thanks"))


def _topic(b: _Builder) -> None:
    _segment(b, b.ref())
    b.add(ConvTurn(b.say("thanks"), "no_edit", kind="thanks"))
    lo, hi = SPLITS[b.split]
    other = lo + (b.seed - lo + 2500) % (hi - lo)  # another scene of the same split
    b.versions[b.head + 1 :] = [generate_scene(other)]
    b.head += 1
    r = b.ref()
    turn = ConvTurn(
        b.template("segment", ref=r.text),
        "mask",
        media="image",
        seed=other,
        targets=[r.target],
        ref=r.text,
        kind="new_topic",
    )
    b.add(turn)


def _also(b: _Builder) -> None:
    r = b.ref()
    color = _recolor(b, r, b.template("recolor", ref=r.text, color="{color}"), "recolor", True)
    r2 = b.ref(other_than=r.target)
    if b.scene.objects[b.scene.index(r2.target)].color == color:
        raise _Skip
    b.add(
        ConvTurn(
            b.say("also", ref=r2.text),
            "edit",
            task="recolor",
            targets=[r2.target],
            params={"color": color},
            ref=r2.text,
            kind="also",
        )
    )
    b.edit("recolor", r2.target, {"color": color})


def _undo_redo(b: _Builder) -> None:
    r = b.ref()
    b.add(
        ConvTurn(
            b.template("remove", ref=r.text),
            "edit",
            task="remove",
            targets=[r.target],
            ref=r.text,
            kind="remove",
        )
    )
    b.edit("remove", r.target, {})
    b.add(ConvTurn(b.say("undo"), "undo", kind="undo"))  # a turn's scene: what it works on
    b.head -= 1
    b.add(ConvTurn(b.say("redo"), "redo", kind="redo"))
    b.head += 1


def _greeting(b: _Builder) -> None:
    b.add(ConvTurn(b.say("greeting"), "no_edit", kind="greeting"))
    _segment(b, b.ref())


def _long(b: _Builder) -> None:
    r = b.ref()
    _segment(b, r)
    color = _recolor(b, r, b.say("recolor_it", color="{color}"), "recolor_it")
    b.add(ConvTurn(b.say("color_now"), "answer", answer=color, kind="color_now"))
    b.add(ConvTurn(b.say("undo"), "undo", kind="undo"))
    b.head -= 1
    r2 = b.ref(other_than=r.target)
    b.add(
        ConvTurn(
            b.template("remove", ref=r2.text),
            "edit",
            task="remove",
            targets=[r2.target],
            ref=r2.text,
            kind="remove",
        )
    )
    b.edit("remove", r2.target, {})


_SCRIPTS: dict[str, Callable[[_Builder], None]] = {
    "pronoun": _pronoun, "correction": _correction, "colours": _colours, "count": _count,
    "topic": _topic, "also": _also, "undo_redo": _undo_redo, "greeting": _greeting,
    "long": _long,
}  # fmt: skip


def make_conversation(seed: int, split: str = "train", script: str | None = None) -> Conversation:
    """The conversation of ``script`` (default: drawn by ``seed``) on ``generate_scene(seed)``;
    a scene that cannot carry it moves on to the next seed."""
    check_split(split)
    if script is None:
        script = SCRIPTS[int(np.random.default_rng([seed, 31]).integers(len(SCRIPTS)))]
    for s in range(seed, seed + STRIDE):
        b = _Builder(s, split)
        try:
            _SCRIPTS[script](b)
        except _Skip:
            continue
        return Conversation(s, split, script, b.turns)
    raise ValueError(f"no scene from seed {seed} on carries the {script!r} conversation")


def conversations(split: str, n: int) -> list[Conversation]:
    """``n`` conversations of ``split``, the scripts in turn; deterministic."""
    lo, hi = SPLITS[check_split(split)]
    out = []
    for k in range(n):
        seed = lo + CONVERSATION_OFFSET + STRIDE * k
        if seed + STRIDE >= hi:
            raise ValueError(f"split {split!r} has too few seeds for {n} conversations")
        out.append(make_conversation(seed, split, SCRIPTS[k % len(SCRIPTS)]))
    return out
