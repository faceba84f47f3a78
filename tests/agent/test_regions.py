"""A drawn region bound to the call that points at it: which targets are deictic, which argument
each specialist's schema gets, and — through the real graph and SAM — "segment this" with a drawn
box or sketch segments the object drawn on, not something else."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from switchboard.agent.graph import AgentRuntime, Step, build_graph
from switchboard.agent.regions import bind_region, is_deictic
from switchboard.core import HybridCall, Registry, decode_rle
from switchboard.evals.metrics import mask_iou
from switchboard.specialists import BUILTINS
from switchboard.world.scene import generate_scene

SCHEMAS = {s.name: s.args_schema for s in Registry(BUILTINS).specs()}


@pytest.mark.parametrize(
    "words",
    [
        "this",
        "That one",
        "it",
        "this circle",
        "here",
        "the box",
        "the selected region",
        "marked",
        "this object.",
    ],
)
def test_deictic_targets(words):
    assert is_deictic(words)


@pytest.mark.parametrize(
    "words",
    [
        "the red circle",
        "the blue one",
        "circles",
        "the star on the left",
        "everything",
        "the selected red star",
    ],
)
def test_named_targets_are_not_deictic(words):
    assert not is_deictic(words)


def test_each_specialist_gets_the_region_in_its_own_argument():
    box, point = {"box": [10, 20, 60, 90]}, {"point": [30, 40]}
    mask = np.zeros((100, 120), bool)
    mask[20:50, 30:70] = True
    assert bind_region(SCHEMAS["segment"], {"target": "this"}, box) == {"box": [10, 20, 60, 90]}
    assert bind_region(SCHEMAS["segment"], {"target": "it"}, point) == {
        "points": [[30.0, 40.0]],
        "point_labels": [1],
    }
    seg = bind_region(SCHEMAS["segment"], {}, {"mask": mask})
    assert np.array_equal(decode_rle(seg["mask"]), mask)
    edit = bind_region(
        SCHEMAS["edit"], {"op": "recolor", "target": "this", "color": "red"}, {"mask": mask}
    )
    assert edit["op"] == "recolor" and "target" not in edit
    assert np.array_equal(decode_rle(edit["region"]), mask)
    assert bind_region(SCHEMAS["track"], {"target": "that one"}, {"mask": mask}) == {
        "box": [30.0, 20.0, 70.0, 50.0]
    }
    # left alone: a named target, a call with its own box, a tool with no place for it
    named = {"target": "the red circle"}
    assert bind_region(SCHEMAS["segment"], named, box) is named
    own = {"box": [1, 2, 3, 4]}
    assert bind_region(SCHEMAS["segment"], own, box) is own
    assert bind_region(SCHEMAS["detect"], {"query": "stars"}, box) == {"query": "stars"}
    assert bind_region(SCHEMAS["track"], {"target": "this"}, point) == {"target": "this"}
    assert bind_region(SCHEMAS["segment"], {"target": "this"}, None) == {"target": "this"}
    # with the user's words: a target they never said was read off the region; one they said wins
    read_off = {"target": "square"}
    assert bind_region(SCHEMAS["segment"], read_off, box, "segment this") == box
    assert bind_region(SCHEMAS["segment"], named, box, "segment the red circle") is named


class SegmentThis:
    """The router's reply to "segment this" with a region: a deictic target, no pixels."""

    def step(self, messages, images, frame_index, regions, objects=None) -> Step:
        if len(messages) > 2:
            return Step(text="Done.")
        return Step(calls=[HybridCall(tool="segment", args={"target": "this"})])


def _segment_this(scene, region: dict[str, Any]) -> tuple[dict, list]:
    events: list[dict] = []
    rt = AgentRuntime(SegmentThis(), Registry(BUILTINS), on_event=events.append)
    rt.media["img"] = scene.image
    state = {"text": "segment this", "regions": [region], "history": [], "media": "img",
             "media_kind": "image"}  # fmt: skip
    out = build_graph().invoke(state, config={"configurable": {"runtime": rt}})
    return out, events


@pytest.fixture(scope="module")
def scene():
    return generate_scene(5)


@pytest.mark.parametrize("how", ["box", "sketch"])
def test_segment_this_segments_the_object_drawn_on(scene, how):
    for k in range(len(scene.objects)):  # every object, each pointed at in turn
        visible = scene.masks[k]
        if visible.sum() < 150:
            continue
        if how == "box":
            region = {"box": [float(v) for v in scene.boxes[k]]}
        else:  # a free-hand outline: the object's box, a little grown, as a mask
            x1, y1, x2, y2 = (int(v) for v in scene.boxes[k])
            region = {"mask": np.zeros_like(visible)}
            region["mask"][max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True
        out, events = _segment_this(scene, region)
        (result,) = out["results"]
        assert result["status"] == "ok", result["error"]
        started = next(e for e in events if e["type"] == "call_started")
        assert "target" not in started["args"]  # the trace shows the bound region
        assert mask_iou(result["result"].masks[0], visible) > 0.7, (how, k)
