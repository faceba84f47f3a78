"""The Python SDK: an embedded agent that keeps its conversations.

    from switchboard.agent import Agent

    agent = Agent.load()                                  # router-tiny, hybrid calls, built-ins
    agent = Agent.load(signals=False)                     # text calls only
    turn = agent.chat("segment the red circle", image="scene.png")
    turn.text, turn.masks, turn.calls
    turn.save("out/")                                     # reply.txt, calls.json, mask_0.png …
    again = agent.chat("now remove it", session=turn.session)

Each ``chat`` is one turn of the graph (:mod:`switchboard.agent.graph`). The request and its
media are stored before the graph runs (a ``pending`` turn), the calls as they finish, the
reply and its artifacts when it ends (:mod:`switchboard.agent.store`); a turn cut off by a
crash is marked failed when the next :class:`Agent` opens the same home.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from switchboard.core import Registry
from switchboard.core.errors import InvalidInputError
from switchboard.core.media import Video, encode_png, load_image, load_video
from switchboard.core.results import Boxes, ImageOut, Masks, Tracks, VideoOut
from switchboard.core.wire import Box, TrackOut, TurnReply

from .graph import (
    CANCELLED,
    AgentRuntime,
    TurnCancelled,
    build_graph,
    checkpointer_for,
    close_checkpointer,
    restore_media,
)
from .store import Store, turn_outcome
from .tools import HISTORY, VersionCursor, with_agent_tools

log = logging.getLogger(__name__)

# The router's conversation is bounded: at most this many characters of earlier turns' words
# (about 300 tokens; the scripted conversations it is trained on hold 1–4 earlier turns of
# 60–500 characters), the oldest turns dropped first.
HISTORY_CHARS = 1200
# How many earlier turns the router reads by default (the scripted conversations it is trained
# on have up to four before the last).
HISTORY_TURNS = 4


@dataclass
class CallRecord:
    tool: str
    args: dict[str, Any]
    status: str
    seconds: float
    observation: str
    error: str | None = None
    with_signal: bool = False

    @classmethod
    def of(cls, result: dict[str, Any]) -> CallRecord:
        """The record of one call result as the graph keeps it (``results`` in its state)."""
        return cls(**{name: result[name] for name in cls.__dataclass_fields__})


@dataclass
class Turn:
    """What one request produced: the reply, the calls made and the artifacts (masks as HW
    bool arrays, boxes as ``(xyxy, label, score)``, tracks, edited/generated images)."""

    session: str
    turn_id: int
    text: str
    calls: list[CallRecord] = field(default_factory=list)
    masks: list[np.ndarray] = field(default_factory=list)
    boxes: list[tuple[tuple[float, float, float, float], str, float]] = field(default_factory=list)
    tracks: list[Any] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    videos: list[Video] = field(default_factory=list)  # edited videos
    # (stage, seconds) in order: "perceive" (decoding and storing the request, building the
    # router's conversation), "route" (one per router pass), "call:<tool>", "observe",
    # "respond" (the reply and storing it with its artifacts)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def box_list(self) -> list[Box]:
        return [
            Box(xyxy=[float(v) for v in b], label=lb, score=float(s)) for b, lb, s in self.boxes
        ]

    def track_list(self) -> list[TrackOut]:
        return [
            TrackOut(
                track_id=t.track_id,
                label=t.label,
                frames=list(t.frames),
                xyxy=[[float(v) for v in b] for b in t.xyxy],
            )
            for t in self.tracks
        ]

    @property
    def outcome(self) -> str:
        """``"ok"`` (every call did its work, or no call was needed), ``"partial"`` (some calls
        failed) or ``"failed"`` (every call failed): what the page styles the reply by."""
        return turn_outcome([c.status for c in self.calls])

    def save(self, folder: str | Path) -> list[Path]:
        """Write ``reply.txt``, ``calls.json``, ``mask_<k>.png``, ``image_<k>.png``,
        ``boxes.json`` and ``tracks.json`` (those that apply) into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = [folder / "reply.txt", folder / "calls.json"]
        out[0].write_text(self.text + "\n")
        out[1].write_text(json.dumps([c.__dict__ for c in self.calls], indent=2, default=str))
        for k, m in enumerate(self.masks):
            out.append(folder / f"mask_{k}.png")
            out[-1].write_bytes(encode_png(m.astype(np.uint8) * 255))
        for k, im in enumerate(self.images):
            out.append(folder / f"image_{k}.png")
            out[-1].write_bytes(encode_png(im))
        if self.boxes:
            out.append(folder / "boxes.json")
            out[-1].write_text(json.dumps([b.model_dump() for b in self.box_list()], indent=2))
        if self.tracks:
            out.append(folder / "tracks.json")
            out[-1].write_text(json.dumps([t.model_dump() for t in self.track_list()], indent=2))
        return out


def _region(region: Any, height: int, width: int) -> dict[str, Any]:
    """``(x1, y1, x2, y2)`` / ``{"box": …}`` / ``{"point": (x, y)}`` / an HW bool mask (or
    ``{"mask": …}`` with COCO RLE or rows of 0/1) → the graph's region dict, checked against the
    image."""
    if isinstance(region, np.ndarray) and region.ndim == 2:
        if region.shape != (height, width):
            raise InvalidInputError(
                f"region mask {region.shape} is not the image's {height, width}"
            )
        return {"mask": region.astype(bool)}
    if isinstance(region, dict) and len(region) == 1 and "mask" in region:  # JSON: RLE or rows
        value = region["mask"]
        try:
            if isinstance(value, dict):
                from switchboard.core.rle import decode_rle

                size = [int(v) for v in value.get("size", ())]
                if size != [height, width]:  # checked before decoding: no allocation for a lie
                    raise InvalidInputError(
                        f"a region mask's size {size} is not the image's {[height, width]}"
                    )
                mask = decode_rle(value)
            else:
                mask = np.asarray(value, dtype=bool)
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"a region mask is COCO RLE or rows of 0/1: {exc}") from None
        return _region(mask, height, width)
    if isinstance(region, list | tuple) and len(region) == 4:
        region = {"box": region}
    if (
        not isinstance(region, dict)
        or len(region) != 1
        or next(iter(region)) not in ("box", "point", "mask")
    ):
        raise InvalidInputError("a region is a box (x1, y1, x2, y2), {'point': (x, y)} or a mask")
    ((kind, value),) = region.items()
    if kind in ("box", "point"):
        want = 4 if kind == "box" else 2
        try:
            v = [float(x) for x in value]
        except (TypeError, ValueError):
            raise InvalidInputError(f"a {kind} is a list of {want} numbers") from None
        if len(v) != want:
            raise InvalidInputError(f"a {kind} has {want} numbers, got {len(v)}")
        if not all(math.isfinite(x) for x in v):
            raise InvalidInputError(f"a {kind}'s numbers must be finite")
        xs, ys = v[0::2], v[1::2]
        if min(v) < 0 or max(xs) > width or max(ys) > height:
            raise InvalidInputError(f"{kind} {v} lies outside the {width}x{height} image")
        if kind == "box" and not (v[2] > v[0] and v[3] > v[1]):
            raise InvalidInputError(f"box {v} is not x1 < x2, y1 < y2")
        return {kind: v}
    return {"mask": np.asarray(value, bool)}


@dataclass
class Accepted:
    """A request checked and stored as a pending turn (:meth:`Agent.accept`), to be run."""

    session: str
    turn_id: int
    owner: str | None
    text: str
    media: Any  # the decoded image or Video the turn works on, or None
    media_kind: str | None
    regions: list[dict[str, Any]]
    current_id: int | None  # the session version it works on, when it sent no media
    region: Any = None  # the region as sent (re-checked if the current image changes)
    t_start: float = 0.0
    # Set it to cancel the turn: before it starts it does not run; running, it stops before its
    # next route. Either way it is stored failed, its reason "cancelled".
    cancel: threading.Event = field(default_factory=threading.Event)


class Agent:
    """The embedded agent: a policy (the router), the registry's specialists, a store."""

    def __init__(
        self,
        policy: Any,
        registry: Registry,
        store: Store,
        max_steps: int = 6,
        timeout_s: float = 120.0,
        checkpointer: Any = None,
        history_turns: int = HISTORY_TURNS,
        single_pass: bool = False,
        memory_budget_mb: float | None = None,
        recover: str = "now",
        concurrent_turns: int = 1,
    ) -> None:
        """``history_turns``: how many earlier turns of the session the router reads (their
        words, bounded by :data:`HISTORY_CHARS`): "now make it yellow" refers to what the turn
        before segmented. 0 reads the request alone. The store keeps every turn either way.

        ``single_pass``: the first route's calls are the turn's calls and the reply is written
        from their observations, without routing again (see ``AgentRuntime.single_pass``;
        ``switchboard bench`` compares the two).

        ``memory_budget_mb``: unload the least recently used specialists while the process's
        resident memory is over it (``SWITCHBOARD_MEMORY_BUDGET_MB`` for :meth:`load`).

        ``recover``: what to do with the turns a killed process left pending — ``"now"``
        (resume them before returning), or ``"background"`` (resume them on a thread holding
        :attr:`turn_lock`, so a server answers at once and runs new turns after them; then
        look again every third of a lease: a server sharing its database with others resumes
        the turns of one that died). While the agent lives it renews the lease on its own
        pending turns (:meth:`Store.renew`), so no other process takes them.

        ``concurrent_turns``: how many turns run at once (:meth:`run` waits for a slot); turns
        of one session always run one after another, in the order they were accepted. Each
        specialist (and the router) runs one call at a time under its own lock, so turns
        overlap where they use different models, and a turn's Python, database and encoding
        work overlaps another's model work.

        The agent owns the thread pool its calls run on: :meth:`close` (or ``with Agent…``)
        shuts it down."""
        self.policy, self.registry, self.store = policy, registry, store
        with_agent_tools(registry)  # the agent's own tools (undo/redo) beside the specialists
        self.memory_budget_mb = memory_budget_mb
        if concurrent_turns < 1:
            raise ValueError("concurrent_turns is at least 1")
        self.concurrent_turns = concurrent_turns
        # Four calls in flight per turn (a route's parallel calls), for every turn at once.
        self.executor = ThreadPoolExecutor(
            4 * concurrent_turns, thread_name_prefix="switchboard-call"
        )
        self._slots = threading.BoundedSemaphore(concurrent_turns)
        self._order = threading.Lock()
        self._turn_done = threading.Condition(self._order)  # a session's turn ended
        self._session_locks: dict[str, list[Any]] = {}  # session → its turns, oldest first
        self.single_pass = single_pass
        self.max_steps, self.timeout_s = max_steps, timeout_s
        self.history_turns = history_turns
        self.checkpointer = checkpointer
        self.graph = build_graph(checkpointer)
        # Held while interrupted turns are resumed: new turns start after them (:meth:`slot`).
        self.turn_lock = threading.RLock()
        # Turns a killed process left pending: resumed from their checkpoint or their request
        # (``resumed``), else marked failed; ``recovered`` counts both (None while a
        # background recovery runs).
        self.resumed: list[int] = []
        self.recovered: int | None = None
        self.recovery: threading.Thread | None = None
        if recover not in ("now", "background"):
            raise ValueError(f"recover is 'now' or 'background', not {recover!r}")
        self._closing = threading.Event()
        self._owns_checkpointer = False  # Agent.load sets it when it opened the checkpointer
        if recover == "background":
            self.recovery = threading.Thread(
                target=self._recover_locked, daemon=True, name="switchboard-recover"
            )
            self.recovery.start()
        else:
            self.recovered = self._recover()
        self.leases = threading.Thread(
            target=self._keep_leases,
            args=(recover == "background",),
            daemon=True,
            name="switchboard-leases",
        )
        self.leases.start()

    @contextmanager
    def slot(self, session: str) -> Iterator[None]:
        """Hold one of the agent's turn slots for a turn of ``session``: after any resumption
        of interrupted turns in progress, after the session's earlier turns (one turn of a
        session at a time, first come first served), then as soon as fewer than
        ``concurrent_turns`` turns run."""
        with self.turn_lock:  # wait out a recovery in progress (re-entrant for its own turns)
            pass
        me = object()
        with self._order:  # the session's queue, in arrival order
            queue = self._session_locks.setdefault(session, [])
            queue.append(me)
            while queue[0] is not me:
                self._turn_done.wait()
        try:
            with self._slots:
                yield
        finally:
            with self._order:
                queue.pop(0)
                if not queue:
                    self._session_locks.pop(session, None)
                self._turn_done.notify_all()

    def _recover_locked(self) -> None:
        with self.turn_lock:
            self.recovered = self._recover()

    def _keep_leases(self, sweep: bool) -> None:
        """Renew this process's claim on its pending turns every third of a lease; with
        ``sweep``, resume the turns of processes that died meanwhile (after the start's own
        recovery)."""
        every = self.store.lease_s / 3
        while not self._closing.wait(every):
            try:
                self.store.renew()
                if sweep and not self.recovering and self.store.orphans():
                    with self.turn_lock:
                        self.recovered = (self.recovered or 0) + self._recover()
            except Exception as exc:  # the database away for a moment: try again next time
                log.warning("renewing turn leases failed: %s: %s", type(exc).__name__, exc)

    @property
    def recovering(self) -> bool:
        """Whether a background recovery is still resuming interrupted turns."""
        return self.recovery is not None and self.recovery.is_alive()

    @classmethod
    def load(
        cls,
        profile: str = "tiny",
        home: str | Path | None = None,
        database: str | None = None,
        policy: Any = None,
        registry: Registry | None = None,
        signals: bool = True,
        backend: str = "local",
        ray_address: str | None = None,
        serve_config: Any = None,
        **kw: Any,
    ) -> Agent:
        """The embedded default: router-tiny (``SWITCHBOARD_ROUTER`` overrides the folder) making
        hybrid calls — each text call with its signal embeddings (``signals=False``: text
        calls only; a router folder without signal heads makes text calls), the built-in
        specialists and installed plugins, conversations in ``<home>/switchboard.db``
        (``SWITCHBOARD_HOME``, default ``~/.switchboard``) or ``database`` (any SQLAlchemy URL),
        graph checkpoints in ``<home>/checkpoints.db``.

        ``backend="ray"``: every specialist and the router run as Ray Serve deployments (of a
        local cluster, or the one at ``ray_address``; replicas and resources from
        ``serve_config``, a YAML file or a :class:`~switchboard.agent.ray_serve.ServePlan`;
        applications already running in the cluster are joined); the graph,
        the store and this object are the same (:mod:`switchboard.agent.ray_serve`)."""
        from switchboard.core.config import get_settings
        from switchboard.specialists import default_registry

        from .policy import RouterPolicy

        if profile not in ("tiny", "full"):
            raise InvalidInputError(f"unknown profile {profile!r}: 'tiny' or 'full'")
        home = Path(home) if home else get_settings().home
        home.mkdir(parents=True, exist_ok=True)
        settings = get_settings()
        database = database or settings.database or f"sqlite:///{home / 'switchboard.db'}"
        store = Store(
            database, settings.artifacts or home / "artifacts", lease_s=settings.turn_lease_s
        )
        made = "checkpointer" not in kw  # opened here (and closed with the agent), else given
        if made:
            kw["checkpointer"] = checkpointer_for(database, home)
        kw.setdefault("memory_budget_mb", settings.memory_budget_mb)
        kw.setdefault("concurrent_turns", settings.concurrent_turns)
        registry = registry or default_registry()
        if backend == "ray":
            try:
                from . import ray_serve
            except ImportError as exc:
                raise InvalidInputError(
                    f"backend 'ray' needs Ray Serve: pip install 'switchboard[ray]' ({exc})"
                ) from exc
            plan = (
                serve_config
                if isinstance(serve_config, ray_serve.ServePlan)
                else ray_serve.ServePlan.load(serve_config)
            )
            # A policy given here runs in this process: no router deployment for it.
            registry, remote = ray_serve.backend(
                registry, ray_address, plan, signals, router=policy is None
            )
            policy = policy or remote
        elif backend != "local":
            raise InvalidInputError(f"unknown backend {backend!r}: 'local' or 'ray'")
        policy = policy or RouterPolicy(with_signals=signals)
        agent = cls(policy, registry, store, **kw)
        agent._owns_checkpointer = made  # its connection pool is closed with the agent
        return agent

    # -- turns -------------------------------------------------------------------------------
    def chat(
        self,
        text: str,
        image: Any = None,
        video: Any = None,
        region: Any = None,
        session: str | None = None,
        owner: str | None = None,
        on_event: Any = None,
    ) -> Turn:
        """One turn: :meth:`accept` the request (checked and stored), then :meth:`run` it."""
        accepted = self.accept(text, image, video, region, session, owner)
        return self.run(accepted, on_event=on_event)

    def accept(
        self,
        text: str,
        image: Any = None,
        video: Any = None,
        region: Any = None,
        session: str | None = None,
        owner: str | None = None,
    ) -> Accepted:
        """Check a request and store it as a pending turn; nothing is run yet. Bad input raises
        (:class:`InvalidInputError`) with nothing stored. A request stored here is not lost: if
        the process dies before :meth:`run` finishes it, the next start runs it (from its
        checkpoint, or from the stored request)."""
        t_start = time.perf_counter()
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("a request needs some text")
        if image is not None and video is not None:
            raise InvalidInputError("send an image or a video, not both")
        media: Any = None
        inputs: list[tuple[str, bytes]] = []
        if image is not None:  # refused past SWITCHBOARD_MAX_IMAGE_PIXELS before decoding
            # Every common mode (palette, grey, alpha, CMYK, 16-bit) is converted to RGB.
            media = load_image(image, convert=True)
            inputs.append(("image", encode_png(media)))
        elif video is not None:
            media = load_video(video)
            inputs.append(("video", _video_bytes(video, media)))
        current = None
        if media is None and session is not None:  # the session's current image or video
            current = self.store.current(session, owner)
            if current is not None:
                media = self._version_media(current)
        regions = []
        if region is not None:
            if media is None:
                raise InvalidInputError("a region needs an image or a video to point into")
            regions = [_region(region, *_size(media))]
        if session is None:
            session = self.store.create_session(owner=owner)
        else:
            self.store.check_session(session, owner)
        stored_region = (
            None
            if not regions
            else {k: v for k, v in regions[0].items() if k != "mask"} or {"mask": True}
        )
        turn_id = self.store.begin_turn(
            session, text, inputs, stored_region, owner=owner, current=current and current["id"]
        )
        kind = None if media is None else ("video" if isinstance(media, Video) else "image")
        return Accepted(
            session,
            turn_id,
            owner,
            text,
            media,
            kind,
            regions,
            current and current["id"],
            region,
            t_start,
        )

    def run(self, accepted: Accepted, on_event: Any = None) -> Turn:
        """Run an accepted turn to its end and store it. A request sent without media works on
        the session's current image as it is now: when a turn of the same session ran after
        this one was accepted and changed it, the turn is pointed at the new one."""
        with self.slot(accepted.session):
            return self._run_accepted(accepted, on_event)

    def _run_accepted(self, accepted: Accepted, on_event: Any) -> Turn:
        acc = accepted
        if acc.cancel.is_set():  # its client left while it waited: never started
            return self._cancelled(acc.session, acc.turn_id)
        if acc.current_id is not None:
            now = self.store.current(acc.session, acc.owner)
            if now is not None and now["id"] != acc.current_id:
                acc.media = self._version_media(now)
                acc.media_kind = now["kind"]
                acc.current_id = now["id"]
                self.store.set_turn_current(acc.turn_id, now["id"])
                if acc.region is not None:  # the region is checked against the image it meets
                    acc.regions = [_region(acc.region, *_size(acc.media))]
        history = self._history(acc.session, acc.owner)
        rt = self._runtime(on_event=on_event, cancel=acc.cancel)
        rt.versions = self._cursor(acc.session, acc.owner)
        rt.timings.append(("perceive", time.perf_counter() - acc.t_start))
        state: dict[str, Any] = {"text": acc.text, "regions": acc.regions, "history": history}
        if acc.media is not None:
            rt.media["input"] = acc.media
            state.update(media="input", media_kind=acc.media_kind)
        return self._run(acc.session, acc.turn_id, rt, state)

    # -- the session's current image ---------------------------------------------------------
    def current(self, session: str, owner: str | None = None) -> dict[str, Any] | None:
        """The session's current image or video: what a request sent without media works on
        (the last one sent, or the last one an edit made, moved by :meth:`undo` and
        :meth:`redo`). A dict with ``id``, ``sha256``, ``kind``, ``source`` (upload / edited /
        generated), ``turn_id`` and ``parent_id``; None before anything was sent or made."""
        return self.store.current(session, owner)

    def current_media(self, session: str, owner: str | None = None) -> Any:
        """The current version decoded: an RGB array, a :class:`Video`, or None."""
        cur = self.store.current(session, owner)
        return None if cur is None else self._version_media(cur)

    def undo(self, session: str, owner: str | None = None) -> dict[str, Any]:
        """Make the version before the current one current again (an edit undone); returns it.
        :class:`InvalidInputError` when there is nothing to undo; refused while a turn of the
        session runs."""
        return self.store.undo(session, owner)

    def redo(self, session: str, owner: str | None = None) -> dict[str, Any]:
        """Make current again what the last :meth:`undo` left (the newest version made from the
        current one); :class:`InvalidInputError` when there is none."""
        return self.store.redo(session, owner)

    def _version_media(self, version: dict[str, Any]) -> Any:
        """A stored version of a session's media, decoded."""
        return _decode_input(version["kind"], self.store.files.get(version["sha256"]))

    def _cursor(self, session: str, owner: str | None) -> VersionCursor:
        """The session's versions as the turn's undo/redo cursor (media decoded on demand)."""
        cur = self.store.current(session, owner)
        versions = self.store.versions(session, owner)
        return VersionCursor(versions, cur and cur["id"], self._version_media)

    def _runtime(self, **kw: Any) -> AgentRuntime:
        """A turn's runtime over this agent's policy, tools, limits and thread pool (``kw``:
        the turn's own ``on_event`` and ``cancel``)."""
        return AgentRuntime(
            self.policy,
            self.registry,
            self.max_steps,
            self.timeout_s,
            executor=self.executor,
            memory_budget_mb=self.memory_budget_mb,
            single_pass=self.single_pass,
            **kw,
        )

    def _config(self, turn_id: int, rt: AgentRuntime) -> dict[str, Any]:
        return {"configurable": {"runtime": rt, "thread_id": f"turn-{turn_id}"}}

    def _run(self, session: str, turn_id: int, rt: AgentRuntime, state: Any) -> Turn:
        """Run (``state``) or resume (``None``) the turn's graph; store and return the Turn."""
        config = self._config(turn_id, rt)
        try:  # every step's checkpoint is written before the next step starts
            # (durability without a checkpointer trips LangGraph: it waits on a save it never
            # started)
            sync = {"durability": "sync"} if self.checkpointer is not None else {}
            out = self.graph.invoke(state, config=config, **sync)
        except TurnCancelled:
            return self._cancelled(session, turn_id, config)
        except Exception as exc:  # the graph catches specialists; this is a bug: record it
            self.store.finish_turn(
                turn_id,
                f"The turn failed: {exc}",
                status="failed",
                error=f"{type(exc).__name__}: {exc}",
            )
            self._forget(turn_id)
            raise
        t0 = time.perf_counter()
        turn = self._finish(session, turn_id, out, rt)
        self._forget(turn_id)
        rt.timings.append(("respond", time.perf_counter() - t0))
        # the request's preparation and the graph's perceive node are one stage, as are the
        # respond node and storing the turn
        merged: dict[str, float] = {}
        for stage, s in rt.timings:
            if stage in ("perceive", "respond"):
                merged[stage] = merged.get(stage, 0.0) + s
        turn.timings = [("perceive", merged.get("perceive", 0.0))]
        turn.timings += [(st, s) for st, s in rt.timings if st not in ("perceive", "respond")]
        turn.timings.append(("respond", merged.get("respond", 0.0)))
        return turn

    def _forget(self, turn_id: int) -> None:
        """A finished turn's checkpoints are not needed any more (the store has the turn)."""
        if self.checkpointer is not None:
            self.checkpointer.delete_thread(f"turn-{turn_id}")

    def _cancelled(self, session: str, turn_id: int, config: Any = None) -> Turn:
        """Store a cancelled turn as failed with the calls it had made, and return it."""
        turn = Turn(session, turn_id, CANCELLED)
        if config is not None and self.checkpointer is not None:
            for r in self.graph.get_state(config).values.get("results", []):
                record = CallRecord.of(r)
                self.store.add_call(turn_id, **record.__dict__)
                turn.calls.append(record)
        self.store.finish_turn(turn_id, CANCELLED, status="failed", error="cancelled")
        self._forget(turn_id)
        return turn

    def _finish(self, session: str, turn_id: int, out: dict[str, Any], rt: AgentRuntime) -> Turn:
        """Store the turn's calls, its reply and its artifacts: masks and images as PNG, and the
        boxes and tracks as one ``results`` JSON (with the video's fps, so a page can play the
        tracks over the stored video)."""
        turn = Turn(session, turn_id, out["final"])
        image_kind = "edited" if out.get("media_kind") == "image" else "generated"
        outputs: list[tuple[str, bytes]] = []
        for r in out.get("results", []):
            record = CallRecord.of(r)
            self.store.add_call(turn_id, **record.__dict__)
            turn.calls.append(record)
            res = r["result"]
            if r["tool"] == HISTORY and r["status"] == "ok":  # undo/redo: moved when stored
                outputs.append((r["args"]["op"], b""))
            if isinstance(res, Masks):
                for m in res.masks:
                    turn.masks.append(np.asarray(m, bool))
                    outputs.append(("mask", encode_png(turn.masks[-1].astype(np.uint8) * 255)))
            elif isinstance(res, Boxes):
                found = zip(res.xyxy, res.labels, res.scores, strict=True)
                turn.boxes += [(tuple(b), lb, s) for b, lb, s in found]
            elif isinstance(res, Tracks):
                turn.tracks += res.tracks
            elif isinstance(res, ImageOut):
                turn.images.append(res.image)
                outputs.append((image_kind, encode_png(res.image)))
            elif isinstance(res, VideoOut):  # an edited video: an mp4 at the input's fps
                made = Video(frames=res.frames, fps=res.fps)
                turn.videos.append(made)
                outputs.append(("edited", _video_bytes(None, made)))
        for p in out.get("pointed") or []:  # a grounding answer's object ("#3")
            turn.boxes.append((tuple(p["xyxy"]), p["label"], p["score"]))
        if turn.boxes or turn.tracks:
            outputs.append(("results", _results_json(turn, rt.media.get("input"))))
        self.store.finish_turn(turn_id, turn.text, outputs)
        return turn

    def _recover(self) -> int:
        """Resume every pending turn no live process runs (:meth:`Store.claim`: one turn to
        one process, even with several sharing the database): from its last finished step
        where it has a checkpoint (with the request's media from the store), else from its
        stored request, once; a turn that cannot be resumed is marked failed. Returns how many
        turns were claimed."""
        n = 0
        while (turn_id := self.store.claim()) is not None:
            n += 1
            try:
                self._resume(turn_id)
            except Exception as exc:  # could not resume: the turn is failed, nothing is lost
                if turn_id in self.store.pending_turns():
                    self.store.finish_turn(
                        turn_id,
                        "The turn could not be resumed.",
                        status="failed",
                        error=f"resume failed: {type(exc).__name__}: {exc}",
                    )
                self._forget(turn_id)
        return n

    STOPPED = "the process stopped before the turn finished"

    def _resume(self, turn_id: int) -> None:
        """Resume one claimed turn (see :meth:`_recover`)."""
        if self.checkpointer is None:
            self.store.fail_turn(turn_id, self.STOPPED)
            return
        rt = self._runtime()
        config = self._config(turn_id, rt)
        snapshot = self.graph.get_state(config)
        if not snapshot.values:  # accepted, but killed before its first step was saved
            if not self.store.claim_rerun(turn_id):  # once: a request that kills the
                # process must not do so at every start
                self.store.fail_turn(turn_id, self.STOPPED)
                return
            self.store.mark_resumed(turn_id)
            self._rerun(turn_id)
            self.resumed.append(turn_id)
            return
        self.store.mark_resumed(turn_id)
        req = self.store.turn_request(turn_id)
        for kind, data in req["inputs"]:
            rt.media["input"] = _decode_input(kind, data)
        restore_media(rt, snapshot.values)
        with self.slot(req["session"]):
            if snapshot.next:
                self._run(req["session"], turn_id, rt, None)
            else:  # the graph had ended; only the store's part was cut off
                self._finish(req["session"], turn_id, snapshot.values, rt)
                self._forget(turn_id)
        self.resumed.append(turn_id)

    def _rerun(self, turn_id: int) -> None:
        """Run a stored request from its start (its turn has no checkpoint), as :meth:`run`
        runs an accepted one."""
        req = self.store.turn_request(turn_id)
        media, kind = None, None
        for k, data in req["inputs"]:
            media, kind = _decode_input(k, data), ("video" if k == "video" else "image")
        regions = []
        if req["region"] is not None:
            if req["region"] == {"mask": True}:
                raise InvalidInputError("its drawn region was a mask, which is not stored")
            regions = [_region(req["region"], *_size(media))]
        self.run(
            Accepted(
                req["session"],
                turn_id,
                req["owner"],
                req["text"],
                media,
                kind,
                regions,
                None,
                req["region"],
                time.perf_counter(),
            )
        )

    def stream(self, text: str, **kw: Any) -> Iterator[dict[str, Any]]:
        """The turn's events as they happen (``route``, ``refused``, ``call_started``,
        ``call_finished``, ``text``), then ``{"type": "turn", "turn": Turn}``."""
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["turn"] = self.chat(text, on_event=events.put, **kw)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc
            finally:
                events.put({"type": "_end"})

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while True:
            event = events.get()
            if event["type"] == "_end":
                break
            yield event
        thread.join()
        if "error" in box:
            raise box["error"]
        yield {"type": "turn", "turn": box["turn"]}

    def _history(self, session: str, owner: str | None) -> list[dict[str, str]]:
        """The router's conversation: the words of the last ``history_turns`` done turns, the
        oldest dropped first while they are over :data:`HISTORY_CHARS` (the newest turn is
        kept whole). Earlier images are not in it: a turn works on the session's current image,
        whose object list the prompt carries."""
        if self.history_turns <= 0:
            self.store.check_session(session, owner)  # someone else's session: NotFoundError
            return []
        done = [t for t in self.store.history(session, owner=owner) if t["status"] == "done"]
        turns = []
        for t in done[-self.history_turns :]:
            turns.append(
                [
                    {"role": "user" if m["role"] == "user" else "assistant", "content": m["text"]}
                    for m in t["messages"]
                ]
            )
        while len(turns) > 1 and sum(len(m["content"]) for t in turns for m in t) > HISTORY_CHARS:
            turns.pop(0)
        return [m for t in turns for m in t]

    def close(self) -> None:
        """Stop renewing leases, shut the calls' thread pool down (waiting for running calls)
        and close the PostgreSQL checkpointer's connections when :meth:`load` opened them.
        The store and the loaded models stay usable by whoever holds them."""
        self._closing.set()
        self.executor.shutdown(wait=True)
        if self._owns_checkpointer:
            close_checkpointer(self.checkpointer)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def sessions(self, owner: str | None = None) -> list[dict[str, Any]]:
        return self.store.sessions(owner)

    def history(self, session: str, owner: str | None = None) -> list[dict[str, Any]]:
        return self.store.history(session, owner)

    def reply(self, turn: Turn, owner: str | None = None) -> TurnReply:
        """``turn`` as the API sends it (:class:`~switchboard.core.wire.TurnReply`): with its
        stored messages (the artifacts' hashes) and the session's current media after it."""
        stored = self.store.turn(turn.turn_id, owner=owner)
        return TurnReply(
            session=turn.session,
            turn=turn.turn_id,
            text=turn.text,
            outcome=turn.outcome,
            calls=[c.__dict__ for c in turn.calls],
            boxes=turn.box_list(),
            tracks=turn.track_list(),
            messages=stored["messages"],
            current=self.current(turn.session, owner=owner),
        )


def _results_json(turn: Turn, media: Any) -> bytes:
    """A turn's boxes and tracks as stored JSON (``fps``: the input video's, for playback)."""
    fps = media.fps if isinstance(media, Video) else None
    return json.dumps(
        {
            "boxes": [b.model_dump() for b in turn.box_list()],
            "tracks": [t.model_dump() for t in turn.track_list()],
            "fps": fps,
        },
        separators=(",", ":"),
    ).encode()


def _size(media: Any) -> tuple[int, int]:
    """(height, width) of an image array or a :class:`Video`."""
    return (media.height, media.width) if isinstance(media, Video) else media.shape[:2]


def _decode_input(kind: str, data: bytes) -> Any:
    """A stored input artifact back as media (an image array or a :class:`Video`)."""
    from switchboard.core.media import decode_image

    if kind != "video":
        return decode_image(data)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "video.mp4"
        path.write_bytes(data)
        return load_video(path)


def _video_bytes(source: Any, video: Video) -> bytes:
    if isinstance(source, str | Path) and Path(source).is_file():
        return Path(source).read_bytes()
    from switchboard.core.media import encode_mp4

    return encode_mp4(video)
