"""The HTTP API over the agent (FastAPI): sessions, messages (JSON reply or an SSE stream of the
agent's events), artifacts, specialists, health — and the page that chats over it (``/``, static
files in ``ui/static``). OpenAPI at ``/openapi.json``.

    switchboard serve            # the embedded default agent on http://127.0.0.1:8000

Auth: with ``SWITCHBOARD_API_TOKEN`` set (one token, or several separated by commas), every
``/api`` route needs ``Authorization: Bearer <token>`` (401 otherwise), and each token sees only
its own sessions and artifacts — someone else's id answers 404, as a made-up one does. Uploads:
images (PNG, JPEG, WebP, GIF, BMP) and videos (MP4, GIF, WebM, AVI, MOV) up to
``SWITCHBOARD_MAX_UPLOAD_BYTES`` (413 past it, 415 for any other type, 422 for a malformed body).

Refusals are sentences about the request (``{"detail": "Your message is 4200 characters long;
the limit is 4000."}``), never the request echoed back or a Python repr.

Turns run one at a time per server process (the specialists' models are shared); requests wait
for their turn in a worker thread, so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Query,
    Request,
    Security,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from switchboard.agent.store import TITLE_CHARS, NotFoundError, SessionBusyError
from switchboard.core.calls import ToolSpec
from switchboard.core.errors import InvalidInputError, SwitchboardError
from switchboard.core.media import VIDEO_MEDIA_TYPES, UnreadableImageError, decode_image
from switchboard.core.wire import (
    Health,
    Moved,
    NewSession,
    SessionDetail,
    SessionSummary,
    TurnReply,
)

from .auth import BEARER, Tokens
from .limits import FORM_SLACK, BodyGuard, RateLimit

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp"}
VIDEO_TYPES = set(VIDEO_MEDIA_TYPES)
STATIC = Path(__file__).parent / "static"
MAX_TEXT = 4000  # characters in one message
# A stream waiting for its turn (or a long call) sends an SSE comment this often: proxies keep
# it open, and a client that has gone is noticed (sending to it fails) while it waits.
KEEPALIVE_S = 2.0
FIELDS = {"text": "Your message", "title": "The session title", "region": "The drawn region",
          "file": "The attached file"}  # fmt: skip


class Rename(BaseModel):
    title: str


def _sentence(err: dict[str, Any]) -> str:
    """One validation error as a sentence about the request (its input is never repeated)."""
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = loc[-1] if loc else ""
    what = FIELDS.get(field, f"The {field.replace('_', ' ')}" if field else "The request")
    kind, ctx, given = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    if field == "text" and (kind == "missing" or kind == "string_too_short"):
        return "Your message is empty."
    if kind == "missing":
        return f"{what} is missing."
    if kind == "string_too_short":
        return f"{what} is empty."
    if kind == "string_too_long":
        size = f"{len(given)} characters long" if isinstance(given, str) else "too long"
        limit = ctx.get("max_length")
        if field == "text":
            return f"Your message is {size}; the limit is {limit}."
        return f"{what} is {size}; the limit is {limit} characters."
    if kind in ("json_invalid", "model_attributes_type", "dict_type"):
        return "The request body is not the JSON object this route expects."
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{what} has the wrong type."
    return f"{what} is not valid."


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def create_app(
    agent: Any,
    tokens: list[str] | None = None,
    max_upload_bytes: int | None = None,
) -> FastAPI:
    """The API over ``agent`` (an :class:`~switchboard.agent.sdk.Agent`): the page, then one
    router per resource (health and specialists, sessions, messages, artifacts)."""
    from .openai import error_body, openai_routes

    ctx = _Server.build(agent, tokens, max_upload_bytes)
    app = FastAPI(title="Switchboard", version="0.1", summary="An agent that sees and edits pixels")
    # The token and the body's size before the body is read (FastAPI reads it all first);
    # /v1 carries media as base64 in JSON (a third more) and answers as OpenAI does.
    app.add_middleware(BodyGuard, limit=ctx.limit, allowed=ctx.owners.header_ok)
    app.add_middleware(
        BodyGuard,
        limit=ctx.limit,
        allowed=ctx.owners.header_ok,
        prefix="/v1/",
        slack=ctx.limit // 3 + FORM_SLACK,
        error=lambda status, said: error_body(status, said),
    )
    _error_handlers(app)
    _page(app)
    for router in (
        _meta_routes(ctx),
        _session_routes(ctx),
        _message_routes(ctx),
        _artifact_routes(ctx),
        openai_routes(ctx),
    ):
        app.include_router(router)
    return app


@dataclass
class _Server:
    """What the routes share: the agent, the settings, the tokens, the limits, and the two
    dependencies that say who a request is (``owner``) and, for requests that cost a turn or
    a session, count it against the client's rate (``metered``)."""

    agent: Any
    settings: Any
    owners: Tokens
    limit: int  # bytes of one upload
    queue: _Admission
    rate: RateLimit
    uploads: Path
    owner: Callable[..., str | None] = field(init=False)
    metered: Callable[..., str | None] = field(init=False)

    @classmethod
    def build(cls, agent: Any, tokens: list[str] | None, max_upload_bytes: int | None) -> _Server:
        from switchboard.core.config import get_settings

        settings = get_settings()
        if tokens is None:
            raw = settings.api_token or ""
            tokens = [t.strip() for t in raw.split(",") if t.strip()]
        # Uploaded videos wait here (the decoder reads files) until the request is accepted;
        # what a killed process left behind is swept at start.
        root = agent.store.files.root  # None: the artifacts live in the database
        uploads = (Path(root).parent if root else settings.home) / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        sweep_uploads(uploads)
        return cls(
            agent,
            settings,
            Tokens(tokens),
            max_upload_bytes or settings.max_upload_bytes,
            _Admission(settings.max_queued_turns),
            RateLimit(settings.rate_per_minute),
            uploads,
        )

    def __post_init__(self) -> None:
        owners, rate = self.owners, self.rate

        def owner(
            credentials: HTTPAuthorizationCredentials | None = Security(BEARER),
        ) -> str | None:
            return owners.require(credentials)

        def metered(request: Request, who: str | None = Depends(owner)) -> str | None:
            """The owner, once a request that costs a turn or a session is within the
            client's rate (429 with Retry-After past it)."""
            rate.take(who or f"ip:{request.client.host if request.client else '?'}")
            return who

        self.owner, self.metered = owner, metered

    def new_session(self, who: str | None) -> str:
        """A new session of ``who``; :class:`QuotaError` (429) past the client's quota of
        sessions (``SWITCHBOARD_MAX_SESSIONS``)."""
        most = self.settings.max_sessions
        if self.agent.store.count_sessions(owner=who) >= most:
            raise QuotaError(
                429,
                f"You have {most} sessions, the most this server keeps "
                "for one user; delete some to start another.",
            )
        return self.agent.store.create_session(owner=who)


class QuotaError(HTTPException):
    """429: the client has as many sessions as the server keeps for one (``code``: how the
    OpenAI-compatible routes name it)."""

    code = "too_many_sessions"


def _error_handlers(app: FastAPI) -> None:
    """Refusals as sentences: ``{"detail": …}`` on the native routes, OpenAI's error object
    on ``/v1`` (:mod:`.openai`)."""
    from fastapi.exception_handlers import http_exception_handler

    from .openai import error_body, error_response

    def openai(request: Request) -> bool:
        return request.url.path.startswith("/v1/")

    @app.exception_handler(HTTPException)
    async def _refused(request: Request, exc: HTTPException) -> Response:
        if openai(request):
            return error_response(exc)
        return await http_exception_handler(request, exc)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return await _refused(request, HTTPException(404, "not found"))

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> Response:
        return await _refused(request, HTTPException(422, str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _unreadable(request: Request, exc: RequestValidationError) -> Response:
        """422 as sentences, one per field ("Your message is 4200 characters long; the limit
        is 4000."): FastAPI's default repeats the whole input as JSON."""
        said: list[str] = []
        for err in exc.errors():
            if (line := _sentence(err)) not in said:
                said.append(line)
        return await _refused(request, HTTPException(422, " ".join(said)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        """A bug: a sentence, never a traceback (logged by the server as ever)."""
        said = "Something went wrong on the server; the request was not finished."
        if openai(request):
            return JSONResponse(error_body(500, said), status_code=500)
        return JSONResponse({"detail": said}, status_code=500)


def _page(app: FastAPI) -> None:
    """The chat page and its files (no token: the page asks for one)."""

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        cache = {"Cache-Control": "public, max-age=86400"}
        return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon", headers=cache)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _meta_routes(ctx: _Server) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["server"])
    owner = ctx.owner

    @router.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Open to all (no token): whether tokens are required, and the specialists."""
        return {
            "status": "ok",
            "auth": bool(ctx.owners),
            "tools": ctx.agent.registry.names(),
            "recovering": ctx.agent.recovering,
            "loaded": ctx.agent.registry.loaded(),
            "max_text": MAX_TEXT,
            "max_upload_bytes": ctx.limit,
            "calls": getattr(ctx.agent.policy, "calls", "text"),
        }

    @router.get("/specialists", response_model=list[ToolSpec])
    def specialists(who: str | None = Depends(owner)) -> list[ToolSpec]:
        return ctx.agent.registry.specs()

    return router


def _session_routes(ctx: _Server) -> APIRouter:
    """The session routes: create, list, read, undo, redo, rename, delete."""
    # Long on purpose: a collection of short route functions that share ``ctx``; FastAPI
    # registers each where it is defined, so the list reads as the API it makes.
    router = APIRouter(prefix="/api/sessions", tags=["sessions"])
    owner, metered = ctx.owner, ctx.metered

    @router.post("", status_code=201, response_model=NewSession)
    def new_session(who: str | None = Depends(metered)) -> dict[str, str]:
        """A new session; 429 past the client's quota of sessions (``SWITCHBOARD_MAX_SESSIONS``)."""
        return {"id": ctx.new_session(who)}

    @router.get("", response_model=list[SessionSummary])
    def list_sessions(
        request: Request,
        response: Response,
        limit: int = Query(100, ge=1, le=500),
        offset: int = Query(0, ge=0, le=10**9),
        who: str | None = Depends(owner),
    ) -> list[dict[str, Any]]:
        """The sessions, newest activity first, ``limit`` from ``offset``; the total is in
        ``X-Total-Count`` and the next page's URL in ``Link: <…>; rel="next"``."""
        total = ctx.agent.store.count_sessions(owner=who)
        response.headers["X-Total-Count"] = str(total)
        if offset + limit < total:
            nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
            response.headers["Link"] = f'<{nxt}>; rel="next"'
        return ctx.agent.store.sessions(owner=who, limit=limit, offset=offset)

    @router.get("/{session_id}", response_model=SessionDetail)
    def get_session(session_id: str, who: str | None = Depends(owner)) -> dict[str, Any]:
        return finite(
            {
                "id": session_id,
                "turns": ctx.agent.history(session_id, owner=who),
                "current": ctx.agent.current(session_id, owner=who),
            }
        )

    def _move(session_id: str, who: str | None, back: bool) -> dict[str, Any]:
        try:
            return (ctx.agent.undo if back else ctx.agent.redo)(session_id, owner=who)
        except SessionBusyError:
            raise HTTPException(
                409, "This session is still answering a request; undo when the reply has come."
            ) from None
        except InvalidInputError as exc:
            raise HTTPException(409, str(exc).capitalize() + ".") from None

    @router.post("/{session_id}/undo", response_model=Moved)
    def undo(session_id: str, who: str | None = Depends(metered)) -> dict[str, Any]:
        """Make the image before the current one current again: the current version, or 409
        with "There is nothing to undo."."""
        return {"current": _move(session_id, who, back=True)}

    @router.post("/{session_id}/redo", response_model=Moved)
    def redo(session_id: str, who: str | None = Depends(metered)) -> dict[str, Any]:
        """Make current again what the last undo left; 409 when there is nothing to redo."""
        return {"current": _move(session_id, who, back=False)}

    @router.patch("/{session_id}", response_model=SessionSummary)
    def rename_session(
        session_id: str,
        body: Rename,
        who: str | None = Depends(owner),
    ) -> dict[str, Any]:
        """Name a session: ``{"title": "…"}``, 1–120 characters (spaces trimmed)."""
        title = " ".join(body.title.split())
        if not title:
            raise HTTPException(422, "The session title is empty.")
        if len(title) > TITLE_CHARS:
            raise HTTPException(
                422,
                f"The session title is {len(title)} characters long; the limit is {TITLE_CHARS}.",
            )
        return ctx.agent.store.rename_session(session_id, title, owner=who)

    @router.delete("/{session_id}", status_code=204)
    def delete_session(session_id: str, who: str | None = Depends(owner)) -> Response:
        """Delete a session with its turns (204); 409 while one of its turns is running."""
        try:
            ctx.agent.store.delete_session(session_id, owner=who)
        except SessionBusyError:
            raise HTTPException(
                409, "This session is still answering a request; delete it when the reply has come."
            ) from None
        return Response(status_code=204)

    return router


def _message_routes(ctx: _Server) -> APIRouter:
    """``POST …/messages`` (the turn as JSON) and ``…/messages/stream`` (its events as SSE)."""
    # Long on purpose: the two routes share the request's parsing and the turn's admission,
    # written once here as nested functions over ``ctx``.
    router = APIRouter(prefix="/api/sessions/{session_id}", tags=["messages"])
    metered = ctx.metered

    @router.post("/messages", response_model=TurnReply)
    async def post_message(
        session_id: str,
        text: str = Form(..., min_length=1, max_length=MAX_TEXT),
        file: UploadFile | None = File(None),
        region: str | None = Form(None),
        who: str | None = Depends(metered),
    ) -> dict[str, Any]:
        ctx.queue.enter()
        try:
            kw = await _accept(ctx, session_id, text, file, region, who)
            accepted = await accept_turn(ctx, text, session_id, who, kw)
            turn = await asyncio.to_thread(ctx.agent.run, accepted)  # waits for a turn slot
        finally:
            ctx.queue.leave()
        return _turn_json(ctx.agent, turn, who)

    @router.post("/messages/stream")
    async def stream_message(
        session_id: str,
        text: str = Form(..., min_length=1, max_length=MAX_TEXT),
        file: UploadFile | None = File(None),
        region: str | None = Form(None),
        who: str | None = Depends(metered),
    ) -> StreamingResponse:
        """Server-sent events: ``route``, ``refused`` (an edit nobody asked for, not run),
        ``call_started``, ``call_finished``, ``text``, then
        ``turn`` (the same JSON as the plain POST) or ``error``."""
        ctx.queue.enter()
        try:
            kw = await _accept(ctx, session_id, text, file, region, who)
            # Before the 200: bad input is a plain 422.
            accepted = await accept_turn(ctx, text, session_id, who, kw)
        except BaseException:
            ctx.queue.leave()
            raise
        started = start_turn(ctx, accepted, who)

        async def body() -> Any:
            async with aclosing(turn_events(ctx, accepted, started)) as events:
                async for event in events:
                    if event is None:  # an SSE comment: a client that left fails to take it
                        yield ": waiting\n\n"
                    else:
                        yield f"event: {event['type']}\ndata: {strict_json(event)}\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    return router


async def accept_turn(
    ctx: _Server, text: str, session: str, who: str | None, kw: dict[str, Any]
) -> Any:
    """Check the request and store it as a pending turn (``Agent.accept``, on a thread) before
    any wait for a turn slot: an answered request survives our death. ``kw``: the chat
    keywords (media, region); an uploaded video's file is deleted after."""

    def accept() -> Any:
        try:
            return ctx.agent.accept(text, session=session, owner=who, **kw)
        finally:
            _cleanup(kw)

    return await asyncio.to_thread(accept)


def start_turn(ctx: _Server, accepted: Any, who: str | None) -> asyncio.Queue[Any]:
    """Run an accepted turn on a thread from now on; its events (``route``, ``call_started``,
    …, then ``turn`` with the reply's JSON or ``error``, then None) come on the queue returned
    (:func:`turn_events` reads it). The turn holds one of the server's admission places
    (``ctx.queue``), given back when it ends."""
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def put(event: dict[str, Any] | None) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    def run() -> None:
        try:
            turn = ctx.agent.run(accepted, on_event=put)  # waits for a turn slot
            put({"type": "turn", "turn": _turn_json(ctx.agent, turn, who)})
        except SwitchboardError as exc:
            put({"type": "error", "detail": str(exc)})
        except Exception:  # a bug: the turn is stored failed; say so in words
            said = "Something went wrong on the server; the request was not finished."
            put({"type": "error", "detail": said})
            raise
        finally:
            ctx.queue.leave()
            put(None)

    threading.Thread(target=run, daemon=True).start()
    return events


async def turn_events(
    ctx: _Server, accepted: Any, events: asyncio.Queue[Any]
) -> AsyncIterator[Any]:
    """A started turn's events (:func:`start_turn`) as they come, None every
    :data:`KEEPALIVE_S` while nothing does, ending with ``turn`` or ``error``. Closed before
    its end (the client went away), the turn is cancelled when
    ``SWITCHBOARD_ON_DISCONNECT=cancel``."""
    ended = False
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), KEEPALIVE_S)
            except TimeoutError:
                yield None
                continue
            if event is None:
                break
            ended = event["type"] in ("turn", "error")
            yield event
    finally:  # the client went away before the turn's end (the stream was cancelled)
        if not ended and ctx.settings.on_disconnect == "cancel":
            accepted.cancel.set()


def _artifact_routes(ctx: _Server) -> APIRouter:
    router = APIRouter(prefix="/api/artifacts", tags=["artifacts"])

    @router.get("/{sha256}")
    def artifact(
        sha256: str,
        sig: str | None = Query(
            None, pattern="^[0-9a-f]{1,64}$", description="a signed link's signature"
        ),
        credentials: HTTPAuthorizationCredentials | None = Security(BEARER),
    ) -> Response:
        """An artifact's bytes, for its owner's token — or for a link the server signed for it
        (``?sig=``: the links in ``/v1/chat/completions`` replies, which a chat client opens
        without a header)."""
        if sig is not None and credentials is None and ctx.owners:
            who = ctx.owners.link_owner(sha256, sig)
            if who is None:
                raise HTTPException(401, "This link is not valid (or its token was revoked).")
        else:
            who = ctx.owners.require(credentials)
        try:
            data, media_type = ctx.agent.store.artifact(sha256, owner=who)
        except (InvalidInputError, ValueError):
            raise HTTPException(404, "not found") from None
        cache = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(data, media_type=media_type, headers=cache)

    return router


async def _inputs(ctx: _Server, file: UploadFile | None) -> dict[str, Any]:
    if file is None:
        return {}
    name = Path(file.filename or "").name or "The attached file"
    kind = (file.content_type or "").split(";")[0].strip().lower()
    check_media_type(name, kind)
    data = await file.read(ctx.limit + 1)
    return await media_input(ctx, name, kind, data)


def check_media_type(name: str, kind: str) -> None:
    """415 unless ``kind`` is an image or video type the server takes."""
    if kind not in IMAGE_TYPES | VIDEO_TYPES:
        what = f"of type {kind}" if kind else "of no known type"
        raise HTTPException(
            415,
            f"{name} is {what}; send an image (PNG, JPEG, WebP, GIF or "
            "BMP) or a video (MP4, WebM, AVI, MOV or an animated "
            "GIF).",
        )


async def media_input(ctx: _Server, name: str, kind: str, data: bytes) -> dict[str, Any]:
    """The chat keyword of an upload's bytes (``name``: how the refusals call it; ``kind``:
    its media type): ``{"image": pixels}``, or ``{"video": path}`` of a file in the uploads
    folder (:func:`_cleanup` deletes it). 413 past the upload limit, 422 for bytes that are not
    what they say."""
    check_media_type(name, kind)
    if len(data) > ctx.limit:
        raise HTTPException(
            413, f"{name} is over {_mb(ctx.limit)}, the largest upload this server takes."
        )
    if kind in VIDEO_TYPES and (kind != "image/gif" or _is_animated(data)):
        return {"video": _video_file(data, VIDEO_MEDIA_TYPES[kind], ctx.uploads)}
    # Decoded here, where the file's name is known: a file that is not an image (or a
    # damaged one) is refused as such, before a turn is begun.
    try:
        pixels = await asyncio.to_thread(decode_image, data, convert=True)
    except UnreadableImageError:
        raise HTTPException(
            422, f"{name} is not an image I can read (it may be damaged or not an image)."
        ) from None
    except InvalidInputError as exc:
        raise HTTPException(422, f"{name} cannot be used: {exc}.") from None
    return {"image": pixels}


def _region(region: str | None) -> Any:
    if not region:
        return None
    try:
        return json.loads(region)
    except (json.JSONDecodeError, RecursionError):
        raise HTTPException(
            422, "The drawn region could not be read (it is not JSON); clear it and draw it again."
        ) from None


async def _accept(
    ctx: _Server,
    session_id: str,
    text: str,
    file: UploadFile | None,
    region: str | None,
    who: str | None,
) -> dict[str, Any]:
    """The chat keywords of a posted message; 404 for an unknown (or someone else's)
    session before any upload is read."""
    ctx.agent.store.check_session(session_id, owner=who)
    if not text.strip():
        raise HTTPException(422, "Your message is empty.")
    drawn = _region(region)  # before the upload is read: a bad region leaves no temp file
    return await _inputs(ctx, file) | {"region": drawn}


class _Admission:
    """How many turns the server holds (running or waiting for a turn slot): past ``limit``
    a request is refused at once with 503 and ``Retry-After``, before anything of it is
    decoded or stored (a waiting turn holds its decoded media and a thread)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held, self._lock = limit, 0, threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.held >= self.limit:
                raise HTTPException(
                    503,
                    f"The server is busy with {self.held} requests; try again in a little while.",
                    {"Retry-After": "5"},
                )
            self.held += 1

    def leave(self) -> None:
        with self._lock:
            self.held -= 1


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (a score, a coordinate) made None: JSON has no
    NaN, and a browser's ``JSON.parse`` rejects the bare ``NaN`` Python's encoder writes."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def strict_json(value: Any) -> str:
    """JSON any client parses: non-finite numbers as null, other objects as their text."""
    plain = json.loads(json.dumps(value, default=str), parse_constant=lambda _: None)
    return json.dumps(finite(plain), allow_nan=False)


def _is_animated(data: bytes) -> bool:
    from io import BytesIO

    from switchboard.core.media import pil_open

    try:  # PIL's own open: Ultralytics' replacement tries to install a HEIF plugin
        return getattr(pil_open()(BytesIO(data)), "n_frames", 1) > 1
    except Exception:
        return False


def _cleanup(kw: dict[str, Any]) -> None:
    if isinstance(kw.get("video"), Path):
        kw["video"].unlink(missing_ok=True)


def _video_file(data: bytes, suffix: str, folder: Path) -> Path:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=suffix, dir=folder, delete=False) as f:
        f.write(data)
    return Path(f.name)


def sweep_uploads(folder: Path, older_than_s: float = 300.0) -> int:
    """Delete uploads a killed process left (older than ``older_than_s``: a live request
    holds its file for seconds); returns how many."""
    import time

    gone = 0
    for f in folder.iterdir():
        try:
            if f.is_file() and time.time() - f.stat().st_mtime > older_than_s:
                f.unlink()
                gone += 1
        except OSError:  # another process swept it first
            continue
    return gone


def _turn_json(agent: Any, turn: Any, who: str | None) -> dict[str, Any]:
    """A Turn as the API sends it (:class:`~switchboard.core.wire.TurnReply`), finite."""
    return finite(agent.reply(turn, owner=who).model_dump(mode="json"))
