"""``kill -9`` of a serving process at five moments of a turn — before its request is accepted,
while it waits for another turn, during a call, between two calls, while its reply is written —
then a new server on the same home: every request that was answered 200 is in the store and
ends ``done`` or ``failed`` with a reason, nothing stays pending, and SQLite's integrity check
passes. The server is the real app over a real Agent in a process of its own (forked from
one that imported the modules once), with a scripted policy and a specialist that sleeps (so
the moments can be hit). The five moments run at the same time, each on its own home."""

from __future__ import annotations

import json
import os
import signal
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
    import json, os, signal, sys, time
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

    # Imported once: each line asks for a server (a home and a port), forked off as a process
    # of its own (its pid printed), which the test kills; the kernel reaps them.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while line := sys.stdin.readline():
        home, port = json.loads(line)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.dup2(2, 1)  # its stdout is not the pids' pipe
            reg = Registry(BUILTINS)
            reg.register(Sleepy)
            agent = Agent.load(home=home, policy=Policy(), registry=reg, recover="background")
            uvicorn.run(create_app(agent, tokens=[sys.argv[1]]), host="127.0.0.1", port=port,
                        log_level="error")
            os._exit(0)
        print(pid, flush=True)
"""
)


class Servers:
    """One process that imports the server's modules once, then forks a server process per
    :meth:`start` (a fresh process of its own on a home and a port: killed with SIGKILL)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, TOKEN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, home: Path, port: int) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write(json.dumps([str(home), port]) + "\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Child:
    """A server process serving ``home`` on ``port`` (forked by ``servers``)."""

    def __init__(self, servers: Servers, home: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.pid = servers.start(home, port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.kill()
        raise AssertionError("the server did not start")

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.alive():  # gone once the kernel has reaped it
            assert time.monotonic() < deadline, "the server did not die"
            time.sleep(0.01)


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


def _crash(servers: Servers, home: Path, moment: str) -> dict:
    """``moment`` on a fresh ``home``: a server serves it and is killed, then a new server
    serves it; what the new server says of every request sent, and the store's own checks."""
    port = _port()
    child = again = None
    try:
        child = Child(servers, home, port)
        try:
            sent = MOMENTS[moment](child)
        finally:
            child.kill()
        again = Child(servers, home, port)
        deadline = time.monotonic() + 60
        while httpx.get(again.url + "/api/health").json()["recovering"]:
            assert time.monotonic() < deadline, "recovery did not end"
            time.sleep(0.1)
        turns = {
            sid: httpx.get(f"{again.url}/api/sessions/{sid}", headers=AUTH).json()["turns"]
            for sid, _ in sent
        }
    finally:
        for server in (child, again):
            if server is not None:
                server.kill()
    db = sqlite3.connect(home / "switchboard.db")
    integrity = db.execute("PRAGMA integrity_check").fetchone()
    pending = db.execute("select count(*) from turns where status = 'pending'").fetchone()
    db.close()
    return {"sent": sent, "turns": turns, "integrity": integrity, "pending": pending}


@pytest.fixture(scope="module")
def crashes(tmp_path_factory):
    """Every moment at once, each on its own home and port with its own two server processes
    (they share nothing; each mostly waits on its turns' sleeps): moment → the future of
    :func:`_crash`."""
    from concurrent.futures import ThreadPoolExecutor

    servers = Servers()
    try:
        with ThreadPoolExecutor(len(MOMENTS)) as pool:
            futures = {
                moment: pool.submit(_crash, servers, tmp_path_factory.mktemp("crash"), moment)
                for moment in MOMENTS
            }
    finally:
        servers.close()
    return futures


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_killed_server_loses_no_answered_request(crashes, moment):
    got = crashes[moment].result()  # the moment's own failure, raised here
    for sid, stream in got["sent"]:
        turns = got["turns"][sid]
        if stream is None or stream.status != 200:
            assert all(t["status"] in ("done", "failed") for t in turns), turns
            continue
        (turn,) = turns  # answered 200: stored, and finished one way or the other
        assert turn["status"] in ("done", "failed"), turn
        assert turn["status"] == "done" or turn["error"], turn
    assert got["integrity"] == ("ok",)
    assert got["pending"] == (0,)
    sent = got["sent"]
    print(f"\n{moment}: " + json.dumps([[s.status, s.events] if s else None for _, s in sent]))
