"""End-to-end evaluation of the agent on a ShapeWorld task suite (held-out phrasings).

    switchboard eval agent --split test --n 240

Each task is one world request (:func:`~switchboard.world.requests.make_request` on the split's
seeds) sent through the SDK (:class:`~switchboard.agent.sdk.Agent`: router, graph, specialists,
store) exactly as a user would send it. The turn is judged on what it *produced* — the final
reply, masks, boxes, tracks and images — against the world's ground truth, never on the calls:

- understanding (caption, question, chat, no-media): the reply, normalised, is the world's
  answer, and nothing was called; a caption names every object with its size, colour and shape
  and the background, in any order (the world lists objects in drawing order, which no picture
  shows);
- segmentation: the last mask has IoU ≥ 0.5 with the referent's true mask;
- detection: every object of the group is matched by a box (IoU ≥ 0.5, one-to-one), with no box
  left over;
- tracking: the first track's boxes have mean IoU ≥ 0.5 with the referent's true boxes over the
  frames where it is visible (a missed frame counts 0);
- editing (recolour, remove, add, move, replace) and generation: the final image passes the rules
  of :func:`switchboard.evals.specialists.judge_edit` (the detector and pixel colour judge,
  never the editor);
- video editing (recolour, remove, replace an object through a clip): the final video passes
  :func:`switchboard.evals.specialists.judge_video_frame` (the stricter judge, frame by frame)
  on at least 90 % of its frames, as ``switchboard eval edit --video`` scores a clip;
- multi-step: "remove every X" — every object of the group is gone (the detector finds none
  where it was, and its pixels match the true background); "make every X Y" — every member of the
  group passes the recolour rule; "segment then recolour" — the mask and the recoloured image
  both pass.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from switchboard.evals.metrics import box_iou, mask_iou
from switchboard.world.language import NUMBER_WORDS
from switchboard.world.requests import Request, make_request
from switchboard.world.scene import generate_scene
from switchboard.world.splits import SPLITS

# Task types of the suite and the world tasks each draws from (round-robin).
TASK_TYPES: dict[str, tuple[str, ...]] = {
    "understanding": ("caption", "question", "chat", "ask_media"),
    "segmentation": ("segment",),
    "detection": ("detect",),
    "tracking": ("track",),
    "editing": ("recolor", "remove", "add", "move", "replace"),
    "generation": ("generate",),
    "multi-step": ("remove_all", "segment_recolor", "recolor_all"),
    "video editing": ("video_recolor", "video_remove", "video_replace"),
}
IOU = 0.5
# Keep the suite's seeds apart from the other evals' first seeds (router, signals, edit use
# the split's first few hundred), so the agent is measured on scenes no other eval tuned on.
SEED_OFFSET = 5_000


@dataclass
class Verdict:
    ok: bool
    why: str  # what the judge saw (for the misses list)


# The renamed-vocabulary suite: the detector's classes called by nouns the router never saw in
# training (router/data.py's HELD_OUT_NOUNS), on the task types whose words all name detected
# objects (edits also name what the editor paints, in ShapeWorld's words).
RENAMED_TYPES = ("understanding", "segmentation", "detection")


def renamed_names() -> dict[str, str]:
    """ShapeWorld's shapes → the held-out nouns (fixed, so runs compare)."""
    from switchboard.router.data import HELD_OUT_NOUNS
    from switchboard.world.scene import SHAPES

    return dict(zip(SHAPES, HELD_OUT_NOUNS, strict=False))


def renamed(request: Request, names: dict[str, str]) -> Request:
    """``request`` as a user of the renamed detector says it (its answer renamed too)."""
    from dataclasses import replace

    from switchboard.router.data import RENAMABLE, rename_text

    if request.task not in (*RENAMABLE, "ask_media"):  # ask_media: said without an image
        return request
    answer = None if request.answer is None else rename_text(request.answer, names)
    return replace(request, text=rename_text(request.text, names), answer=answer)


def suite(
    split: str = "test", n: int = 240, types: tuple[str, ...] | None = None
) -> list[tuple[str, Request]]:
    """``n`` tasks, spread evenly over :data:`TASK_TYPES` (or ``types`` of them) and
    round-robin over each type's world tasks; deterministic by split."""
    lo, hi = SPLITS[split]
    out: list[tuple[str, Request]] = []
    types = list(types or TASK_TYPES)
    unknown = set(types) - set(TASK_TYPES)
    if unknown:
        raise ValueError(f"unknown task types {sorted(unknown)}; expected {list(TASK_TYPES)}")
    for k in range(n):
        kind = types[k % len(types)]
        tasks = TASK_TYPES[kind]
        task = tasks[(k // len(types)) % len(tasks)]
        seed = lo + SEED_OFFSET + k
        if seed >= hi:
            raise ValueError(f"split {split!r} has too few seeds for {n} tasks")
        out.append((kind, make_request(seed, split, task)))
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", " ", text.lower())).strip()


def caption_parts(text: str) -> tuple[list[str], str]:
    """A caption as (its object phrases sorted, its background): "a small red circle and two
    large blue stars on a plain background" → (["a small red circle", "two large blue
    stars"], "plain")."""
    t = re.sub(r"\s+", " ", text.lower()).strip().rstrip(".")
    body, _, background = t.rpartition(" on a ")
    if not body:
        body, background = t, ""
    parts = [_norm(p) for p in re.split(r",| and ", body) if _norm(p)]
    background = _norm(background)
    return sorted(parts), background.removesuffix(" background")


@lru_cache(maxsize=1)
def _detector() -> Any:
    """The judge's own detector (never renamed, whatever the agent's detector is called)."""
    from switchboard.specialists.detect import DetectSpecialist

    return DetectSpecialist(rename={}).load()


def _final_image(turn: Any) -> np.ndarray | None:
    return turn.images[-1] if turn.images else None


def judge(request: Request, turn: Any) -> Verdict:
    """Whether ``turn`` (an SDK :class:`~switchboard.agent.sdk.Turn`) did what ``request`` asked,
    judged on its outputs against the world's ground truth."""
    task = request.task
    if request.answer is not None:  # words: caption, question, chat, no media
        if turn.calls:
            return Verdict(False, f"called {[c.tool for c in turn.calls]} instead of answering")
        if task == "caption":
            ok = caption_parts(turn.text) == caption_parts(request.answer)
            return Verdict(ok, f"said {turn.text!r}, truth {request.answer!r}")
        ok = _norm(turn.text) == _norm(request.answer)
        return Verdict(ok, f"said {turn.text!r}, truth {request.answer!r}")
    if task == "generate":
        return _judge_generate(request, turn)
    if task == "track":
        return _judge_track(request, turn)
    if request.media == "video" and request.intents[0].task in ("recolor", "remove", "replace"):
        return _judge_video_edit(request, turn)
    from switchboard.world.scene import generate_scene

    scene = generate_scene(request.seed)
    if task == "segment":
        return _judge_mask(scene, request.intents[0].targets[0], turn)
    if task == "detect":
        return _judge_detect(scene, request.intents[0].targets, turn)
    if task == "remove_all":
        return _judge_remove_all(request, scene, turn)
    if task == "recolor_all":
        return _judge_recolor_all(request, scene, turn)
    if task == "segment_recolor":
        seg = _judge_mask(scene, request.intents[0].targets[0], turn)
        if not seg.ok:
            return seg
        edit = _judge_edit(request, scene, turn, request.intents[1])
        return Verdict(edit.ok, f"{seg.why}; {edit.why}")
    return _judge_edit(request, scene, turn, request.intents[0])


def _judge_mask(scene: Any, target: int, turn: Any) -> Verdict:
    if not turn.masks:
        return Verdict(False, "no mask")
    iou = mask_iou(turn.masks[-1], scene.masks[scene.index(target)])
    return Verdict(iou >= IOU, f"mask IoU {iou:.2f}")


def _judge_detect(scene: Any, ids: list[int], turn: Any) -> Verdict:
    truth = np.array([scene.boxes[scene.index(i)] for i in ids], float).reshape(-1, 4)
    got = np.array([b for b, _, _ in turn.boxes], float).reshape(-1, 4)
    if not turn.calls:
        return Verdict(False, "no call")
    unmatched = list(range(len(got)))
    hits = 0
    for t in truth:
        if not unmatched:
            break
        ious = box_iou(t[None], got[unmatched])[0]
        j = int(np.argmax(ious))
        if ious[j] >= IOU:
            hits += 1
            unmatched.pop(j)
    ok = hits == len(truth) and not unmatched
    return Verdict(ok, f"{hits}/{len(truth)} objects found, {len(unmatched)} extra boxes")


def _judge_track(request: Request, turn: Any) -> Verdict:
    from switchboard.world.video import generate_video

    if not turn.tracks:
        return Verdict(False, "no track")
    clip = generate_video(request.seed)
    n = [o.id for o in clip.objects].index(request.intents[0].targets[0])
    tr = turn.tracks[0]
    boxes = dict(zip(tr.frames, tr.xyxy, strict=True))
    ious = []
    for t in range(clip.num_frames):
        if not clip.present[t, n]:
            continue
        b = boxes.get(t)
        iou = 0.0 if b is None else box_iou(np.array([b]), clip.boxes[t, n][None])[0, 0]
        ious.append(float(iou))
    m = float(np.mean(ious)) if ious else 0.0
    return Verdict(m >= IOU, f"track mean IoU {m:.2f} over {len(ious)} frames")


def _judge_video_edit(request: Request, turn: Any) -> Verdict:
    """The turn's last video against the world's edited clip, frame by frame."""
    from switchboard.evals.specialists import FRAMES_TO_PASS, judge_video_frame
    from switchboard.world.video import apply_video_edit, generate_video

    if not getattr(turn, "videos", None):
        return Verdict(False, "no video")
    made = turn.videos[-1].frames
    clip = generate_video(request.seed)
    if made.shape != clip.frames.shape:
        return Verdict(False, f"video {made.shape} is not the input's {clip.frames.shape}")
    intent = request.intents[0]
    params = {k: v for k, v in intent.params.items() if k != "ref_kind"}
    pair = apply_video_edit(clip, intent.task, intent.targets[0], params)
    det = _detector()
    passed = [judge_video_frame(det, pair, made[t], t)["ok"] for t in range(clip.num_frames)]
    share = float(np.mean(passed))
    return Verdict(share >= FRAMES_TO_PASS, f"{sum(passed)}/{len(passed)} frames pass")


def _judge_edit(request: Any, scene: Any, turn: Any, intent: Any) -> Verdict:
    """``request``: anything with the ``seed`` the edit's placement is drawn from."""
    from switchboard.evals.specialists import _find, judge_edit, place_cell
    from switchboard.world.edits import apply_edit

    image = _final_image(turn)
    if image is None:
        return Verdict(False, "no image")
    if image.shape != scene.image.shape:
        return Verdict(False, f"image {image.shape} is not the input's {scene.image.shape}")
    det = _detector()
    op, params = intent.task, dict(intent.params)
    if op == "add":  # the user named a place, not a box: the object must be found in it
        cell = place_cell(params["place"], scene.size)
        ok = _find(det, image, params["shape"], params["color"], cell)
        return Verdict(
            ok,
            f"{params['color']} {params['shape']} found in the {params['place']}"
            if ok
            else f"no {params['color']} {params['shape']} in the {params['place']}",
        )
    target = intent.targets[0]
    pair = apply_edit(scene, op, target, params, np.random.default_rng(request.seed))
    ok, _ = judge_edit(det, pair, image)
    return Verdict(bool(ok), f"{op} {'made' if ok else 'not made'}")


def _judge_remove_all(request: Request, scene: Any, turn: Any) -> Verdict:
    from switchboard.evals.specialists import removed
    from switchboard.world.edits import apply_edit

    image = _final_image(turn)
    if image is None:
        return Verdict(False, "no image")
    det = _detector()
    truth = scene
    for it in request.intents:  # the true after-image: every one of them removed
        truth = apply_edit(truth, "remove", it.targets[0], {}, np.random.default_rng(0)).after
    left = []
    for it in request.intents:
        i = scene.index(it.targets[0])
        if not removed(det, image, scene.boxes[i], truth.image, scene.masks[i]):
            left.append(it.targets[0])
    n = len(request.intents)
    return Verdict(not left, f"{n - len(left)}/{n} removed")


def _judge_recolor_all(request: Request, scene: Any, turn: Any) -> Verdict:
    """Every member of the group has the new colour (each judged as its own recolour)."""
    n, ok = len(request.intents), 0
    for it in request.intents:
        one = replace(it, params={"color": it.params["color"]})
        verdict = _judge_edit(request, scene, turn, one)
        if verdict.why == "no image" or verdict.why.startswith("image ("):
            return verdict
        ok += verdict.ok
    return Verdict(ok == n, f"{ok}/{n} recoloured")


def _judge_generate(request: Request, turn: Any) -> Verdict:
    from switchboard.evals.specialists import _find

    image = _final_image(turn)
    if image is None:
        return Verdict(False, "no image")
    det = _detector()
    h, w = image.shape[:2]
    objects = request.intents[0].params["objects"]
    found = [_find(det, image, o["shape"], o["color"], (0, 0, w, h)) for o in objects]
    return Verdict(all(found), f"{sum(found)}/{len(found)} described objects found")


def _media(request: Request) -> dict[str, Any]:
    from switchboard.world.scene import generate_scene
    from switchboard.world.video import generate_video

    if request.media == "image":
        return {"image": generate_scene(request.seed).image}
    if request.media == "video":
        return {"video": generate_video(request.seed).frames}
    return {}


EARLIER_TURN = "segment the biggest shape"


def _router_agent(
    home: Path, folder: Path | None, with_signals: bool = False, history_turns: int | None = None
) -> Any:
    """An agent in ``home`` whose policy is the router in ``folder`` (default router-tiny)."""
    from switchboard.agent.policy import RouterPolicy
    from switchboard.agent.sdk import Agent
    from switchboard.router.inference import Router
    from switchboard.specialists import default_registry

    router = Router.load(folder, default_registry())
    policy = RouterPolicy(router, with_signals=with_signals)
    return Agent.load(home=home, policy=policy, **_history_kw(history_turns))


def _run_task(agent: Any, req: Any, after_turn: bool) -> tuple[Any, Verdict, float]:
    """One suite task as a turn (the second of its session with ``after_turn``) → the turn
    (None when it crashed: a failed task, reported), its verdict and its seconds."""
    t0 = time.perf_counter()
    try:
        session = None
        if after_turn:
            earlier = generate_scene(req.seed + 1).image
            session = agent.chat(EARLIER_TURN, image=earlier).session
            t0 = time.perf_counter()
        turn = agent.chat(req.text, session=session, **_media(req))
        verdict = judge(req, turn)
    except Exception as exc:  # a crash is a failed task and is reported, not hidden
        turn, verdict = None, Verdict(False, f"{type(exc).__name__}: {exc}")
    return turn, verdict, time.perf_counter() - t0


def _miss(turn: Any, verdict: Verdict, **where: Any) -> dict[str, Any]:
    """A failed task or turn as the report lists it: where it was, the reply and calls, why."""
    calls = [f"{c.tool} {c.args} → {c.observation}" for c in turn.calls] if turn else []
    return {**where, "reply": turn.text if turn else None, "calls": calls, "why": verdict.why}


def evaluate_agent(
    agent: Any = None,
    split: str = "test",
    n: int = 240,
    log: Callable[[str], None] | None = None,
    max_misses: int = 60,
    with_signals: bool = False,
    folder: Path | None = None,
    after_turn: bool = False,
    history_turns: int | None = None,
    rename: bool = False,
    types: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Task success of ``agent`` (default: ``Agent.load()`` with a temporary home, the router
    in ``folder`` or router-tiny, its signals used or not, reading ``history_turns`` earlier
    turns) over :func:`suite`; per task type and per world task, with turn latency and the
    misses. ``after_turn``: each task is the second turn of its session, after
    :data:`EARLIER_TURN` on another scene (what a conversation in the page looks like).
    ``rename``: the renamed-vocabulary suite — the suite's tasks of :data:`RENAMED_TYPES`,
    said with the held-out nouns while the agent's detector calls ShapeWorld's shapes by
    :func:`renamed_names` (so the two runs compare task for task). ``types``: only these task
    types (``n`` spread over them)."""
    with tempfile.TemporaryDirectory() if agent is None else nullcontext() as home:
        if agent is None:
            agent = _router_agent(Path(home), folder, with_signals, history_turns)
        tasks = suite(split, n, types)
        detector = agent.registry.get("detect") if rename else None
        if rename:  # the same requests of those types, said with the held-out nouns
            names = renamed_names()
            detector.rename = names
            tasks = [(kind, renamed(req, names)) for kind, req in tasks if kind in RENAMED_TYPES]
        by_type: dict[str, list[bool]] = {k: [] for k in TASK_TYPES}
        by_task: dict[str, list[bool]] = {}
        seconds, misses, errors = [], [], 0
        t_all = time.time()
        for k, (kind, req) in enumerate(tasks):
            turn, verdict, took = _run_task(agent, req, after_turn)
            errors += turn is None
            seconds.append(took)
            by_type[kind].append(verdict.ok)
            by_task.setdefault(req.task, []).append(verdict.ok)
            if not verdict.ok and len(misses) < max_misses:
                misses.append(
                    _miss(turn, verdict, type=kind, task=req.task, seed=req.seed, said=req.text)
                )
            if log and (k + 1) % 10 == 0:
                done = [v for vs in by_type.values() for v in vs]
                log(
                    f"{k + 1}/{len(tasks)} tasks, success {np.mean(done):.3f}, "
                    f"{time.time() - t_all:.0f} s"
                )
        if detector is not None:
            detector.rename = None
    every = [v for vs in by_type.values() for v in vs]
    return {
        "split": split,
        "signals": with_signals,
        "after_turn": after_turn,
        "renamed": rename,
        "history_turns": getattr(agent, "history_turns", None),
        "tasks": len(every),
        "success": float(np.mean(every)),
        "by_type": {
            k: {"n": len(v), "success": float(np.mean(v))} for k, v in by_type.items() if v
        },
        "by_task": {
            k: {"n": len(v), "success": float(np.mean(v))} for k, v in sorted(by_task.items())
        },
        "errors": errors,
        "turn_s_p50": float(np.median(seconds)),
        "turn_s_p95": float(np.percentile(seconds, 95)),
        "seconds": round(time.time() - t_all, 1),
        "misses": misses,
    }


def agent_table(res: dict[str, Any]) -> str:
    """The result as a Markdown table (task type, tasks, success)."""
    lines = [
        "| task type | tasks | success |",
        "|---|---|---|",
        *(f"| {k} | {v['n']} | {v['success']:.3f} |" for k, v in res["by_type"].items()),
        f"| **all** | {res['tasks']} | **{res['success']:.3f}** |",
    ]
    return "\n".join(lines)


# -- conversations --------------------------------------------------------------------------
CONVERSATIONS = 126  # 14 of each script: 42 chat/thanks/greeting turns with a picture at hand
_ANSWER_WORDS = {*NUMBER_WORDS, "yes", "no"}


def _answer_ok(text: str, answer: str) -> bool:
    """The reply says ``answer`` and no other word of its kind (a colour, a count)."""
    from switchboard.core.vocabulary import COLOR_NAMES

    words = set(_norm(text).split())
    rivals = (set(COLOR_NAMES) if answer in COLOR_NAMES else _ANSWER_WORDS) - {answer}
    return answer in words and not words & rivals


def _history_kw(history_turns: int | None) -> dict[str, int]:
    """``Agent`` keywords: the earlier turns the router reads (None: the agent's default)."""
    return {} if history_turns is None else {"history_turns": history_turns}


def judge_conversation_turn(spec: Any, turn: Any, before: list[Any], now: Any) -> Verdict:
    """Whether ``turn`` (an SDK Turn) did what the scripted turn ``spec`` (a
    :class:`~switchboard.world.conversations.ConvTurn`) asks. ``before``: the session's current
    version before each earlier turn and this one (``Agent.current`` dicts or None); ``now``:
    the current version after it (undo and redo are judged on it)."""
    from switchboard.world.requests import Intent

    edits = [c for c in turn.calls if c.tool == "edit"]
    if spec.expect == "mask":
        return _judge_mask(spec.scene, spec.targets[0], turn)
    if spec.expect == "boxes":
        return _judge_detect(spec.scene, spec.targets, turn)
    if spec.expect == "edit":
        intent = Intent(spec.task, list(spec.targets), None, dict(spec.params))
        return _judge_edit(spec, spec.scene, turn, intent)
    if spec.expect == "answer":
        if turn.calls:
            return Verdict(False, f"called {[c.tool for c in turn.calls]} instead of answering")
        return Verdict(
            _answer_ok(turn.text, spec.answer), f"said {turn.text!r}, truth {spec.answer!r}"
        )
    if spec.expect == "no_edit":
        ok = not edits and not turn.images
        return Verdict(ok, "no edit" if ok else f"edited: {[c.args for c in edits]}")
    cur = before[-1]
    if spec.expect == "undo":  # back to the version before the last change
        if cur is None or cur.get("parent_id") is None:
            return Verdict(False, "nothing was changed to undo")
        ok = now is not None and now["id"] == cur["parent_id"]
        return Verdict(
            ok,
            "undone" if ok else f"current is version {now and now['id']}, not {cur['parent_id']}",
        )
    if spec.expect == "redo":  # forward to what the undo before it left
        want = before[-2] if len(before) >= 2 else None
        if want is None or cur is None or want["id"] == cur["id"]:
            return Verdict(False, "nothing was undone to redo")
        ok = now is not None and now["id"] == want["id"]
        return Verdict(
            ok, "redone" if ok else f"current is version {now and now['id']}, not {want['id']}"
        )
    raise ValueError(f"unknown expectation {spec.expect!r}")


def _run_conversation_turn(
    agent: Any, spec: Any, session: str | None, media: dict[str, Any], before: list[Any]
) -> tuple[Any, Verdict, list[dict[str, Any]], float, str | None]:
    """One scripted turn → the turn (None when it crashed: a failed turn, reported), its
    verdict, the edits the router wrote that nobody asked for (refused by the agent), its
    seconds and the session the next turn continues."""
    t0 = time.perf_counter()
    stopped: list[dict[str, Any]] = []
    try:
        turn = agent.chat(
            spec.text,
            session=session,
            **media,
            on_event=lambda e: stopped.append(e) if e["type"] == "refused" else None,
        )
        session = turn.session
        verdict = judge_conversation_turn(spec, turn, before, agent.current(session))
    except Exception as exc:  # a crash is a failed turn, reported
        turn, verdict = None, Verdict(False, f"{type(exc).__name__}: {exc}")
    return turn, verdict, stopped, time.perf_counter() - t0, session


def evaluate_conversations(
    agent: Any = None,
    split: str = "test",
    n: int = CONVERSATIONS,
    log: Callable[[str], None] | None = None,
    max_misses: int = 60,
    folder: Path | None = None,
    history_turns: int | None = None,
) -> dict[str, Any]:
    """Scripted conversations (:func:`~switchboard.world.conversations.conversations`): each
    is one session; the first turn sends its picture, later ones send none (the session's
    current image is what they work on) unless the topic changes with a new picture. Every
    turn is judged on its outputs; success per turn position, per script and per kind of
    turn, and how many chat, greeting and thanks turns edited anything."""
    from switchboard.world.conversations import conversations

    tally = _Tally(max_misses)
    with tempfile.TemporaryDirectory() if agent is None else nullcontext() as home:
        if agent is None:
            agent = _router_agent(Path(home), folder, history_turns=history_turns)
        convs = conversations(split, n)
        for k, conv in enumerate(convs):
            session, before, all_ok = None, [], True
            for pos, spec in enumerate(conv.turns, 1):
                media = {"image": generate_scene(spec.seed).image} if spec.media == "image" else {}
                before.append(agent.current(session) if session else None)
                turn, verdict, stopped, took, session = _run_conversation_turn(
                    agent, spec, session, media, before
                )
                tally.add(conv, pos, spec, turn, verdict, stopped, took)
                all_ok &= verdict.ok
            tally.whole.append(all_ok)
            if log and (k + 1) % 9 == 0:
                done = [v for vs in tally.by_pos.values() for v in vs]
                log(
                    f"{k + 1}/{len(convs)} conversations, turn success {np.mean(done):.3f}, "
                    f"{time.time() - tally.t0:.0f} s"
                )
    return tally.summary(split, getattr(agent, "history_turns", None))


@dataclass
class _Tally:
    """The conversations' turns as they are judged, and the result they add up to."""

    max_misses: int
    by_pos: dict[int, list[bool]] = field(default_factory=dict)
    by_kind: dict[str, list[bool]] = field(default_factory=dict)
    by_script: dict[str, list[bool]] = field(default_factory=dict)
    whole: list[bool] = field(default_factory=list)
    misses: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: int = 0
    unasked: int = 0  # chat, greeting and thanks turns that edited anything
    refused: int = 0  # turns where the agent refused an edit the router wrote unasked
    quiet_refused: int = 0  # ... of them chat, greeting and thanks turns
    t0: float = field(default_factory=time.time)

    def add(
        self,
        conv: Any,
        pos: int,
        spec: Any,
        turn: Any,
        verdict: Verdict,
        stopped: list[dict[str, Any]],
        took: float,
    ) -> None:
        self.errors += turn is None
        self.seconds.append(took)
        edited = turn is not None and (turn.images or any(c.tool == "edit" for c in turn.calls))
        if spec.expect == "no_edit" and edited:
            self.unasked += 1
        if stopped:
            self.refused += 1
            self.quiet_refused += spec.expect == "no_edit"
        self.by_pos.setdefault(pos, []).append(verdict.ok)
        self.by_kind.setdefault(spec.kind, []).append(verdict.ok)
        self.by_script.setdefault(conv.script, []).append(verdict.ok)
        if not verdict.ok and len(self.misses) < self.max_misses:
            where = {"script": conv.script, "seed": conv.seed, "position": pos}
            self.misses.append(_miss(turn, verdict, **where, said=spec.text))

    def summary(self, split: str, history_turns: int | None) -> dict[str, Any]:
        every = [v for vs in self.by_pos.values() for v in vs]

        def table(d: dict[Any, list[bool]]) -> dict[str, dict[str, float]]:
            return {
                str(k): {"n": len(v), "success": float(np.mean(v))} for k, v in sorted(d.items())
            }

        quiet = sum(len(v) for k, v in self.by_kind.items() if k in ("thanks", "greeting"))
        return {
            "split": split,
            "conversations": len(self.whole),
            "turns": len(every),
            "history_turns": history_turns,
            "turn_success": float(np.mean(every)),
            "conversation_success": float(np.mean(self.whole)),
            "by_position": table(self.by_pos),
            "by_script": table(self.by_script),
            "by_kind": table(self.by_kind),
            "chat_turns_with_picture": quiet,
            "chat_turns_that_edited": self.unasked,
            # turns where the router wrote an edit with a colour, shape or place nobody said,
            # which the agent did not run (agent/asked.py): all turns, and chat/greeting/thanks
            "turns_with_refused_edits": self.refused,
            "chat_turns_with_refused_edits": self.quiet_refused,
            "errors": self.errors,
            "turn_s_p50": float(np.median(self.seconds)),
            "seconds": round(time.time() - self.t0, 1),
            "misses": self.misses,
        }


def conversation_table(res: dict[str, Any]) -> str:
    """Markdown: success per turn position and per kind of turn."""
    lines = ["| turn | turns | success |", "|---|---|---|"]
    lines += [f"| {p} | {v['n']} | {v['success']:.3f} |" for p, v in res["by_position"].items()]
    lines += [
        f"| **all** | {res['turns']} | **{res['turn_success']:.3f}** |",
        "",
        "| kind of turn | turns | success |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {v['n']} | {v['success']:.3f} |" for k, v in res["by_kind"].items()]
    return "\n".join(lines)
