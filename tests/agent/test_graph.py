"""The agent's graph with a scripted policy (the router's replies written out) and real
specialists: one call, parallel calls, a chain through an edit, the step limit, a crashing
specialist and a slow one."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import pytest
from pydantic import BaseModel
from switchboard.agent.graph import AgentRuntime, Step, build_graph
from switchboard.core import HybridCall, Registry, Specialist
from switchboard.core.results import Masks, Text
from switchboard.specialists import BUILTINS
from switchboard.world.scene import generate_scene


class NoArgs(BaseModel):
    seconds: float = 0.0


class Sleepy(Specialist):
    """Sleeps ``seconds`` and reports when it ran (for parallelism and timeouts)."""

    name = "sleepy"
    description = "waits"
    tasks = ("wait",)
    Args = NoArgs
    media = ("none",)
    thread_safe = True  # it keeps no state: its calls may overlap
    spans: ClassVar[list[tuple[float, float]]] = []

    def run(self, media: Any, args: NoArgs, signal: Any = None) -> Text:
        t0 = time.perf_counter()
        time.sleep(args.seconds)
        Sleepy.spans.append((t0, time.perf_counter()))
        return Text(text="slept")


class Broken(Specialist):
    name = "broken"
    description = "always fails"
    tasks = ("fail",)
    Args = NoArgs
    media = ("none",)

    def run(self, media: Any, args: NoArgs, signal: Any = None) -> Text:
        raise RuntimeError("the weights file is corrupt")


class Probe(Specialist):
    """Records the pixels it was given (to see which image a chained call works on)."""

    name = "probe"
    description = "looks"
    tasks = ("look",)
    Args = NoArgs
    seen: ClassVar[list[np.ndarray]] = []

    def run(self, media: Any, args: NoArgs, signal: Any = None) -> Text:
        Probe.seen.append(media.pixels.copy())
        return Text(text="seen")


class Scripted:
    """A policy that answers with the given steps in order and keeps what it was shown."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps, self.shown = list(steps), []

    def step(self, messages, images, frame_index, regions, objects=None) -> Step:
        self.shown.append([dict(m) for m in messages])
        return self.steps.pop(0) if self.steps else Step(text="Done.")


def _run(
    policy: Scripted, image: np.ndarray | None = None, text: str = "do it", **kw: Any
) -> tuple[dict, list]:
    reg = Registry(BUILTINS)
    for cls in (Sleepy, Broken, Probe):
        reg.register(cls)
    events: list[dict] = []
    rt = AgentRuntime(policy, reg, on_event=events.append, **kw)
    state: dict[str, Any] = {"text": text, "regions": [], "history": []}
    if image is not None:
        rt.media["img"] = image
        state.update(media="img", media_kind="image")
    out = build_graph().invoke(state, config={"configurable": {"runtime": rt}})
    return out, events


@pytest.fixture(scope="module")
def scene():
    return generate_scene(3)


def test_one_call_runs_the_specialist_and_the_router_reads_its_observation(scene):
    i = int(np.argmax([m.sum() for m in scene.masks]))  # the most visible object
    box = [float(v) for v in scene.boxes[i]]
    policy = Scripted([Step(calls=[HybridCall(tool="segment", args={"box": box})])])
    out, events = _run(policy, scene.image)
    (res,) = out["results"]
    assert res["status"] == "ok" and isinstance(res["result"], Masks)
    mask = res["result"].masks[0]
    assert (mask & scene.masks[i]).sum() / (mask | scene.masks[i]).sum() > 0.7
    # The router's next prompt ends with the observation, in its training format.
    last = policy.shown[1][-1]["content"]
    assert last.startswith("[segment → 1 mask, area ") and last == res["observation"]
    assert policy.shown[1][-2]["content"].startswith('<call>{"tool":"segment"')
    assert out["final"] == "I segmented the object in the box — mask 1."  # not "Done."
    assert [e["type"] for e in events] == [
        "route",
        "call_started",
        "call_finished",
        "route",
        "text",
    ]


def test_calls_of_one_step_run_in_parallel():
    """A thread-safe tool's calls of one step overlap (a model that keeps state, the default,
    serves them one at a time: test_concurrency)."""
    Sleepy.spans.clear()
    calls = [HybridCall(tool="sleepy", args={"seconds": 0.6}) for _ in range(3)]
    t0 = time.perf_counter()
    out, _ = _run(Scripted([Step(calls=calls)]))
    wall = time.perf_counter() - t0
    assert [r["status"] for r in out["results"]] == ["ok"] * 3
    starts, ends = [s for s, _ in Sleepy.spans], [e for _, e in Sleepy.spans]
    assert max(starts) < min(ends)  # all three were running at once
    assert wall < 1.6


def test_a_chained_call_works_on_the_edited_image(scene):
    Probe.seen.clear()
    box = [float(v) for v in scene.boxes[0]]
    policy = Scripted(
        [
            Step(calls=[HybridCall(tool="edit", args={"op": "remove", "box": box})]),
            Step(calls=[HybridCall(tool="probe", args={})]),
        ]
    )
    out, _ = _run(policy, scene.image)
    assert [r["tool"] for r in out["results"]] == ["edit", "probe"]
    assert out["results"][0]["observation"] == "[edit → new image]"
    edited = out["results"][0]["result"].image
    assert np.array_equal(Probe.seen[0], edited) and not np.array_equal(edited, scene.image)


def test_the_step_limit_ends_a_turn_that_never_answers():
    policy = Scripted([Step(calls=[HybridCall(tool="sleepy", args={})]) for _ in range(10)])
    out, _ = _run(policy, max_steps=3)
    assert len(out["results"]) == 3 and len(policy.shown) == 3
    assert "stopped after 3 steps" in out["final"]


def test_a_failed_call_repeated_word_for_word_is_not_run_again():
    broken = HybridCall(tool="broken", args={"seconds": 0.0})
    policy = Scripted([Step(calls=[broken]) for _ in range(10)])
    out, _ = _run(policy, max_steps=6)
    # The second identical call ends the turn: one run, one failure sentence, no step limit.
    assert len(out["results"]) == 1 and len(policy.shown) == 2
    assert "stopped after" not in out["final"] and "I couldn't run broken:" in out["final"]
    # A different call after a failure still runs.
    policy = Scripted(
        [
            Step(calls=[broken]),
            Step(calls=[HybridCall(tool="sleepy", args={})]),
            Step(text="Slept instead."),
        ]
    )
    out, _ = _run(policy)
    assert [r["status"] for r in out["results"]] == ["error", "ok"]


def test_a_crashing_specialist_becomes_a_message_and_an_observation():
    policy = Scripted(
        [Step(calls=[HybridCall(tool="broken", args={})]), Step(text="Sorry, that did not work.")]
    )
    out, events = _run(policy)
    (res,) = out["results"]
    assert res["status"] == "error" and "corrupt" in res["error"]
    assert policy.shown[1][-1]["content"].startswith("[broken → error:")
    assert out["final"].startswith("Sorry, that did not work.")
    assert "I couldn't run broken:" in out["final"] and "corrupt" in out["final"]
    assert events[2]["status"] == "error"


def test_a_slow_specialist_times_out_without_stopping_the_turn():
    policy = Scripted([Step(calls=[HybridCall(tool="sleepy", args={"seconds": 1.5})])])
    t0 = time.perf_counter()
    out, _ = _run(policy, timeout_s=0.2)
    assert time.perf_counter() - t0 < 1.2
    (res,) = out["results"]
    assert res["status"] == "timeout" and "0.2 s" in res["error"]
    assert "I couldn't run sleepy in time" in out["final"]


def test_observations_follow_the_router_training_format():
    from switchboard.core.results import Boxes
    from switchboard.router.prompt import observe_result

    boxes = Boxes(xyxy=[(1, 2, 3, 4), (5.4, 6, 7, 8)], labels=["a", "b"], scores=[0.9, 0.8])
    assert observe_result("detect", boxes) == "[detect → 2 boxes: (1,2,3,4), (5,6,7,8)]"
    assert observe_result("segment", Masks(masks=[], scores=[])) == "[segment → done]"


def test_specialists_load_on_first_use_and_unload_over_the_memory_budget(scene):
    reg = Registry(BUILTINS)
    reg.register(Probe)
    box = [float(v) for v in scene.boxes[0]]
    policy = Scripted(
        [
            Step(calls=[HybridCall(tool="segment", args={"box": box})]),
            Step(calls=[HybridCall(tool="probe", args={})]),
        ]
    )
    events: list[dict] = []
    rt = AgentRuntime(policy, reg, on_event=events.append, memory_budget_mb=1.0)
    rt.media["img"] = scene.image
    assert reg.loaded() == []  # nothing is loaded before a call needs it
    build_graph().invoke(
        {"text": "x", "media": "img", "regions": [], "history": []},
        config={"configurable": {"runtime": rt}},
    )
    # Over a 1 MiB budget every specialist but the one just used is unloaded after a step
    # (detect first: perceive ran it for the object list).
    assert reg.loaded() == ["probe"]
    assert [e["tools"] for e in events if e["type"] == "unloaded"] == [["detect"], ["segment"]]


def test_an_object_index_becomes_its_box_and_the_calls_words_are_checked():
    from switchboard.agent.graph import resolve_object
    from switchboard.core import InvalidInputError, NotFoundError
    from switchboard.specialists.objects import SceneObject

    objects = [
        SceneObject(1, (10, 10, 40, 40), "circle", "red", "small", "top left", 0.9),
        SceneObject(2, (150, 150, 200, 200), "star", "blue", "medium", "bottom right", 0.9),
    ]
    classes = ["circle", "star"]
    got = resolve_object({"object": 2}, objects, classes, 256)
    assert got["box"] == [150.0, 150.0, 200.0, 200.0]
    # The words name the other object: the user's words win over the index.
    got = resolve_object({"target": "red circle", "object": 2}, objects, classes, 256)
    assert (got["object"], got["box"]) == (1, [10.0, 10.0, 40.0, 40.0])
    # Words alone resolve too; a given box is left as it is.
    assert resolve_object({"target": "the star"}, objects, classes, 256)["object"] == 2
    assert resolve_object({"box": [1, 2, 3, 4], "object": 1}, objects) == {"box": [1, 2, 3, 4]}
    with pytest.raises(NotFoundError, match="I can't find a bus; I see a red circle"):
        resolve_object({"target": "the bus", "object": 1}, objects, classes, 256)
    with pytest.raises(InvalidInputError, match="no object #3"):
        resolve_object({"object": 3}, objects, classes, 256)
    # Words that rule out the indexed object (a triangle, a green one) drop the index: the
    # specialist reads the words itself, and says not found rather than using a guess.
    for words in ("the small triangle", "green circle"):
        got = resolve_object({"target": words, "object": 1}, objects, classes + ["triangle"], 256)
        assert got == {"target": words}
    # Words that fit the indexed object (or name nothing to check) keep it.
    got = resolve_object({"target": "the one on the left", "object": 1}, objects, classes, 256)
    assert got["object"] == 1


@pytest.fixture(scope="module")
def detector():
    from switchboard.specialists import default_registry

    det = default_registry().get("detect")
    det.load()
    return det


def test_a_call_on_a_group_edits_every_member_and_checks_none_is_left(scene, detector):
    """ "remove every purple shape": one call with ``every``; the agent runs one edit per
    listed member on the image the last one made, then looks again with the detector."""
    from switchboard.evals.specialists import removed
    from switchboard.world.edits import apply_edit

    purple = [o.id for o in scene.objects if o.color == "purple"]
    assert len(purple) == 2
    call = HybridCall(tool="edit", args={"op": "remove", "target": "purple shapes", "every": True})
    out, _ = _run(Scripted([Step(calls=[call])]), scene.image)
    (res,) = out["results"]
    assert res["status"] == "ok" and res["left"] == 0 and len(res["members"]) == 2
    image = res["result"].image
    truth = scene
    for oid in purple:
        truth = apply_edit(truth, "remove", oid, {}, np.random.default_rng(0)).after
    for oid in purple:
        i = scene.index(oid)
        assert removed(detector, image, scene.boxes[i], truth.image, scene.masks[i])
    k1, k2 = res["members"]
    assert out["final"] == f"I removed 2 purple shapes (#{k1}, #{k2})."


def test_a_group_the_image_does_not_have_is_not_found_and_nothing_is_edited(scene):
    call = HybridCall(
        tool="edit", args={"op": "recolor", "target": "yellow stars", "every": True, "color": "red"}
    )
    out, _ = _run(Scripted([Step(calls=[call])]), scene.image, "make every yellow star red")
    (res,) = out["results"]
    assert res["status"] == "not_found" and res["result"] is None
    assert out["final"].startswith("I can't find any yellow stars; I see ")


def test_an_edit_with_a_colour_nobody_said_is_not_run_and_the_agent_asks(scene):
    """A greeting with a picture read as "recolour something blue": nothing is painted."""
    call = HybridCall(tool="edit", args={"op": "recolor", "object": 1, "color": "blue"})
    policy = Scripted([Step(calls=[call])])
    reg = Registry(BUILTINS)
    events: list[dict] = []
    rt = AgentRuntime(policy, reg, on_event=events.append)
    rt.media["img"] = scene.image
    state = {"text": "good morning!", "regions": [], "history": [], "media": "img",
             "media_kind": "image"}  # fmt: skip
    out = build_graph().invoke(state, config={"configurable": {"runtime": rt}})
    assert not out.get("results")
    assert out["final"] == (
        "I haven't changed anything: you didn't mention \"blue\". What would you like me to do?"
    )
    (refused,) = [e for e in events if e["type"] == "refused"]
    assert refused["calls"][0]["unsaid"] == ["blue"]
    # The same call is run when the colour was said, in this turn or an earlier one.
    earlier = [{"role": "user", "content": "paint it blue"}]
    for text, history in (("make it blue", []), ("now that one", earlier)):
        rt = AgentRuntime(Scripted([Step(calls=[call])]), reg)
        rt.media["img"] = scene.image
        out = build_graph().invoke(
            {**state, "text": text, "history": history}, config={"configurable": {"runtime": rt}}
        )
        assert [r["status"] for r in out["results"]] == ["ok"]
