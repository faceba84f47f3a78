"""Several turns in flight in one process: turns of different sessions overlap up to the
agent's ``concurrent_turns``, turns of one session run one after another in the order they
were accepted, and one model serves one call at a time (its lock), whatever the turn."""

from __future__ import annotations

import threading
import time

from pydantic import BaseModel
from switchboard.agent.graph import Step
from switchboard.agent.sdk import Agent
from switchboard.agent.store import Store
from switchboard.core import HybridCall, Registry, Specialist, Text


class Args(BaseModel):
    pass


def _timed_tool(name: str, seconds: float, log: list) -> type[Specialist]:
    """A tool that takes ``seconds`` and records when each call ran."""

    class Timed(Specialist):
        description, tasks, media = "takes its time", ("wait",), ("none",)

        def run(self, media, args, signal=None):
            t0 = time.perf_counter()
            time.sleep(seconds)
            log.append((self.name, t0, time.perf_counter()))
            return Text(text="done")

    Timed.name, Timed.Args = name, Args
    return Timed


class CallsTheToolNamed:
    """A scripted policy: call the tool the request names, then answer."""

    def step(self, messages, *a, **kw):
        if messages[-1]["content"].startswith("["):
            return Step(text="Finished.")
        return Step(calls=[HybridCall(tool=messages[-1]["content"].split()[0], args={})])


def _agent(tmp_path, concurrent_turns: int, log: list) -> Agent:
    registry = Registry()
    registry.register(_timed_tool("slow", 0.6, log))
    registry.register(_timed_tool("other", 0.6, log))
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "artifacts")
    return Agent(CallsTheToolNamed(), registry, store, concurrent_turns=concurrent_turns)


def _chat_all(agent: Agent, requests: list[tuple[str, str | None]]) -> list:
    """Each (text, session) from its own thread, started in order; their turns."""
    turns: list = [None] * len(requests)

    def one(i: int, text: str, session: str | None) -> None:
        turns[i] = agent.chat(text, session=session)

    threads = []
    for i, (text, session) in enumerate(requests):
        threads.append(threading.Thread(target=one, args=(i, text, session)))
        threads[-1].start()
        time.sleep(0.05)  # accepted in this order
    for t in threads:
        t.join(30)
    return turns


def _overlap(a: tuple, b: tuple) -> bool:
    return a[1] < b[2] and b[1] < a[2]


def test_turns_of_different_sessions_run_at_once_up_to_the_limit(tmp_path):
    log: list = []
    agent = _agent(tmp_path, 2, log)
    turns = _chat_all(agent, [("slow please", None), ("other please", None)])
    assert [t.text for t in turns] == ["Finished.", "Finished."]
    (a,), (b,) = ([e for e in log if e[0] == n] for n in ("slow", "other"))
    assert _overlap(a, b)  # two slots: both calls ran at the same time
    log.clear()
    one = _agent(tmp_path / "one", 1, log)
    _chat_all(one, [("slow please", None), ("other please", None)])
    (a,), (b,) = ([e for e in log if e[0] == n] for n in ("slow", "other"))
    assert not _overlap(a, b)  # one slot: one turn at a time, as before


def test_turns_of_one_session_run_in_order_and_a_model_serves_one_call_at_a_time(tmp_path):
    log: list = []
    agent = _agent(tmp_path, 4, log)
    first = agent.chat("other first")
    session = first.session
    log.clear()
    # Three turns of one session and one of another, all at once, with four slots.
    turns = _chat_all(
        agent,
        [("other a", session), ("slow b", session), ("other c", session), ("slow d", None)],
    )
    assert all(t.text == "Finished." for t in turns)
    history = agent.history(session)
    assert [h["messages"][0]["text"] for h in history] == ["other first", "other a", "slow b",
                                                           "other c"]  # fmt: skip
    # The session's "other" turns did not overlap (four slots would have let them): the
    # second waited for the turns of its session accepted before it.
    others = [e for e in log if e[0] == "other"]
    assert len(others) == 2 and not _overlap(others[0], others[1])
    # Two turns called "slow" at the same time (one of them another session's): its lock
    # made the calls take turns.
    slows = [e for e in log if e[0] == "slow"]
    assert len(slows) == 2 and not _overlap(slows[0], slows[1])
    # The other session's turn overlapped this session's: the slots let them run together.
    assert any(_overlap(s, o) for s in slows for o in others)
