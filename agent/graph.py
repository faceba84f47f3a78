"""The agent's loop as a LangGraph ``StateGraph``:

    perceive → route → dispatch (one ``Send`` per call: independent calls run in parallel)
             → observe → route … → respond

- **perceive** builds the router's conversation (system prompt, earlier turns' words, the
  user's text with ``{media}`` and one ``<region>`` per region) and the media it sees (the
  image, or frames sampled from the video);
- **route** asks the policy (the trained router, or any object with its ``step``) for the next
  reply: words end the turn, calls go to dispatch;
- **call** (one per call, in parallel) runs the specialist on the *current* media — the
  latest edited image, so "recolour the circle, then remove the star" chains — with a
  timeout; a failure or a timeout becomes a result with an error, never an exception;
- **observe** turns the results into the short observations the router was trained on
  (``[segment → 1 mask, area 812 px, box (40,52,88,97)]``, router/data.py's
  ``observe_result``), appends
  them to the conversation and goes back to route — until the router answers in words or the
  step limit is reached;
- **respond** writes the final text (the router's words, plus what failed).

Nodes get what they need through ``config["configurable"]`` (``runtime``: an
:class:`AgentRuntime` holding the policy, the registry and the limits), so the state holds
only serializable values (plain data, arrays, our pydantic results) and LangGraph's SQLite
checkpointer persists it after every step: a turn cut off by a killed process resumes from its
last finished step (``Agent``, :func:`restore_media`). Images in the state are keys of the
runtime's media cache.
"""

from __future__ import annotations

import json
import operator
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NotRequired, Protocol, TypedDict

import numpy as np
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Send
from switchboard.core import HybridCall, Registry
from switchboard.core.errors import InvalidInputError, NotFoundError, SwitchboardError
from switchboard.core.media import Image, Video
from switchboard.core.results import ImageOut, Text, VideoOut
from switchboard.router.prompt import (
    DONE,
    OBJECT_REF,
    SYSTEM,
    box_text,
    observe_result,
    sampled_frames,
    user_message,
)
from switchboard.specialists.objects import SceneObject, detect_objects, not_found
from switchboard.specialists.queries import contradicts, resolve_referent, unknown_noun

from .asked import question, said_words, unasked
from .plans import GroupRun, run_every
from .regions import bind_region
from .reply import describe_turn
from .tools import HISTORY, HistoryArgs, VersionCursor


@dataclass
class Step:
    """What the policy answers: words (``text``) and/or calls."""

    text: str = ""
    calls: list[HybridCall] = field(default_factory=list)


class Policy(Protocol):
    def step(
        self,
        messages: list[dict[str, str]],
        images: list[np.ndarray],
        frame_index: list[int | None],
        regions: list[dict[str, Any]],
        objects: list[SceneObject] | None = None,
    ) -> Step: ...


@dataclass
class AgentRuntime:
    """What the nodes use and the state does not carry: the policy, the registry, the media of
    the turn (by artifact hash) and the limits."""

    policy: Policy
    registry: Registry
    max_steps: int = 6
    timeout_s: float = 60.0
    media: dict[str, Any] = field(default_factory=dict)  # hash → np.ndarray image | Video
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4))
    on_event: Any = None  # called with each event dict (route, call started/finished, text)
    # Unload the least recently used specialists while the process's resident memory is over
    # this many MiB (None: keep whatever was loaded). Checked between steps, never while a
    # call runs.
    memory_budget_mb: float | None = None
    last_used: dict[str, float] = field(default_factory=dict)
    # One pass: the calls of the first route are the turn's only calls and the reply is
    # written from their observations, with no second route (the Vitron pattern: words,
    # calls and signals in one decode). False: route again after every step (LLM → tools →
    # LLM, what the router was trained on; multi-step requests need it).
    single_pass: bool = False
    # (stage, seconds) of every node run: perceive, route, call:<tool>, observe, respond
    timings: list[tuple[str, float]] = field(default_factory=list)
    # The session's versions of its media, for the history tool (undo/redo); None without a
    # session (a graph run on its own): then undo is refused in words.
    versions: VersionCursor | None = None
    # Set when whoever waits for the turn has gone (a stream's client disconnected, with
    # ``SWITCHBOARD_ON_DISCONNECT=cancel``): the turn stops before its next route.
    cancel: threading.Event | None = None

    def emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def enforce_budget(self, keep: str | None = None) -> list[str]:
        """Unload least recently used specialists (never ``keep``) until the resident memory
        is under the budget. Returns the names unloaded."""
        if self.memory_budget_mb is None:
            return []
        import gc

        import psutil

        proc, dropped = psutil.Process(), []
        loaded = sorted(
            (n for n in self.registry.loaded() if n != keep),
            key=lambda n: self.last_used.get(n, 0.0),
        )
        while loaded and proc.memory_info().rss / 2**20 > self.memory_budget_mb:
            name = loaded.pop(0)
            spec = self.registry.get(name)
            lock = getattr(spec, "lock", None)
            if lock is not None and not lock.acquire(blocking=False):
                continue  # another turn's call is using it (or a peer's): not now
            try:
                spec.unload()
            finally:
                if lock is not None:
                    lock.release()
            gc.collect()
            dropped.append(name)
        if dropped:
            self.emit({"type": "unloaded", "tools": dropped})
        return dropped


class CallResult(TypedDict):
    step: int
    index: int
    tool: str
    args: dict[str, Any]
    status: str  # ok | not_found | error | timeout
    seconds: float
    observation: str
    error: str | None
    result: Any  # the specialist's result (a pydantic Result: checkpointed with the state)
    with_signal: bool
    restored: NotRequired[str]  # history: the media key of the version made current
    # A call on a group (``every``, agent/plans.py): the listed members edited (#k), the edits
    # run in all, the members still there at the end, and the rounds it took.
    members: NotRequired[list[int]]
    edits: NotRequired[int]
    left: NotRequired[int]
    rounds: NotRequired[int]


class TurnState(TypedDict, total=False):
    text: str
    media: str | None  # artifact hash of the image or video
    media_kind: str | None  # "image" | "video" | None
    regions: list[dict[str, Any]]  # {"box": [x1,y1,x2,y2]} | {"point": [x, y]}
    history: list[dict[str, str]]  # earlier turns: user and assistant words
    # The detector's object list of the image (a video's first frame), SceneObject.to_json()
    # each; None without media or without a registered detector.
    objects: list[dict[str, Any]] | None
    classes: list[str] | None  # the detector's class words (what a target's words may name)
    messages: list[dict[str, str]]
    current: str | None  # hash of the image the next call works on (after edits: the edit)
    step: int
    pending: list[dict[str, Any]]  # this step's calls: {"tool", "args", "signal"}
    failed_calls: list[str]  # this turn's calls (as the router wrote them) that did not succeed
    results: Annotated[list[CallResult], operator.add]
    reply: str
    final: str
    pointed: list[dict[str, Any]]  # listed objects the reply points at ("#3"): their boxes


def _runtime(config: RunnableConfig) -> AgentRuntime:
    return config["configurable"]["runtime"]


def perceive(state: TurnState, config: RunnableConfig) -> dict[str, Any]:
    """The router's conversation, with the image's object list: the registered detector run
    once on the image (on a video, its first frame) — what answers, grounding and calls by
    object index read."""
    rt = _runtime(config)
    objects = _object_list(rt, state.get("media"))
    regions = len(state.get("regions") or [])
    user = user_message(state["text"], bool(state.get("media")), objects, regions)
    messages = [{"role": "system", "content": SYSTEM}, *state.get("history", []),
                {"role": "user", "content": user}]  # fmt: skip
    listed = None if objects is None else [o.to_json() for o in objects]
    classes = rt.registry.get("detect").class_names if objects is not None else None
    return {
        "messages": messages,
        "current": state.get("media"),
        "step": 0,
        "pending": [],
        "objects": listed,
        "classes": classes,
    }


def _object_list(rt: AgentRuntime, key: str | None) -> list[SceneObject] | None:
    if key is None or "detect" not in rt.registry.names():
        return None
    media = rt.media[key]
    image = media.frames[0] if isinstance(media, Video) else media
    detector = rt.registry.get("detect")
    if not hasattr(detector, "detect_all"):  # a plugin detector without raw detections
        return None
    if not detector.loaded:
        detector.load()
    rt.last_used["detect"] = time.monotonic()
    return detect_objects(detector, np.asarray(image))


def _side(rt: AgentRuntime, state: dict[str, Any]) -> float:
    media = rt.media.get(state.get("media") or "")
    if media is None:
        return 0.0
    shape = media.frames.shape[1:3] if isinstance(media, Video) else np.asarray(media).shape[:2]
    return float(max(shape))


def _objects(state: dict[str, Any]) -> list[SceneObject] | None:
    listed = state.get("objects")
    return None if listed is None else [SceneObject.from_json(o) for o in listed]


PROMPTS = ("mask", "region", "points")  # prompts of their own a call may carry besides a box


def signal_fits(written: dict[str, Any], resolved: dict[str, Any]) -> bool:
    """Whether a hybrid call's signal still goes with its arguments after the agent resolved
    them: the router made it for the call it wrote — a residual on the box of the object it
    named, or the whole prompt when it named none — so the object must be the same and no
    drawn region may have joined (the box the agent adds for the named object is expected)."""
    if written.get("object") != resolved.get("object"):
        return False
    if (
        resolved.get("box") is not None
        and written.get("box") is None
        and written.get("object") is None
    ):
        return False
    return all((written.get(k) is None) == (resolved.get(k) is None) for k in PROMPTS)


def resolve_object(
    args: dict[str, Any],
    objects: list[SceneObject] | None,
    classes: list[str] | None = None,
    side: float = 0.0,
) -> dict[str, Any]:
    """A call's ``object`` index → that listed detection's ``box`` (what the specialist
    takes), unless the call already carries a prompt of its own (a drawn region, a box). The
    call's own words are checked against the list first: a ``target`` naming a
    class the detector does not have is not found (never a guess at the nearest object), and one
    that the list resolves to a single other object than the index wins over the index (the
    router's two readings disagree; the words are what the user said); words that rule out the
    indexed object's class or colour drop the index (the specialist resolves the words, and
    says not found when nothing fits); words that fit several objects ("the person" beside
    two) leave the index as it is. Raises
    :class:`InvalidInputError` for an index the list does not have."""
    k, target = args.get("object"), args.get("target")
    if any(args.get(p) is not None for p in ("box", "mask", "region", "points")):
        # The user's own region (or a given box) is the prompt: an index beside it is moot.
        return {key: v for key, v in args.items() if key != "object"}
    if k is not None and not (objects and 1 <= int(k) <= len(objects)):
        n = len(objects or [])
        raise InvalidInputError(f"there is no object #{k} (the image has {n} listed objects)")
    if isinstance(target, str) and target.strip() and objects is not None and classes:
        if unknown_noun(target, classes):
            raise not_found(target, objects)
        hit = resolve_referent(target, objects, classes, side, unique=True)
        if hit is not None:
            k = hit.index
        elif k is not None and contradicts(target, objects[int(k) - 1], classes):
            # The index points at an object the words rule out (a "triangle" at a heart): the
            # specialist resolves the words itself, and reports not found rather than a guess.
            return {key: v for key, v in args.items() if key != "object"}
    if k is None:
        return args
    return {**args, "object": int(k), "box": [float(v) for v in objects[int(k) - 1].xyxy]}


def _router_media(rt: AgentRuntime, state: TurnState) -> tuple[list[np.ndarray], list[int | None]]:
    if not state.get("media"):
        return [], []
    media = rt.media[state["media"]]
    if isinstance(media, Video):
        return sampled_frames(media.frames)
    return [media], [None]


class TurnCancelled(SwitchboardError):
    """The turn was cancelled (its client went away); calls already made stay made."""


CANCELLED = "Cancelled: the client went away before the turn finished."


def route(state: TurnState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    if rt.cancel is not None and rt.cancel.is_set():
        raise TurnCancelled(CANCELLED)
    images, frames = _router_media(rt, state)
    t0 = time.perf_counter()
    try:
        step = rt.policy.step(
            state["messages"], images, frames, state.get("regions") or [], objects=_objects(state)
        )
    except SwitchboardError as exc:  # e.g. a region off the image: say so, end the turn
        step = Step(text=f"I could not work on that: {exc}")
    rt.emit(
        {
            "type": "route",
            "step": state["step"],
            "text": step.text,
            "calls": [{"tool": c.tool, "args": c.args} for c in step.calls],
            "seconds": round(time.perf_counter() - t0, 4),
        }
    )
    # Signals as float32 arrays: the state is checkpointed (msgpack holds arrays, not tensors).
    pending = [{"tool": c.tool, "args": c.args, "signal": _array(c.signal)} for c in step.calls]
    # A call that already failed this turn, written again word for word, would fail again: it
    # is not run twice (the router, shown its failure, may still repeat it until the step
    # limit). With nothing new left to run the turn ends, and the reply says what failed.
    tried = set(state.get("failed_calls") or [])
    fresh = [p for p in pending if _signature(p) not in tried]
    if pending and not fresh:
        return {"pending": [], "reply": ""}
    # No unasked edits (agent/asked.py): a colour, shape or place the user never said is not
    # painted; with nothing asked left to run, the agent asks instead.
    said = said_words(state["text"], state.get("history"))
    missing = {i: unasked(p["tool"], p["args"], said) for i, p in enumerate(fresh)}
    refused = [i for i, m in missing.items() if m]
    if refused:
        rt.emit(
            {
                "type": "refused",
                "step": state["step"],
                "calls": [
                    {"tool": fresh[i]["tool"], "args": fresh[i]["args"], "unsaid": missing[i]}
                    for i in refused
                ],
            }
        )
        if len(refused) == len(fresh):
            return {
                "pending": [],
                "reply": question(sorted({w for i in refused for w in missing[i]})),
            }
        fresh = [p for i, p in enumerate(fresh) if i not in refused]
    return {"pending": fresh, "reply": step.text}


def _signature(call: dict[str, Any]) -> str:
    return json.dumps([call["tool"], call["args"]], sort_keys=True, default=str)


def _array(signal: Any) -> np.ndarray | None:
    if signal is None:
        return None
    if hasattr(signal, "detach"):
        signal = signal.detach().float().cpu().numpy()
    return np.asarray(signal, np.float32)


def dispatch(state: TurnState) -> list[Send] | str:
    """One ``Send`` per call of this step (LangGraph runs them in parallel), or respond."""
    if not state.get("pending"):
        return "respond"
    return [Send("call", {**state, "call_index": i}) for i in range(len(state["pending"]))]


def _media_for(rt: AgentRuntime, state: dict[str, Any], tool: str) -> Any:
    kinds = rt.registry.cls(tool).media
    key = state.get("current")
    if key is None or not ({"image", "video"} & set(kinds)):  # a tool that takes no media
        return None
    media = rt.media[key]
    if isinstance(media, Video):
        return media
    return Image(pixels=media)


def call(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    i = state["call_index"]
    spec = state["pending"][i]
    tool, args, signal = spec["tool"], spec["args"], spec.get("signal")
    regions = state.get("regions") or []
    if regions and tool in rt.registry.names():  # "segment this": the drawn region's pixels
        schema = rt.registry.cls(tool).spec().args_schema
        args = bind_region(schema, args, regions[0], state.get("text"))
    rt.emit({"type": "call_started", "step": state["step"], "index": i, "tool": tool, "args": args})
    t0 = time.perf_counter()
    status, error, result = "ok", None, None
    restored, extra = None, {}
    try:
        if tool == HISTORY:  # the session's versions, not pixels: the agent's own tool
            result, restored = _history(rt, args)
        elif args.get("every") and isinstance(rt.media.get(state.get("current") or ""), np.ndarray):
            # One call per member, checked; a signal is made for one object: members go by
            # their words and boxes.
            group = _run_every(rt, state, tool, args, None)
            result, extra = group.result, {"members": group.members, "edits": group.edits,
                                           "left": group.left, "rounds": group.rounds}  # fmt: skip
        else:
            args = resolve_object(args, _objects(state), state.get("classes"), _side(rt, state))
            if signal is not None and not signal_fits(spec["args"], args):
                # The signal was made for the call as the router wrote it; a drawn region or
                # the call's own words chose another prompt: the text call goes alone.
                signal = None
            specialist = rt.registry.get(tool)
            media = _media_for(rt, state, tool)
            future = rt.executor.submit(specialist, media, args, signal)
            result = future.result(timeout=rt.timeout_s)
    except FutureTimeout:
        status, error = "timeout", f"{tool} took longer than {rt.timeout_s:g} s"
    except NotFoundError as exc:  # the target is not in the image: said, never guessed
        status, error = "not_found", str(exc)
    except SwitchboardError as exc:
        status, error = "error", str(exc)
    except Exception as exc:  # an unexpected failure is reported, the turn goes on
        status, error = "error", f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    rt.last_used[tool] = time.monotonic()
    if status == "ok":
        obs = observe_result(tool, result, _objects(state))
    else:
        obs = f"[{tool} → {status}: {error}]"
    rt.emit(
        {
            "type": "call_finished",
            "step": state["step"],
            "index": i,
            "tool": tool,
            "status": status,
            "seconds": round(seconds, 4),
            "observation": obs,
            "error": error,
        }
    )
    res: CallResult = {"step": state["step"], "index": i, "tool": tool, "args": args,
                       "status": status, "seconds": seconds, "observation": obs,
                       "error": error, "result": result,
                       "with_signal": signal is not None}  # fmt: skip
    if restored is not None:
        res["restored"] = restored
    res.update(extra)  # type: ignore[typeddict-item]
    return {"results": [res]}


def _run_every(
    rt: AgentRuntime, state: dict[str, Any], tool: str, args: dict[str, Any], signal: Any
) -> GroupRun:
    """A call on a group (``every``): one call per listed member on the image the last one
    made, the detector run again after each round (:mod:`.plans`)."""
    objects, classes = _objects(state), state.get("classes")
    if objects is None or not classes or not isinstance(args.get("target"), str):
        raise InvalidInputError("an edit of every object needs the words that name them")
    specialist = rt.registry.get(tool)
    detector = rt.registry.get("detect")

    def one(image: np.ndarray, member: dict[str, Any]) -> ImageOut:
        future = rt.executor.submit(specialist, Image(pixels=image), member, signal)
        return future.result(timeout=rt.timeout_s)

    def relist(image: np.ndarray) -> list[SceneObject]:
        return detect_objects(detector, image)

    return run_every(one, rt.media[state["current"]], args, objects, classes, relist)


def _history(rt: AgentRuntime, args: dict[str, Any]) -> tuple[Text, str]:
    """Undo or redo on the turn's version cursor: the version made current becomes the media
    the next calls work on."""
    op = HistoryArgs.model_validate(args).op
    if rt.versions is None:
        raise InvalidInputError(f"there is nothing to {op} outside a conversation")
    version, media = rt.versions.move(op)
    key = f"version:{version['id']}"
    rt.media[key] = media
    return Text(text=f"{op}: version {version['id']} is current"), key


def observe(state: TurnState, config: RunnableConfig) -> dict[str, Any]:
    rt = _runtime(config)
    from switchboard.router.codec import format_reply

    step = state["step"]
    mine = sorted(
        (r for r in state.get("results", []) if r["step"] == step), key=lambda r: r["index"]
    )
    calls = [HybridCall(tool=p["tool"], args=p["args"]) for p in state["pending"]]
    written = format_reply(state.get("reply", ""), calls, rt.registry, with_signals=False)
    messages = [*state["messages"], {"role": "assistant", "content": written},
                {"role": "user", "content": " ".join(r["observation"] for r in mine)}]  # fmt: skip
    rt.enforce_budget(keep=mine[-1]["tool"] if mine else None)
    current = state.get("current")
    for r in mine:  # an edit's image (or an undo's version) is what the next call works on
        made = made_media(r)
        if made is not None:
            key = f"derived:{step}:{r['index']}"
            rt.media[key] = made
            current = key
            if rt.versions is not None:
                rt.versions.made(made)
        elif r["status"] == "ok" and r.get("restored"):
            current = r["restored"]
    status = {r["index"]: r["status"] for r in mine}
    failed = [_signature(p) for i, p in enumerate(state["pending"]) if status.get(i) != "ok"]
    return {
        "messages": messages,
        "current": current,
        "step": step + 1,
        "pending": [],
        "failed_calls": [*(state.get("failed_calls") or []), *failed],
    }


def after_observe(state: TurnState, config: RunnableConfig) -> str:
    rt = _runtime(config)
    return "route" if state["step"] < rt.max_steps and not rt.single_pass else "respond"


def respond(state: TurnState, config: RunnableConfig) -> dict[str, Any]:
    """The reply: after calls, a sentence per call saying what it did or why it failed
    (:mod:`.reply`) where the router wrote its trained "Done."; the router's own words
    otherwise (``#k`` pointers written out with the object's words and box), followed by
    what failed; past the step limit, that it stopped."""
    rt = _runtime(config)
    stopped = state.get("step", 0) >= rt.max_steps  # route is not asked past the limit
    text = "" if stopped else state.get("reply", "").strip()
    text, pointed = _point(text, _objects(state))
    results = state.get("results", [])
    failed = [r for r in results if r["status"] != "ok"]
    parts = [] if not text or (text == DONE and results) else [text]
    if stopped:
        parts.append(f"I stopped after {rt.max_steps} steps without finishing.")
    if results and (text == DONE or not text or rt.single_pass):
        parts.append(describe_turn(results, _objects(state)))  # what each call did, in words
    else:  # the router's own words (an answer, a caption) and then what failed
        parts += [describe_turn(failed, _objects(state))] if failed else []
    final = "\n".join(parts) if parts else "Done."
    rt.emit({"type": "text", "text": final})
    return {"final": final, "pointed": pointed}


def _point(text: str, objects: list[SceneObject] | None) -> tuple[str, list[dict[str, Any]]]:
    """``#k`` in the router's words → "the small red circle at (x1,y1,x2,y2)", and the objects
    pointed at (their boxes go to the turn's results)."""
    if not objects:
        return text, []
    pointed: list[dict[str, Any]] = []

    def write(m: Any) -> str:
        k = int(m.group(1))
        if not 1 <= k <= len(objects):
            return m.group(0)
        o = objects[k - 1]
        pointed.append({"xyxy": list(o.xyxy), "label": o.words(), "score": o.score})
        return f"the {o.words()} at {box_text(o.xyxy)}"

    out = OBJECT_REF.sub(write, text)
    if pointed and out[:4] == "the ":
        out = "The" + out[3:]
    return out, pointed


def made_media(r: CallResult) -> Any:
    """What a call made that the next call works on: an edited image (an RGB array) or an
    edited :class:`Video`; None for anything else."""
    if r["status"] != "ok":
        return None
    if isinstance(r["result"], ImageOut):
        return r["result"].image
    if isinstance(r["result"], VideoOut):
        return Video(frames=r["result"].frames, fps=r["result"].fps)
    return None


def restore_media(rt: AgentRuntime, values: dict[str, Any]) -> None:
    """Put the edited images of a checkpointed state back in the runtime's media cache (the
    input itself comes from the store): what a resumed turn needs to go on."""
    for r in values.get("results", []):
        made = made_media(r)
        if made is not None:
            rt.media[f"derived:{r['step']}:{r['index']}"] = made


def checkpoint_serde() -> Any:
    """LangGraph's serializer, allowed to rebuild our result types from a checkpoint."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from switchboard.core import results

    names = ("Masks", "Boxes", "Track", "Tracks", "ImageOut", "VideoOut", "Text")
    return JsonPlusSerializer(allowed_msgpack_modules=[(results.__name__, n) for n in names])


def sqlite_checkpointer(path: str | Any) -> Any:
    """LangGraph's SQLite saver on ``path`` (WAL; shared by the graph's worker threads)."""
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    saver = SqliteSaver(conn, serde=checkpoint_serde())
    saver.setup()
    return saver


def postgres_checkpointer(url: str) -> Any:
    """LangGraph's PostgreSQL saver on the database at ``url`` (a SQLAlchemy URL such as the
    store's ``postgresql+psycopg://…``, or a libpq one): a small pool of connections shared by
    the graph's worker threads; every replica pointed at the same database sees every turn's
    checkpoints, so any of them can resume a turn another one started."""
    from langgraph.checkpoint.postgres import PostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import ConnectionPool
    from sqlalchemy.engine import make_url

    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=True,
    )
    saver = PostgresSaver(pool, serde=checkpoint_serde())
    saver.setup()
    return saver


def close_checkpointer(saver: Any) -> None:
    """Close the connections :func:`postgres_checkpointer` opened (its pool); the SQLite
    saver's single connection stays open (the store and its readers may still use the file)."""
    from psycopg_pool import ConnectionPool

    if isinstance(getattr(saver, "conn", None), ConnectionPool):
        saver.conn.close()


def checkpointer_for(database: str, home: Path) -> Any:
    """The checkpointer beside a store: on the same PostgreSQL database when the store's URL
    is one (shared by every replica), else LangGraph's SQLite saver in
    ``<home>/checkpoints.db``."""
    if database.startswith(("postgresql", "postgres:")):
        return postgres_checkpointer(database)
    return sqlite_checkpointer(home / "checkpoints.db")


def _timed(name: str, node: Any) -> Any:
    """``node`` recording its wall time in the runtime's ``timings`` (``call:<tool>`` for a
    call): what ``Turn.timings`` and ``switchboard bench``'s per-stage latency report."""

    def run(state: Any, config: RunnableConfig) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            return node(state, config)
        finally:
            stage = name
            if name == "call":
                stage = f"call:{state['pending'][state['call_index']]['tool']}"
            _runtime(config).timings.append((stage, time.perf_counter() - t0))

    run.__name__ = node.__name__
    return run


def build_graph(checkpointer: Any = None) -> Any:
    """The compiled graph (``checkpointer``: a LangGraph saver, e.g. SQLite, or None)."""
    g = StateGraph(TurnState)
    for name, node in (
        ("perceive", perceive),
        ("route", route),
        ("call", call),
        ("observe", observe),
        ("respond", respond),
    ):
        g.add_node(name, _timed(name, node))
    g.add_edge(START, "perceive")
    g.add_edge("perceive", "route")
    g.add_conditional_edges("route", dispatch, ["call", "respond"])
    g.add_edge("call", "observe")
    g.add_conditional_edges("observe", after_observe, ["route", "respond"])
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)
