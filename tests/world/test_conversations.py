"""Scripted conversations: every script on held-out scenes, follow-ups said in held-out words,
the truth of each turn following the edits and undos before it; and the per-turn judge."""

from __future__ import annotations

import re

import numpy as np
import pytest
from switchboard.agent.sdk import CallRecord, Turn
from switchboard.evals.agent import judge_conversation_turn
from switchboard.world.conversations import FOLLOW_UPS, SCRIPTS, conversations


@pytest.fixture(scope="module")
def convs():
    return conversations("test", 2 * len(SCRIPTS))


def test_every_script_in_held_out_words(convs):
    assert [c.script for c in convs] == [*SCRIPTS, *SCRIPTS]
    for c in convs:
        assert 2 <= len(c.turns) <= 5 and c.turns[0].media == "image"
        assert c.split == "test" and 1_010_000 <= c.seed < 1_020_000
        for t in c.turns[1:]:
            assert t.media == "none" or t.kind == "new_topic"
            if t.kind in FOLLOW_UPS:  # a follow-up's words are a test phrasing only
                pats = [
                    re.escape(p).replace(r"\{ref\}", ".+").replace(r"\{color\}", r"\w+")
                    for p in FOLLOW_UPS[t.kind]
                ]
                hits = [i for i, p in enumerate(pats) if re.fullmatch(p, t.text)]
                assert hits and all(i % 5 == 4 for i in hits), t.text


def test_the_truth_follows_edits_and_undo(convs):
    by = {c.script: c for c in convs}
    colours = by["colours"].turns
    target = colours[0].targets[0]
    before = colours[0].scene.objects[colours[0].scene.index(target)].color
    after = colours[1].scene.objects[colours[1].scene.index(target)].color
    assert (after, colours[1].answer, colours[2].answer) == (
        colours[0].params["color"],
        after,
        before,
    )
    undo = by["undo_redo"].turns  # a turn's scene is what it works on
    n = len(undo[0].scene.objects)
    assert len(undo[1].scene.objects) == n - 1  # "undo" is said over the removal
    assert undo[2].scene is undo[0].scene  # "redo" over the image the undo brought back
    topic = by["topic"].turns
    assert topic[2].media == "image" and topic[2].seed != by["topic"].seed


def _turn(text="", calls=(), masks=(), images=()):
    t = Turn("s", 1, text)
    t.calls, t.masks, t.images = list(calls), list(masks), list(images)
    return t


def test_the_judge_of_a_conversation_turn(convs):
    by = {c.script: c for c in convs}
    seg = by["greeting"].turns[1]
    truth = seg.scene.masks[seg.scene.index(seg.targets[0])]
    assert judge_conversation_turn(seg, _turn(masks=[truth]), [None], None).ok
    assert not judge_conversation_turn(seg, _turn(masks=[~truth]), [None], None).ok
    hello = by["greeting"].turns[0]
    edit = CallRecord("edit", {"op": "remove"}, "ok", 0.1, "[edit → new image]")
    assert judge_conversation_turn(hello, _turn("Hello!"), [None], None).ok
    assert not judge_conversation_turn(hello, _turn("", [edit], images=[truth]), [None], None).ok
    now = by["colours"].turns[1]
    other = next(c for c in ("red", "blue", "green") if c != now.answer)
    assert judge_conversation_turn(now, _turn(f"It is {now.answer} now."), [None], None).ok
    assert not judge_conversation_turn(now, _turn(f"{now.answer} or {other}"), [None], None).ok
    undo, redo = by["undo_redo"].turns[1:]
    up = {"id": 1, "parent_id": None}
    edited = {"id": 2, "parent_id": 1}
    assert judge_conversation_turn(undo, _turn(), [up, edited], up).ok
    assert not judge_conversation_turn(undo, _turn(), [up, edited], edited).ok
    assert not judge_conversation_turn(undo, _turn(), [up, up], up).ok  # nothing was changed
    assert judge_conversation_turn(redo, _turn(), [up, edited, up], edited).ok
    assert not judge_conversation_turn(redo, _turn(), [up, edited, up], up).ok
    assert np.asarray(truth).any()
