"""The token and the size of a request, checked before its body is read; and how many
requests that cost a turn or a session one client may make (:class:`RateLimit`).

FastAPI reads a request's whole body (spooling uploads to disk) before it runs the route's
dependencies, so a bearer-token check written as a dependency answers 401 only after an
unauthenticated client has sent everything it wanted to (``switchboard bench``'s hardening
section times it), and an upload over the limit is refused only once it has been stored. This ASGI
middleware runs first: a request that carries a body to ``/api/`` is refused at once without a
valid token (401) or with a ``Content-Length`` over the limit (413), and a body sent without
one (chunked) is cut off with 413 as soon as it passes the limit.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

Scope = dict[str, Any]
Message = dict[str, Any]

# What a multipart form adds around the file (the boundary lines, the text and region fields).
FORM_SLACK = 256 * 1024
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# A refused body is not drained: the connection is closed after the answer, so the client
# stops sending.
_CLOSE = [(b"connection", b"close")]


class BodyGuard:
    """ASGI middleware: ``allowed(authorization header or None)`` says whether a token is
    good; ``limit`` is the largest upload in bytes (bodies may carry ``slack`` more: by
    default :data:`FORM_SLACK`); ``error(status, sentence)`` is the JSON of a refusal
    (``{"detail": sentence}`` by default)."""

    def __init__(
        self,
        app: Any,
        allowed: Callable[[str | None], bool],
        limit: int,
        prefix: str = "/api/",
        slack: int = FORM_SLACK,
        error: Callable[[int, str], dict[str, Any]] | None = None,
    ) -> None:
        self.app, self.allowed, self.prefix = app, allowed, prefix
        self.limit, self.most = limit, limit + slack
        self.error = error or (lambda _status, said: {"detail": said})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        if not self.allowed(auth):
            said = "invalid token" if auth else "a bearer token is required"
            await send_refusal(send, self.error(401, said), 401, [(b"www-authenticate", b"Bearer")])
            return
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.most:
            await send_refusal(send, self.error(413, self._too_big()), 413, _CLOSE)
            return
        state = {"read": 0, "refused": False}

        async def counted() -> Message:
            if state["refused"]:  # the rest of the body is never read
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.most and not state["refused"]:
                    state["refused"] = True
                    await send_refusal(send, self.error(413, self._too_big()), 413, _CLOSE)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not state["refused"]:  # the 413 went out: the app's own answer has nowhere to go
                await send(message)

        await self.app(scope, counted, guarded)

    def _too_big(self) -> str:
        mb = self.limit / 1e6
        return f"The upload is over {mb:.1f} MB, the largest upload this server takes."


async def send_refusal(
    send: Any, said: dict[str, Any], status: int, extra: list[tuple[bytes, bytes]] = ()
) -> None:  # type: ignore[assignment]
    """Answer an ASGI request at once with ``status`` and the JSON ``said``."""
    body = json.dumps(said).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *extra]  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimit:
    """Requests that cost a turn or a session, per client (its token's owner, else its
    address): a token bucket of ``per_minute`` refilled evenly, holding at most ``burst`` (a
    minute's worth by default).
    Past it :meth:`take` raises a 429 with ``Retry-After`` (whole seconds until one is back)."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self.buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, when)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, when = self.buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - when) * self.rate)
            if tokens < 1.0:
                wait = math.ceil((1.0 - tokens) / self.rate)
                self.buckets[key] = (tokens, now)
                raise HTTPException(
                    429,
                    f"Too many requests: this server takes "
                    f"{round(self.rate * 60)} a minute from each client; "
                    f"try again in {wait} s.",
                    {"Retry-After": str(wait)},
                )
            self.buckets[key] = (tokens - 1.0, now)
            if len(self.buckets) > 10_000:  # forget the clients whose buckets are full again
                full = [
                    k
                    for k, (t, w) in self.buckets.items()
                    if t + (now - w) * self.rate >= self.burst
                ]
                for k in full:
                    del self.buckets[k]
