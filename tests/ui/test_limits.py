"""The token and the size of a request are checked before its body is read: an
unauthenticated or oversized upload is refused having read (next to) nothing of it."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.testclient import TestClient
from switchboard.ui.limits import FORM_SLACK, BodyGuard

LIMIT = 1_000_000


@pytest.fixture
def app_and_log():
    app = FastAPI()
    ran: list[int] = []

    @app.post("/api/upload")
    async def upload(file: UploadFile = File(...)) -> dict[str, int]:
        ran.append(len(await file.read()))
        return {"size": ran[-1]}

    app.add_middleware(BodyGuard, allowed=lambda h: h == "Bearer good", limit=LIMIT)
    return app, ran


class Body:
    """A chunked request body that counts how much of it was read."""

    def __init__(self, chunks: int, size: int = 64 * 1024, head: bytes = b"") -> None:
        self.chunks, self.size, self.sent, self.head = chunks, size, 0, head

    def __iter__(self):
        if self.head:
            yield self.head
        for _ in range(self.chunks):
            self.sent += self.size
            yield b"x" * self.size


def test_no_token_is_refused_before_the_body(app_and_log):
    app, ran = app_and_log
    with TestClient(app) as c:
        body = Body(200)  # 13 MB
        r = c.post("/api/upload", content=body, headers={"content-type": "application/x"})
        assert r.status_code == 401 and r.json()["detail"] == "a bearer token is required"
        assert body.sent <= 64 * 1024 and not ran
        r = c.post("/api/upload", content=b"x", headers={"authorization": "Bearer bad"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid token"


def test_an_upload_over_the_limit_is_cut_off(app_and_log):
    app, ran = app_and_log
    good = {"authorization": "Bearer good"}
    with TestClient(app) as c:
        # Said in Content-Length: refused before a byte is read.
        r = c.post(
            "/api/upload", headers=good, files={"file": ("a.bin", b"x" * (LIMIT + FORM_SLACK + 1))}
        )
        assert r.status_code == 413 and "over 1.0 MB" in r.json()["detail"] and not ran
        r = c.post("/api/upload", headers=good, files={"file": ("a.bin", b"x" * 1000)})
        assert r.status_code == 200 and ran == [1000]


def test_a_chunked_upload_is_cut_off_past_the_limit_over_a_real_socket(app_and_log, serving):
    """With no Content-Length the body is counted as it arrives and the request answered 413
    once past the limit: the client is stopped long before it has sent all of its 52 MB."""
    import httpx

    app, ran = app_and_log
    with serving(app) as port:
        head = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )  # a well-formed form
        body = Body(800, head=head)  # 52 MB
        headers = {"authorization": "Bearer good",
                   "content-type": "multipart/form-data; boundary=b"}  # fmt: skip
        try:
            r = httpx.post(
                f"http://127.0.0.1:{port}/api/upload", content=body, headers=headers, timeout=30
            )
            assert r.status_code == 413
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server closed the connection on the rest of the body: also a refusal
        assert body.sent < 20_000_000 and not ran


def test_the_rate_limit_refills_evenly_and_says_when_to_come_back():
    from fastapi import HTTPException
    from switchboard.ui.limits import RateLimit

    rate = RateLimit(per_minute=60, burst=2)  # one a second, two at once
    rate.take("a", now=0.0)
    rate.take("a", now=0.0)
    with pytest.raises(HTTPException) as refused:
        rate.take("a", now=0.2)
    assert refused.value.status_code == 429 and refused.value.headers["Retry-After"] == "1"
    rate.take("b", now=0.2)  # another client has its own bucket
    rate.take("a", now=1.3)  # a second later one is back


def _server(tmp_path, monkeypatch, **env: str):
    from switchboard.agent import Agent
    from switchboard.agent.graph import Step
    from switchboard.core import Registry
    from switchboard.core.config import get_settings
    from switchboard.specialists import BUILTINS
    from switchboard.ui.server import create_app

    class Words:
        def step(self, messages, *a, **kw):
            return Step(text="Hello.")

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    try:
        agent = Agent.load(home=tmp_path, policy=Words(), registry=Registry(BUILTINS))
        return TestClient(create_app(agent, tokens=["t1", "t2"]))
    finally:
        get_settings.cache_clear()


def test_turns_past_a_clients_rate_get_429_with_retry_after(tmp_path, monkeypatch):
    c = _server(tmp_path, monkeypatch, SWITCHBOARD_RATE_PER_MINUTE="3")
    one, two = {"Authorization": "Bearer t1"}, {"Authorization": "Bearer t2"}
    sid = c.post("/api/sessions", headers=one).json()["id"]
    url = f"/api/sessions/{sid}/messages"
    assert [c.post(url, headers=one, data={"text": "hi"}).status_code for _ in range(2)] == [
        200,
        200,
    ]
    r = c.post(url, headers=one, data={"text": "hi"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "Too many requests" in r.json()["detail"]
    assert len(c.get(f"/api/sessions/{sid}", headers=one).json()["turns"]) == 2  # none stored
    assert c.get("/api/sessions", headers=one).status_code == 200  # reading is not metered
    assert c.post("/api/sessions", headers=two).status_code == 201  # the other client's own


def test_sessions_past_the_quota_are_refused_and_the_list_is_paged(tmp_path, monkeypatch):
    c = _server(tmp_path, monkeypatch, SWITCHBOARD_MAX_SESSIONS="5")
    one = {"Authorization": "Bearer t1"}
    made = [c.post("/api/sessions", headers=one).json()["id"] for _ in range(5)]
    r = c.post("/api/sessions", headers=one)
    assert r.status_code == 429 and "delete some" in r.json()["detail"]
    first = c.get("/api/sessions", headers=one, params={"limit": 2})
    assert first.headers["x-total-count"] == "5" and len(first.json()) == 2
    seen = [s["id"] for s in first.json()]
    nxt = first.headers["link"]
    while nxt:
        url = nxt.split(">")[0].lstrip("<")
        page = c.get(url, headers=one)
        seen += [s["id"] for s in page.json()]
        nxt = page.headers.get("link")
    assert sorted(seen) == sorted(made) and len(seen) == 5  # every session once
    bad = c.get("/api/sessions", headers=one, params={"limit": 0})
    assert bad.status_code == 422 and bad.json()["detail"] == "The limit is not valid."
    huge = c.get("/api/sessions", headers=one, params={"offset": 2**63})  # found by the fuzz
    assert huge.status_code == 422
    c.delete(f"/api/sessions/{made[0]}", headers=one)
    assert c.post("/api/sessions", headers=one).status_code == 201  # room again


def test_a_stream_whose_client_leaves_while_it_waits_is_cancelled(tmp_path, monkeypatch, serving):
    """With SWITCHBOARD_ON_DISCONNECT=cancel, over a real socket: a streamed request waiting
    behind a running turn, whose client closes the connection, never runs and is stored
    failed ("cancelled"); the running turn is not disturbed."""
    import threading
    import time

    import httpx
    from switchboard.agent import Agent
    from switchboard.agent.graph import Step
    from switchboard.core import Registry
    from switchboard.core.config import get_settings
    from switchboard.specialists import BUILTINS
    from switchboard.ui.auth import owner_id as _owner
    from switchboard.ui.server import create_app

    asked: list[str] = []

    class Slow:
        def step(self, messages, *a, **kw):
            asked.append(messages[-1]["content"])
            time.sleep(3.0)
            return Step(text="Done waiting.")

    monkeypatch.setenv("SWITCHBOARD_ON_DISCONNECT", "cancel")
    get_settings.cache_clear()
    try:
        agent = Agent.load(home=tmp_path, policy=Slow(), registry=Registry(BUILTINS))
        app = create_app(agent, tokens=["t"])
    finally:
        get_settings.cache_clear()
    with serving(app) as port:
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer t"}
        sid = httpx.post(f"{base}/api/sessions", headers=auth).json()["id"]
        url = f"{base}/api/sessions/{sid}/messages"
        first: list[httpx.Response] = []
        runner = threading.Thread(
            target=lambda: first.append(
                httpx.post(url, headers=auth, data={"text": "first"}, timeout=30)
            )
        )
        runner.start()
        while not asked:  # the first turn holds the server
            time.sleep(0.05)
        with httpx.stream(
            "POST", url + "/stream", headers=auth, data={"text": "second"}, timeout=30
        ) as r:
            assert r.status_code == 200  # accepted (stored) and waiting: then the client goes
        runner.join(30)
        assert first[0].status_code == 200 and first[0].json()["text"] == "Done waiting."
        deadline = time.monotonic() + 20
        while agent.store.pending_turns():
            assert time.monotonic() < deadline, "the abandoned turn is still pending"
            time.sleep(0.1)
        turns = agent.history(sid, owner=_owner("t"))
        assert [t["status"] for t in turns] == ["done", "failed"]
        assert turns[1]["error"] == "cancelled" and asked == ["first"]  # never routed
