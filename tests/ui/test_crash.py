"""``kill -9`` of a serving process at five moments of a turn — before its request is accepted,
while it waits for another turn, during a call, between two calls, while its reply is written —
then a new server on the same home: every request that was answered 200 is in the store and
ends ``done`` or ``failed`` with a reason, nothing stays pending, and SQLite's integrity check
passes. The server is the real app over a real Agent in a child process, with a scripted
policy and a specialist that sleeps (so the moments can be hit)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
TOKEN = "crash-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

SERVER = textwrap.dedent(
    """
    import sys, time
    import uvicorn
    from pydantic import BaseModel
    from switchboard.agent.graph import Step
    from switchboard.agent.sdk import Agent
    from switchboard.core import HybridCall, Registry, Specialist
    from switchboard.core.results import Text
    from switchboard.specialists import BUILTINS
    from switchboard.ui.server import create_app

    class Seconds(BaseModel):
        seconds: float = 0.0

    class Sleepy(Specialist):
        name, description, tasks, Args, media = "sleepy", "waits", ("wait",), Seconds, ("none",)

        def run(self, media, args, signal=None):
            time.sleep(args.seconds)
            return Text(text="slept")

    class Policy:
        # "wait N": one call that sleeps N s; "think": a call, a 4 s pause, another call;
        # anything else: words.
        def step(self, messages, *a, **kw):
            asked = next(m["content"] for m in reversed(messages) if m["role"] == "user"
                         and not m["content"].startswith("["))
            calls = sum(m["content"].startswith("[") for m in messages)
            said = asked.split()[-2:]
            if said[0] == "wait" and calls == 0:
                return Step(calls=[HybridCall(tool="sleepy", args={"seconds": float(said[1])})])
            if said[-1] == "think" and calls < 2:
                if calls == 1:
                    time.sleep(4.0)
                return Step(calls=[HybridCall(tool="sleepy", args={"seconds": 0.2})])
            return Step(text="Finished.")

    reg = Registry(BUILTINS)
    reg.register(Sleepy)
    agent = Agent.load(home=sys.argv[1], policy=Policy(), registry=reg, recover="background")
    uvicorn.run(create_app(agent, tokens=[sys.argv[3]]), host="127.0.0.1",
                port=int(sys.argv[2]), log_level="error")
"""
)


class Child:
    def __init__(self, home: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(home), str(port), TOKEN])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the server did not start")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)


class Stream:
    """A streamed request on a thread: whether it was answered 200, and its events."""

    def __init__(self, url: str, session: str, text: str) -> None:
        self.status: int | None = None
        self.events: list[str] = []
        self.thread = threading.Thread(target=self._run, args=(url, session, text), daemon=True)
        self.thread.start()

    def _run(self, url: str, session: str, text: str) -> None:
        try:
            with httpx.stream(
                "POST",
                f"{url}/api/sessions/{session}/messages/stream",
                headers=AUTH,
                data={"text": text},
                timeout=60,
            ) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith("event: "):
                        self.events.append(line[7:])
        except httpx.HTTPError:  # the server was killed under it
            pass

    def wait_for(self, event: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while event not in self.events:
            assert time.monotonic() < deadline, f"no {event!r} event: {self.events}"
            time.sleep(0.01)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session(url: str) -> str:
    return httpx.post(url + "/api/sessions", headers=AUTH).json()["id"]


def _before_acceptance(child: Child) -> list[tuple[str, Stream | None]]:
    """Headers and half a body sent, then the kill: never answered, so nothing is owed."""
    sid = _session(child.url)
    sock = socket.create_connection(("127.0.0.1", int(child.url.rsplit(":", 1)[1])))
    sock.sendall(
        f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: "
        f"Bearer {TOKEN}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n--b\r\n".encode()
    )
    time.sleep(0.3)
    child.kill()
    sock.close()
    return [(sid, None)]


def _waiting_in_the_queue(child: Child) -> list[tuple[str, Stream | None]]:
    a, b = _session(child.url), _session(child.url)
    first = Stream(child.url, a, "wait 5")
    first.wait_for("call_started")
    second = Stream(child.url, b, "hello there")
    deadline = time.monotonic() + 10
    while second.status is None:  # answered 200: accepted and stored, waiting for the lock
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child.kill()
    return [(a, first), (b, second)]


def _during_a_call(child: Child) -> list[tuple[str, Stream | None]]:
    sid = _session(child.url)
    s = Stream(child.url, sid, "wait 3")
    s.wait_for("call_started")
    time.sleep(0.5)
    child.kill()
    return [(sid, s)]


def _between_calls(child: Child) -> list[tuple[str, Stream | None]]:
    sid = _session(child.url)
    s = Stream(child.url, sid, "think")
    s.wait_for("call_finished")
    time.sleep(1.0)  # the router is "thinking" before its second call
    child.kill()
    return [(sid, s)]


def _writing_the_reply(child: Child) -> list[tuple[str, Stream | None]]:
    sid = _session(child.url)
    s = Stream(child.url, sid, "wait 0.2")
    s.wait_for("text")  # the respond node has written the reply; the turn is being stored
    child.kill()
    return [(sid, s)]


MOMENTS = {"before acceptance": _before_acceptance, "waiting in the queue": _waiting_in_the_queue,
           "during a call": _during_a_call, "between calls": _between_calls,
           "while writing the reply": _writing_the_reply}  # fmt: skip


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_server_loses_no_answered_request(tmp_path, moment):
    port = _port()
    child = Child(tmp_path, port)
    try:
        sent = MOMENTS[moment](child)
    finally:
        if child.proc.poll() is None:
            child.kill()
    again = Child(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        while httpx.get(again.url + "/api/health").json()["recovering"]:
            assert time.monotonic() < deadline, "recovery did not end"
            time.sleep(0.1)
        for sid, stream in sent:
            turns = httpx.get(f"{again.url}/api/sessions/{sid}", headers=AUTH).json()["turns"]
            if stream is None or stream.status != 200:
                assert all(t["status"] in ("done", "failed") for t in turns), turns
                continue
            (turn,) = turns  # answered 200: stored, and finished one way or the other
            assert turn["status"] in ("done", "failed"), turn
            assert turn["status"] == "done" or turn["error"], turn
    finally:
        again.kill()
    db = sqlite3.connect(tmp_path / "switchboard.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("select count(*) from turns where status = 'pending'").fetchone() == (0,)
    db.close()
    print(f"\n{moment}: " + json.dumps([[s.status, s.events] if s else None for _, s in sent]))
