"""The agent's task suite: its make-up, its judges on ground-truth and wrong outputs, and a
run through the real SDK and specialists with a policy that replays the world's own plans."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from switchboard.agent.graph import Step
from switchboard.agent.sdk import Agent, Turn
from switchboard.evals.agent import TASK_TYPES, evaluate_agent, judge, suite
from switchboard.world.edits import apply_edit
from switchboard.world.requests import make_request
from switchboard.world.scene import generate_scene
from switchboard.world.splits import SPLITS


def test_the_suite_spreads_its_held_out_tasks_over_every_type():
    tasks = suite("test", 48)  # the default 240 spreads the same way, 30 per type
    assert len(tasks) == 48
    assert Counter(k for k, _ in tasks) == {k: 6 for k in TASK_TYPES}
    lo, hi = SPLITS["test"]
    assert all(lo <= r.seed < hi and r.split == "test" for _, r in tasks)
    for kind, req in tasks:
        assert req.task in TASK_TYPES[kind]
    assert [r.text for _, r in suite("test", 48)] == [r.text for _, r in tasks]
    with pytest.raises(ValueError, match="unknown task types"):
        suite("test", 8, ("painting",))


def _turn(**kw) -> Turn:
    return Turn("s", 1, kw.pop("text", "Done."), **kw)


def test_judges_pass_the_truth_and_fail_what_is_wrong():
    seg = make_request(1_010_001, "test", "segment")
    scene = generate_scene(seg.seed)
    truth = scene.masks[scene.index(seg.intents[0].targets[0])]
    assert judge(seg, _turn(masks=[truth])).ok
    assert not judge(seg, _turn(masks=[~truth])).ok and not judge(seg, _turn()).ok

    det = make_request(1_010_002, "test", "detect")
    scene = generate_scene(det.seed)
    boxes = [(tuple(scene.boxes[scene.index(i)]), "x", 1.0) for i in det.intents[0].targets]
    calls = [object()]  # detection is judged on the boxes of a turn that called something
    assert judge(det, _turn(boxes=boxes, calls=calls)).ok
    assert not judge(det, _turn(boxes=[*boxes, ((0, 0, 5, 5), "x", 1.0)], calls=calls)).ok
    assert not judge(det, _turn(boxes=boxes[1:], calls=calls)).ok

    rec = make_request(1_010_004, "test", "recolor")
    scene = generate_scene(rec.seed)
    it = rec.intents[0]
    after = apply_edit(scene, "recolor", it.targets[0], it.params, np.random.default_rng(0))
    assert judge(rec, _turn(images=[after.after.image])).ok
    assert not judge(rec, _turn(images=[scene.image])).ok

    from switchboard.core import Video
    from switchboard.world.video import apply_video_edit, generate_video

    vid = make_request(1_010_006, "test", "video_remove")
    clip = generate_video(vid.seed)
    it = vid.intents[0]
    pair = apply_video_edit(clip, "remove", it.targets[0], {})
    assert vid.media == "video"
    assert judge(vid, _turn(videos=[Video(frames=pair.after.frames, fps=clip.fps)])).ok
    assert not judge(vid, _turn(videos=[Video(frames=clip.frames, fps=clip.fps)])).ok
    assert judge(vid, _turn()).why == "no video"

    words = make_request(1_010_005, "test", "chat")
    assert judge(words, _turn(text=words.answer)).ok
    assert not judge(words, _turn(text="something else")).ok


class ReplayPolicy:
    """Answers every step with the world's own plan for the request (router/data.py's items):
    what a perfect router would say, so the suite measures the graph and the specialists."""

    def __init__(self, requests, registry):
        from switchboard.router.data import items_for

        self.plans = {r.text: items_for(r, registry) for r in requests}

    def step(self, messages, images, frame_index, regions, objects=None):
        text = next(m["content"] for m in messages if m["role"] == "user")
        items = next(v for k, v in self.plans.items() if text.endswith(k))
        k = sum(m["role"] == "assistant" for m in messages)
        item = items[min(k, len(items) - 1)]
        return Step(text="" if item.calls else item.target, calls=list(item.calls))


@pytest.mark.parametrize("n", [16])
def test_a_perfect_router_through_the_real_agent_scores_high(tmp_path, n):
    from switchboard.specialists import default_registry

    reg = default_registry()
    requests = [r for _, r in suite("test", n)]
    agent = Agent.load(home=tmp_path, policy=ReplayPolicy(requests, reg), registry=reg)
    res = evaluate_agent(agent, "test", n)
    assert res["tasks"] == n and res["errors"] == 0
    assert set(res["by_type"]) == set(TASK_TYPES)
    # The specialists alone: tracking and editing are ~0.8-0.9 each (docs/perception.md,
    # docs/editing.md); captions and answers are the world's own words here.
    assert res["success"] >= 0.7, res["misses"]


def test_a_caption_is_judged_on_what_it_names_not_the_order():
    from switchboard.evals.agent import caption_parts

    cap = make_request(1_010_006, "test", "caption")
    parts, background = caption_parts(cap.answer)
    assert parts and background
    swapped = ", ".join(reversed(parts)) + f" on a {background} background"
    assert judge(cap, _turn(text=swapped)).ok
    assert not judge(cap, _turn(text=", ".join(parts[1:]) + f" on a {background} background")).ok
    assert caption_parts("a small red circle and two large blue stars on a plain background") == (
        ["a small red circle", "two large blue stars"],
        "plain",
    )


def test_the_renamed_suite_says_the_held_out_nouns():
    from switchboard.evals.agent import RENAMED_TYPES, renamed, renamed_names
    from switchboard.router.data import TRAIN_NOUNS

    names = renamed_names()
    assert not set(names.values()) & set(TRAIN_NOUNS)
    tasks = [(k, renamed(r, names)) for k, r in suite("test", 70) if k in RENAMED_TYPES]
    assert {k for k, _ in tasks} == set(RENAMED_TYPES)
    said = " ".join(r.text + " " + (r.answer or "") for _, r in tasks)
    assert not any(f" {shape}" in said for shape in names)
    assert any(noun in said for noun in names.values())


class Polite:
    """Answers every request in words and never calls a tool."""

    def step(self, messages, images, frame_index, regions, objects=None):
        return Step(text="Hello! What would you like me to do?")


def test_conversations_run_as_sessions_and_are_judged_turn_by_turn(tmp_path):
    from switchboard.evals.agent import evaluate_conversations
    from switchboard.world.conversations import conversations

    convs = conversations("test", 8)
    agent = Agent.load(home=tmp_path, policy=Polite())
    res = evaluate_conversations(agent, "test", 8)
    specs = [t for c in convs for t in c.turns]
    quiet = sum(t.expect == "no_edit" for t in specs)
    # Only the turns that ask for nothing are right when nothing is done.
    assert res["conversations"] == 8 and res["turns"] == len(specs) and res["errors"] == 0
    assert res["turn_success"] == pytest.approx(quiet / len(specs))
    assert res["chat_turns_that_edited"] == 0 and res["chat_turns_with_picture"] == quiet
    assert res["by_position"]["1"]["n"] == 8 and res["conversation_success"] == 0.0
    assert res["by_kind"]["thanks"]["success"] == 1.0 and res["by_kind"]["segment"]["success"] == 0
