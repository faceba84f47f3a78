"""The reply in words (agent/reply.py): each call's sentence says what was done and on what, and a
failure reads as one."""

from __future__ import annotations

import numpy as np
from switchboard.agent.reply import describe_call, describe_turn, subject
from switchboard.core.results import Boxes, ImageOut, Masks, Track, Tracks
from switchboard.specialists.objects import SceneObject

OBJECTS = [
    SceneObject(1, (10, 10, 40, 40), "circle", "red", "small", "top left", 0.9),
    SceneObject(2, (60, 60, 120, 120), "star", "blue", "large", "center", 0.8),
]


def _call(tool, args, status="ok", result=None, error=None, step=0, index=0):
    return {
        "step": step,
        "index": index,
        "tool": tool,
        "args": args,
        "status": status,
        "error": error,
        "result": result,
        "observation": "",
        "seconds": 0.1,
    }


def _mask():
    m = np.zeros((8, 8), bool)
    m[2:4, 2:4] = True
    return m


def test_the_subject_is_the_listed_object_then_the_words_then_the_region():
    assert subject({"object": 1, "target": "circle"}, OBJECTS) == "the small red circle (#1)"
    assert subject({"target": "circle on the left"}, OBJECTS) == "the circle on the left"
    assert subject({"mask": [[1]]}, None) == "the region you marked"
    assert subject({"box": [1, 2, 3, 4]}, None) == "the object in the box"


def test_each_tool_says_what_it_did():
    seg = _call("segment", {"object": 2}, result=Masks(masks=[_mask()], scores=[0.9]))
    assert describe_call(seg, OBJECTS) == "I segmented the large blue star (#2) — mask 1."
    det = _call(
        "detect",
        {"shape": "star", "color": "blue"},
        result=Boxes(xyxy=[(1, 1, 2, 2)] * 3, labels=["star"] * 3, scores=[0.9] * 3),
    )
    assert describe_call(det, OBJECTS).startswith("I found 3 blue stars")
    none = _call("detect", {"shape": "cross"}, result=Boxes(xyxy=[], labels=[], scores=[]))
    assert describe_call(none, OBJECTS) == "I found no crosses."
    image = ImageOut(image=np.zeros((8, 8, 3), np.uint8))
    rec = _call("edit", {"op": "recolor", "object": 1, "color": "green"}, result=image)
    assert describe_call(rec, OBJECTS) == "I recoloured the small red circle (#1) green."
    add = _call(
        "edit",
        {"op": "add", "color": "orange", "shape": "heart", "place": "top right"},
        result=image,
    )
    assert describe_call(add, OBJECTS) == "I added an orange heart in the top right."
    trk = _call(
        "track",
        {"target": "circle"},
        result=Tracks(
            tracks=[Track(track_id=1, label="circle", frames=[0, 1, 2], xyxy=[(0, 0, 1, 1)] * 3)],
            num_frames=4,
        ),
    )
    assert describe_call(trk, OBJECTS) == "I tracked the circle on 3 of 4 frames — track 1."


def test_failures_read_as_failures():
    nf = _call(
        "edit",
        {"op": "recolor", "target": "yellow bus"},
        status="not_found",
        error="I can't find a yellow bus; I see a small red circle and a large blue star",
    )
    assert describe_call(nf, OBJECTS).startswith("I can't find a yellow bus; I see")
    err = _call(
        "edit",
        {"op": "recolor", "target": "yellow", "color": "red"},
        status="error",
        error="no object matches 'yellow'",
    )
    assert describe_call(err, OBJECTS) == (
        "I couldn't recolour the yellow: no object matches 'yellow'."
    )
    slow = _call("segment", {"object": 1}, status="timeout", error="segment took longer than 60 s")
    said = describe_call(slow, OBJECTS)
    assert said.startswith("I couldn't segment the small red circle (#1) in time")
    # The same failure twice in a turn (the router tried again) is said once.
    twice = describe_turn([nf, {**nf, "step": 1}], OBJECTS)
    assert twice.count("I can't find a yellow bus") == 1
    undo = _call("history", {"op": "undo"}, status="error", error="there is nothing to undo")
    assert describe_call(undo, OBJECTS) == "I couldn't undo: there is nothing to undo."


def test_masks_are_numbered_across_the_turn_as_the_page_shows_them():
    masks = Masks(masks=[_mask(), _mask()], scores=[0.9, 0.8])
    calls = [
        _call("segment", {"object": 1}, result=masks, index=0),
        _call("segment", {"object": 2}, result=masks, index=1),
    ]
    text = describe_turn(calls, OBJECTS)
    assert "masks 1–2" in text and "masks 3–4" in text


def test_bad_arguments_read_as_words_not_a_pydantic_dump():
    from switchboard.core.errors import InvalidInputError
    from switchboard.specialists.edit import EditSpecialist

    try:
        EditSpecialist.parse_args({"op": "recolor", "color": {"r": 1}, "box": [1, 2, 3, 4, 5]})
    except InvalidInputError as exc:
        said = str(exc)
    assert said.startswith("invalid arguments for edit: ")
    assert "color: Input should be a valid string" in said and "box: Tuple should have" in said
    assert "input_value" not in said and "{" not in said
