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
        r = c.post("/api/upload", headers=good,
                   files={"file": ("a.bin", b"x" * (LIMIT + FORM_SLACK + 1))})  # fmt: skip
        assert r.status_code == 413 and "over 1.0 MB" in r.json()["detail"] and not ran
        r = c.post("/api/upload", headers=good, files={"file": ("a.bin", b"x" * 1000)})
        assert r.status_code == 200 and ran == [1000]


def test_a_chunked_upload_is_cut_off_past_the_limit_over_a_real_socket(app_and_log):
    """With no Content-Length the body is counted as it arrives and the request answered 413
    once past the limit: the client is stopped long before it has sent all of its 52 MB."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    app, ran = app_and_log
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.05)
        head = (
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n"
        )  # a well-formed form
        body = Body(800, head=head)  # 52 MB
        headers = {"authorization": "Bearer good",
                   "content-type": "multipart/form-data; boundary=b"}  # fmt: skip
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/api/upload", content=body, headers=headers,
                           timeout=30)  # fmt: skip
            assert r.status_code == 413
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server closed the connection on the rest of the body: also a refusal
        assert body.sent < 20_000_000 and not ran
    finally:
        server.should_exit = True
        thread.join(10)
