"""Training items from scripted conversations: every target a valid reply, the earlier turns'
words in front as the agent writes them, pronouns by object index, undo by the agent's tool."""

from __future__ import annotations

import json

import pytest
from switchboard.agent.tools import with_agent_tools
from switchboard.core import Registry
from switchboard.router.codec import parse_reply
from switchboard.router.data import DONE
from switchboard.router.dialogue import items_for_conversation
from switchboard.specialists import BUILTINS
from switchboard.world.conversations import SCRIPTS, make_conversation


@pytest.fixture(scope="module")
def registry():
    return with_agent_tools(Registry(BUILTINS))


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_turn_becomes_valid_items_with_its_history(registry, script):
    conv = make_conversation(2_000 + 10 * SCRIPTS.index(script), "train", script)
    items = items_for_conversation(conv, registry)
    firsts = [it for it in items if it.step == 0]
    assert len(firsts) == len(conv.turns)
    for k, (it, turn) in enumerate(zip(firsts, conv.turns, strict=True)):
        # system, then two messages per earlier turn (its words and the agent's reply), then
        # this turn's request with the object list of the image it works on
        assert len(it.messages) == 2 + 2 * k and it.messages[-1]["content"].endswith(turn.text)
        assert it.objects is not None and it.messages[-1]["content"].startswith("{media}")
        reply = parse_reply(it.target, registry)  # raises on anything malformed
        if turn.expect in ("answer", "no_edit"):
            assert not reply.calls and it.target == it.answer
        else:
            (call,) = reply.calls
            assert (
                call.tool
                == {
                    "mask": "segment",
                    "edit": "edit",
                    "boxes": "detect",
                    "undo": "history",
                    "redo": "history",
                }[turn.expect]
            )
            if turn.expect == "edit" and turn.ref is None:  # "it", "that one": by index only
                assert "target" not in call.args and call.args.get("object")
    assert items[-1].target == DONE or items[-1].answer is not None


def test_a_pronoun_finds_its_object_in_the_agents_earlier_reply(registry):
    conv = make_conversation(2_000, "train", "pronoun")
    items = items_for_conversation(conv, registry)
    edit = next(it for it in items if it.step == 0 and '"op":"recolor"' in it.target)
    earlier_reply = edit.messages[-2]["content"]
    k = parse_reply(edit.target, registry).calls[0].args["object"]
    assert earlier_reply.startswith("I segmented the ") and f"(#{k})" in earlier_reply


def test_a_request_over_a_group_is_one_call_with_every(registry):
    """ "remove every X" / "make all the X Y": one edit on the group's words with ``every``
    (the agent runs it per member), never an object index of one member."""
    from switchboard.router.data import items_for
    from switchboard.world.requests import make_request

    for task, op in (("remove_all", "remove"), ("recolor_all", "recolor")):
        r = make_request(11, "train", task)
        first, done = items_for(r, registry)
        call = json.loads(first.target.removeprefix("<call>").removesuffix("</call>"))
        assert call["tool"] == "edit" and call["args"]["op"] == op
        assert call["args"]["every"] is True and "object" not in call["args"]
        assert call["args"]["target"] == r.intents[0].target_text
        assert done.target == "Done."
