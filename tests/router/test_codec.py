"""The hybrid-call wire format: round trips and rejection of malformed replies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from switchboard.core import HybridCall, MalformedCallError, Registry, SignalSpec, Specialist, Text
from switchboard.router.codec import SIG_TOKENS, call_json, format_reply, parse_reply


class PaintArgs(BaseModel):
    target: str = Field(min_length=1)
    strength: float = Field(0.5, ge=0, le=1)
    colors: list[str] = []


class Paint(Specialist):
    name = "paint"
    description = "paint"
    tasks = ("paint",)
    Args = PaintArgs
    signal = SignalSpec(num_tokens=3, dim=8)

    def run(self, media, args, signal=None):
        return Text(text="ok")


class CountArgs(BaseModel):
    query: str | None = None
    limit: int = Field(10, ge=1)


class Count(Specialist):
    name = "count"
    description = "count"
    tasks = ("count",)
    Args = CountArgs

    def run(self, media, args, signal=None):
        return Text(text="3")


REG = Registry({"paint": Paint, "count": Count})
text = st.text(st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=40)
paint = st.builds(
    lambda t, s, c: HybridCall(tool="paint", args={"target": t, "strength": s, "colors": c}),
    text.filter(lambda s: len(s) > 0),
    st.floats(0, 1),
    st.lists(text, max_size=3),
)
count = st.builds(
    lambda q, n: HybridCall(tool="count", args={"query": q, "limit": n}),
    st.none() | text,
    st.integers(1, 10**6),
)


@settings(max_examples=200, deadline=None)
@given(prose=text, calls=st.lists(paint | count, max_size=4), signals=st.booleans())
def test_round_trip(prose, calls, signals):
    wire = format_reply(prose, calls, REG, with_signals=signals)
    reply = parse_reply(wire, REG)
    assert reply.prose == prose.strip()
    assert [(c.tool, c.args) for c in reply.calls] == [(c.tool, c.args) for c in calls]
    want = [3 if (signals and c.tool == "paint") else 0 for c in calls]
    assert reply.signal_tokens == want
    for c in calls:  # compact JSON: what the router decodes is as short as it can be
        assert call_json(c.tool, c.args) in wire
        assert ", " not in call_json(c.tool, {}) and ": " not in call_json(c.tool, {})


@settings(max_examples=200, deadline=None)
@given(calls=st.lists(paint | count, min_size=1, max_size=3), cut=st.integers(1, 10_000))
def test_any_truncation_is_rejected_or_a_prefix_of_the_calls(calls, cut):
    """A reply cut anywhere either fails loudly or parses to a prefix of the calls (when the
    cut falls between whole blocks) — it never yields a different call."""
    wire = format_reply("ok", calls, REG)
    cut = min(cut, len(wire) - 1)
    try:
        reply = parse_reply(wire[:cut], REG)
    except MalformedCallError:
        return
    got = [(c.tool, c.args) for c in reply.calls]
    assert got == [(c.tool, c.args) for c in calls[: len(got)]]


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        ('<call>{"tool":"paint","args":{"target":"x"}}', "unclosed"),
        ('<call>{"tool":"paint","args":{"target":"x"}</call>', "not valid JSON"),
        ('<call>{"tool":"rm_rf","args":{}}</call>', "unknown tool 'rm_rf'"),
        ('<call>{"tool":"paint","args":{"target":""}}</call>', "invalid arguments"),
        ('<call>{"tool":"paint","args":{"target":"x","strength":7}}</call>', "invalid arguments"),
        ('<call>{"tool":"paint","args":[]}</call>', "must be an object"),
        ('<call>{"tool":"paint","args":{"target":"x"},"x":1}</call>', "nothing else"),
        ('<call>{"tool":"paint","args":{"target":"x"}}</call><sig_0><sig_1>', "takes 3 signal"),
        ('<call>{"tool":"paint","args":{"target":"x"}}</call><sig_1>', "out of order"),
        ('<call>{"tool":"count","args":{}}</call><sig_0>', "takes 0 signal"),
        ('hi <sig_0> <call>{"tool":"count","args":{}}</call>', "stray tag"),
        ('<call>{"tool":"count","args":{}}</call> and then prose', "expected <call>"),
        ('<call>{"tool":"count","args":{"query":"<call>"}}</call>', "tag inside"),
    ],
)
def test_malformed_replies_raise(wire, match):
    with pytest.raises(MalformedCallError, match=match):
        parse_reply(wire, REG)


def test_signal_tokens_follow_the_tools_spec_on_the_real_registry():
    from switchboard.specialists import BUILTINS

    reg = Registry(BUILTINS)
    call = HybridCall(tool="segment", args={"target": "the red circle"})
    wire = format_reply("Here it is.", [call], reg)
    assert wire.endswith("</call>" + "".join(SIG_TOKENS[:2]))
    assert parse_reply(wire, reg).signal_tokens == [2]
    with pytest.raises(MalformedCallError):
        format_reply("a <sig_0> in prose", [], reg)


def test_a_call_to_a_tool_the_registry_lacks_is_written_back_without_signals():
    """The agent writes back the calls it made; one the router made to a tool this agent's
    registry lacks failed with its own error, and writing it back must not fail the turn."""
    wire = format_reply("", [HybridCall(tool="blur", args={"x": 1})], REG)
    assert wire == '<call>{"tool":"blur","args":{"x":1}}</call>'
