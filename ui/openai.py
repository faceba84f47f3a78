"""The agent behind an OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``
on the same server, so any client that speaks OpenAI's chat completions (the ``openai``
package, LangChain's ``ChatOpenAI``, LlamaIndex, Open WebUI) talks to Switchboard unchanged.

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<token or anything>")
    reply = client.chat.completions.create(model="switchboard", messages=[{"role": "user",
        "content": [{"type": "text", "text": "segment the red circle"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,…"}}]}])

**The request.** The last message is the turn: a ``user`` message of text and at most one
``image_url`` part — a ``data:`` URL of an image, or of a video (``data:video/mp4;base64,…``;
a ``video_url`` part is taken too), or a link to one of this server's own artifacts
(``…/api/artifacts/<sha256>``). The server fetches nothing: any other URL is refused. Sampling
parameters (``temperature``, ``max_tokens``, …) are accepted and ignored (the router decodes
greedily under its grammar); ``tools`` and ``n`` > 1 are refused. A ``region`` extension field
points into the image as the native API's ``region`` does.

**Sessions.** A conversation is one session, found in this order: the ``X-Switchboard-Session``
header (a session id, as every reply gives it); the ``user`` field (a name this owner keeps the
conversation under); else the conversation itself — a client that resends the whole
conversation each time continues the session whose messages it resends (a hash of them, kept
when the reply is sent). Earlier messages are not re-run: the session has them; a new session
started from a client's history takes the newest image of that history.

**The reply.** The agent's text, then each file the turn made as a markdown link to its artifact
(``![mask 1](…)``; signed with the caller's token, so a chat client shows it without a header).
The turn itself — session, calls, boxes, tracks, artifacts — is in the ``switchboard``
extension field of the completion (and of the last chunk of a stream); a stream's other chunks
carry the agent's events (``route``, ``call_started``, ``call_finished``) in the same field, with
empty deltas. Errors are OpenAI's error objects (``{"error": {"message", "type", "param",
"code"}}``) with OpenAI's status codes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from switchboard.core.errors import InvalidInputError
from switchboard.core.media import decode_base64

from .auth import bearer

MODEL = "switchboard"
SESSION_HEADER = "X-Switchboard-Session"
EXTENSION = "switchboard"  # the extension field of completions and chunks
CREATED = int(time.time())  # when this server's model "was made" (for /v1/models)
_ARTIFACT = re.compile(r"/api/artifacts/([0-9a-f]{64})(?:\?[^)\s]*)?$")
_LINK = re.compile(r"\((?:https?://[^)\s]*)?/api/artifacts/([0-9a-f]{64})[^)\s]*\)")
# Names of what a turn made, as its reply's markdown says them.
_NAMES = {"mask": "mask", "edited": "edited image", "generated": "generated image",
          "results": "boxes and tracks (JSON)"}  # fmt: skip
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 503: "server_error"}  # fmt: skip
_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 503: "server_busy"}


class OpenAIError(HTTPException):
    """A refusal as OpenAI writes it: status, sentence, and the error's ``param``/``code``."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(status, message)
        self.param, self.code = param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None):
    """OpenAI's error object for a refusal with ``status``."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param,
                      "code": code or _CODES.get(status)}}  # fmt: skip


def error_response(exc: HTTPException) -> JSONResponse:
    """An HTTPException raised on a ``/v1`` route as OpenAI's error object (its headers kept:
    ``WWW-Authenticate``, ``Retry-After``)."""
    status = 400 if exc.status_code in (415, 422) else exc.status_code
    body = error_body(status, str(exc.detail), getattr(exc, "param", None),
                      getattr(exc, "code", None))  # fmt: skip
    return JSONResponse(body, status_code=status, headers=getattr(exc, "headers", None))


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions``: OpenAI's fields that matter here; any other field
    (``temperature``, ``max_tokens``, ``stream_options``, …) is accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=1000)
    stream: bool = False
    user: str | None = Field(None, max_length=256, description="the conversation's name")
    n: int | None = None
    tools: list[Any] | None = None
    region: Any = Field(None, description="extension: a drawn region, as the native API's")


class _Said:
    """One message as this route reads it: role, text, and its media parts' URLs."""

    def __init__(self, message: Any, index: int) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise OpenAIError(400, f"Message {index} has no role.", f"messages[{index}]")
        self.role, self.media = message["role"], []
        content = message.get("content")
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                where = f"messages[{index}].content[{j}]"
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind in ("image_url", "video_url"):
                    url = part.get(kind)
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str) or not url:
                        raise OpenAIError(400, f"Part {j} of message {index} has no URL.", where)
                    self.media.append(url)
                else:
                    raise OpenAIError(
                        400,
                        f"Part {j} of message {index} is not a text, image_url or video_url part.",
                        where,
                    )
        elif content is not None:
            raise OpenAIError(
                400, f"Message {index}'s content is not text or parts.", f"messages[{index}]"
            )
        self.text = "\n".join(texts)

    def digest(self) -> str:
        """What identifies this message in a conversation: its role, its words (spacing and
        the host of artifact links aside) and its media (data URLs by a hash, artifacts by
        theirs)."""
        words = " ".join(_LINK.sub(r"(\1)", self.text).split())
        media = [_ARTIFACT.search(u).group(1) if _ARTIFACT.search(u) else _sha(u)
                 for u in self.media]  # fmt: skip
        return _sha(json.dumps([self.role, words, media]))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def conversation_key(said: list[_Said]) -> str:
    """The key a conversation's session is kept under: its user and assistant messages in
    order (system prompts aside: a client may change them without starting over)."""
    kept = [m.digest() for m in said if m.role in ("user", "assistant")]
    return "conversation:" + _sha(json.dumps(kept))


def openai_routes(ctx: Any) -> APIRouter:
    """``/v1/models`` and ``/v1/chat/completions`` over the server's agent (``ctx``: the
    native routes' :class:`~switchboard.ui.server._Server`)."""
    from .server import (
        MAX_TEXT,
        _turn_json,
        accept_turn,
        start_turn,
        strict_json,
        turn_events,
    )

    router = APIRouter(prefix="/v1", tags=["openai"])
    owner, metered = ctx.owner, ctx.metered

    def model_card() -> dict[str, Any]:
        return {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "switchboard"}

    @router.get("/models")
    def models(who: str | None = Depends(owner)) -> dict[str, Any]:
        """The one model: the agent (its router and every registered specialist)."""
        return {"object": "list", "data": [model_card()]}

    @router.get("/models/{model}")
    def model(model: str, who: str | None = Depends(owner)) -> dict[str, Any]:
        if model != MODEL:
            raise OpenAIError(404, f"The model {model!r} does not exist.", "model",
                              "model_not_found")  # fmt: skip
        return model_card()

    @router.post("/chat/completions")
    async def chat_completions(
        body: ChatRequest, request: Request, who: str | None = Depends(metered)
    ) -> Any:
        """A turn of the conversation; ``stream: true`` sends it as OpenAI's SSE chunks."""
        if body.model != MODEL:
            raise OpenAIError(
                404,
                f"The model {body.model!r} does not exist; this server has {MODEL!r}.",
                "model",
                "model_not_found",
            )
        if body.n not in (None, 1):
            raise OpenAIError(400, "Only one choice per request (n = 1).", "n")
        if body.tools:
            raise OpenAIError(
                400,
                "This model calls its own specialists; it takes no tools from the request.",
                "tools",
            )
        said = [_Said(m, i) for i, m in enumerate(body.messages)]
        last = said[-1]
        if last.role != "user":
            raise OpenAIError(400, "The last message must be the user's.", "messages")
        if not last.text.strip():
            raise OpenAIError(400, "The last message has no text.", "messages")
        if len(last.text) > MAX_TEXT:
            raise OpenAIError(
                400,
                f"Your message is {len(last.text)} characters long; the limit is {MAX_TEXT}.",
                "messages",
            )
        if len(last.media) > 1:
            raise OpenAIError(400, "Send at most one image or video per message.", "messages")
        token = bearer(request.headers.get("authorization"))
        ctx.queue.enter()
        try:
            session, new = _session(ctx, request, body, said, who)
            url = last.media[0] if last.media else None
            if url is None and new:  # a history sent to a new session: its newest media
                url = next((m.media[-1] for m in reversed(said) if m.media), None)
            kw = {} if url is None else await _media(ctx, request, url, who)
            kw["region"] = body.region
            accepted = await accept_turn(ctx, last.text, session, who, kw)
        except BaseException:
            ctx.queue.leave()
            raise
        ident = f"chatcmpl-{accepted.turn_id}-{secrets.token_hex(6)}"
        created = int(time.time())

        def finished(turn: dict[str, Any]) -> tuple[str, dict[str, Any]]:
            """The reply's content and extension; the conversation with it is kept under its
            key (the client's next request resends it)."""
            content, extension = _reply(ctx, request, turn, token)
            answer = _Said({"role": "assistant", "content": content}, len(said))
            ctx.agent.store.keep_session(conversation_key([*said, answer]), session, who)
            return content, extension

        def chunk(delta: dict[str, Any], extension: Any = None, finish: str | None = None):
            out = {"id": ident, "object": "chat.completion.chunk", "created": created,
                   "model": MODEL,
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
            if extension is not None:
                out[EXTENSION] = extension
            return f"data: {strict_json(out)}\n\n"

        if body.stream:
            started = start_turn(ctx, accepted, who)

            async def stream() -> Any:
                yield chunk({"role": "assistant", "content": ""}, {"session": session})
                async with aclosing(turn_events(ctx, accepted, started)) as events:
                    async for event in events:
                        if event is None:
                            yield ": waiting\n\n"
                        elif event["type"] == "turn":
                            content, extension = await asyncio.to_thread(finished, event["turn"])
                            yield chunk({"content": content})
                            yield chunk({}, extension, "stop")
                        elif event["type"] == "error":
                            failed = error_body(500, event["detail"])
                            yield f"data: {strict_json(failed)}\n\n"
                        elif event["type"] != "text":  # the text comes with the reply
                            yield chunk({}, {"event": event})
                yield "data: [DONE]\n\n"

            return StreamingResponse(
                stream(), media_type="text/event-stream", headers={SESSION_HEADER: session}
            )

        def run() -> dict[str, Any]:
            try:
                return _turn_json(ctx.agent, ctx.agent.run(accepted), who)  # waits for a slot
            finally:
                ctx.queue.leave()

        content, extension = await asyncio.to_thread(lambda: finished(run()))
        completion = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            EXTENSION: extension,
        }
        return JSONResponse(json.loads(strict_json(completion)), headers={SESSION_HEADER: session})

    return router


def _session(
    ctx: Any, request: Request, body: ChatRequest, said: list[_Said], who: str | None
) -> tuple[str, bool]:
    """The conversation's session and whether it is new (header, ``user``, the messages so
    far; a new one past the owner's quota of sessions is refused with 429)."""
    store = ctx.agent.store
    named = request.headers.get(SESSION_HEADER)
    if named:
        try:
            store.check_session(named, owner=who)
        except KeyError:
            raise OpenAIError(
                404, f"There is no session {named[:64]!r}.", SESSION_HEADER, "session_not_found"
            ) from None
        return named, False
    key = f"user:{body.user}" if body.user else conversation_key(said[:-1])
    found = store.keyed_session(key, owner=who) if (body.user or len(said) > 1) else None
    if found is not None:
        return found, False
    session = ctx.new_session(who)  # 429 past the owner's quota
    if body.user:  # kept at once: the same user's next request finds it even mid-turn
        kept = store.keep_session(key, session, owner=who)
        if kept != session:  # another request made this user's session first
            store.delete_session(session, owner=who)
            return kept, False
    return session, True


async def _media(ctx: Any, request: Request, url: str, who: str | None) -> dict[str, Any]:
    """The chat keyword of an image or video URL: a ``data:`` URL decoded, or this server's
    own artifact read from the store; anything else refused (the server fetches nothing)."""
    from .server import media_input

    if url.startswith("data:"):
        try:
            kind, data = decode_base64(url, "The image's data URL")
        except InvalidInputError as exc:
            raise OpenAIError(400, str(exc) + ".", "messages", "invalid_image_url") from None
        kind = kind or ""
        return await media_input(ctx, "The image", kind, data)
    parts = urlsplit(url)
    own = not parts.netloc or parts.netloc == request.url.netloc
    found = _ARTIFACT.search(parts.path) if own and parts.scheme in ("", "http", "https") else None
    if found is None:
        raise OpenAIError(
            400,
            "This server fetches no URLs: send the image as a data URL "
            "(data:image/png;base64,…) or link one of this server's own artifacts.",
            "messages",
            "remote_url_not_supported",
        )
    try:
        data, kind = await asyncio.to_thread(ctx.agent.store.artifact, found.group(1), who)
    except KeyError:
        raise OpenAIError(
            400, "The linked artifact is not one of yours on this server.", "messages",
            "invalid_image_url",
        ) from None  # fmt: skip
    return await media_input(ctx, "The linked artifact", kind, data)


def _reply(
    ctx: Any, request: Request, turn: dict[str, Any], token: str | None
) -> tuple[str, dict[str, Any]]:
    """A finished turn (the native reply's JSON) as the completion's content — the text, then
    a markdown link per file the turn made — and its extension field."""
    base = str(request.base_url).rstrip("/")
    made = next((m for m in reversed(turn["messages"]) if m["role"] == "assistant"), None)
    links, files = [], []
    counts: dict[str, int] = {}
    for a in (made or {}).get("artifacts", []):
        url = f"{base}/api/artifacts/{a['sha256']}"
        if token and ctx.owners:
            url += f"?sig={ctx.owners.sign(token, a['sha256'])}"
        files.append({**a, "url": url})
        kind = a["kind"]
        counts[kind] = counts.get(kind, 0) + 1
        name = _NAMES.get(kind, kind)
        if a["media_type"].startswith("video/"):
            name = "edited video" if kind == "edited" else kind
        if a["media_type"].startswith("image/"):
            links.append(f"![{name} {counts[kind]}]({url})")
        else:
            links.append(f"[{name}]({url})")
    content = turn["text"] + ("\n\n" + "\n".join(links) if links else "")
    extension = {k: turn[k] for k in ("session", "turn", "outcome", "calls", "boxes", "tracks")}
    extension.update(artifacts=files, current=turn.get("current"))
    return content, extension
