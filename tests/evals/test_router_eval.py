"""The router metrics on hand-made replies: each metric counts what it says."""

from __future__ import annotations

from switchboard.core import HybridCall, Registry
from switchboard.evals.router import _loose_calls, score, tool_prompt
from switchboard.router.codec import Reply
from switchboard.router.data import Item
from switchboard.specialists import BUILTINS

REG = Registry(BUILTINS)


def item(task, calls=(), answer=None, target=""):
    return Item([], [], [], target, task, calls=list(calls), answer=answer)


def test_score_counts_what_it_says():
    seg = HybridCall(tool="segment", args={"target": "red circle"})
    det = HybridCall(tool="detect", args={"shape": "circle", "color": "red"})
    items = [
        item("segment", [seg]),
        item("detect", [det]),
        item("detect", [det]),
        item("question", answer="three"),
        item("chat", answer="hi"),
        item("ground", target="[10,10,50,50]"),
    ]
    replies = [
        Reply(
            calls=[HybridCall(tool="segment", args={"target": "red circle", "multimask": False})]
        ),
        Reply(calls=[HybridCall(tool="detect", args={"shape": "circle", "color": "blue"})]),
        None,  # invalid output
        Reply(prose="Three."),
        Reply(calls=[seg]),  # called a tool where words were due
        Reply(prose="[12,10,50,52]"),
    ]
    res = score(items, replies, REG)
    assert res["valid_calls"] == 5 / 6
    assert res["tool_selection"] == 2 / 3
    assert res["exact_call"] == 1 / 3  # a default written out still matches
    assert res["argument_accuracy"] == 2 / 5  # target; shape (colour wrong; third call missing)
    assert res["decision"] == 3 / 5
    assert res["answers"] == 1.0 and res["grounding_iou50"] == 1.0
    assert res["by_task"] == {
        "detect": {"calls": 2, "tool": 0.5, "exact": 0.0},
        "segment": {"calls": 1, "tool": 1.0, "exact": 1.0},
    }
    # Every item got wrong is listed with what was wanted and what came out.
    assert [(m["task"], m["got"] is None) for m in res["misses"]] == [
        ("detect", False),
        ("detect", True),
        ("chat", False),
    ]
    assert '"color":"blue"' in res["misses"][0]["got"] and "segment" in res["misses"][2]["got"]


def test_baseline_prompt_and_lenient_parsing():
    text = tool_prompt(REG)
    assert all(f"- {name}:" in text for name in REG.names())
    loose = _loose_calls('Sure! <call>{"tool": "segment", "args": {"target": "x"}}</call>')
    assert loose == '<call>{"tool":"segment","args":{"target":"x"}}</call>'
