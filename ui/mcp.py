"""The agent's specialists and its chat as Model Context Protocol tools (the ``mcp`` SDK's
low-level server), for other agents — desktop assistants, IDE agents, other LangGraph graphs:

    switchboard mcp                    # over stdio (an MCP client starts it as a subprocess)
    switchboard mcp --http --port 8001 # streamable HTTP at http://127.0.0.1:8001/mcp

**Tools.** One per registered specialist (plugins included), named as the registry names it,
described by its description and tasks, its input schema the specialist's own argument schema
plus the media it takes: ``image`` (base64 of a PNG, JPEG, WebP, GIF or BMP, or a ``data:`` URL)
and/or ``video`` (base64 of an MP4, or a ``data:`` URL). And ``chat``: a turn of the agent —
router and specialists — with ``text``, optional ``image``/``video``/``region`` and the
``session`` of an earlier chat result to continue it.

**Results.** What the tool says in words (its observation) as text; masks and images as MCP
image content (PNG; a mask white on black); an edited video as an embedded ``video/mp4``
resource; the numbers (scores, boxes, tracks, the chat's calls and session) as structured
content. A call that cannot run — an unknown tool, arguments its schema refuses, media it does
not take, a specialist that fails — is a result with ``isError`` and a sentence saying why,
never a dropped connection.

Over HTTP with ``SWITCHBOARD_API_TOKEN`` set, every request needs ``Authorization: Bearer``
(401 otherwise) and the chat's sessions belong to the token's owner, as on the HTTP API.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mcp_types as types
import numpy as np
from mcp.server.lowlevel import Server
from switchboard.agent.tools import AGENT_TOOLS
from switchboard.core.errors import InvalidInputError, SwitchboardError
from switchboard.core.media import (
    Image,
    Video,
    decode_base64,
    decode_image,
    encode_mp4,
    encode_png,
    load_video,
)
from switchboard.core.results import Boxes, ImageOut, Masks, Text, Tracks, VideoOut

from .auth import Tokens, bearer
from .limits import send_refusal

log = logging.getLogger(__name__)
CHAT = "chat"
MEDIA_FIELDS = {
    "image": "the image: base64 of a PNG, JPEG, WebP, GIF or BMP file, or a data: URL",
    "video": "the video: base64 of an MP4 file, or a data: URL",
}
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 4000,
                 "description": "what you ask, in words"},
        "image": {"type": "string", "description": MEDIA_FIELDS["image"]},
        "video": {"type": "string", "description": MEDIA_FIELDS["video"]},
        "region": {"description": "a drawn region: [x1, y1, x2, y2], {'point': [x, y]} or "
                   "{'mask': <COCO RLE>}, in the image's pixels"},
        "session": {"type": "string",
                    "description": "continue this conversation (a chat result's session)"},
    },
    "required": ["text"],
    "additionalProperties": False,
}  # fmt: skip


def tool_schema(spec: Any) -> dict[str, Any]:
    """A specialist's MCP input schema: its argument schema with the media it takes."""
    schema = copy.deepcopy(spec.args_schema)
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    kinds = [k for k in ("image", "video") if k in spec.media]
    for kind in kinds:
        props[kind] = {"type": "string", "description": MEDIA_FIELDS[kind]}
    if len(kinds) == 1 and "none" not in spec.media:
        schema["required"] = [kinds[0], *schema.get("required", [])]
    return schema


def tools(registry: Any) -> list[types.Tool]:
    """Every registered specialist (the agent's own tools aside: undo and redo need a
    conversation, which ``chat`` has), then ``chat``."""
    out = []
    for spec in registry.specs():
        if spec.name in AGENT_TOOLS:
            continue
        said = f"{spec.description} Tasks: {', '.join(spec.tasks)}."
        out.append(types.Tool(name=spec.name, description=said, input_schema=tool_schema(spec)))
    out.append(
        types.Tool(
            name=CHAT,
            description="Ask the Switchboard agent in words, with an image or video: it picks "
            "the specialists (segment, detect, track, edit, …), runs them, and answers with "
            "text and the masks or images it made. Pass the session of an earlier result to "
            "follow up on it (its current image is used when you send none).",
            input_schema=CHAT_SCHEMA,
        )
    )
    return out


def build_server(agent: Any, tokens: list[str] | None = None) -> Server:
    """The MCP server over ``agent`` (an :class:`~switchboard.agent.sdk.Agent`): its registry's
    specialists as tools, and its chat. ``tokens`` (over HTTP): who a request's session
    belongs to."""
    import anyio

    owners = Tokens(tokens or [])

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools(agent.registry))

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = dict(params.arguments or {})
        owner = _owner(owners, ctx)
        try:
            if params.name == CHAT:
                content, data = await anyio.to_thread.run_sync(_chat, agent, args, owner)
            elif params.name in agent.registry and params.name not in AGENT_TOOLS:
                content, data = await anyio.to_thread.run_sync(_call, agent, params.name, args)
            else:
                known = ", ".join(t.name for t in tools(agent.registry))
                raise InvalidInputError(f"there is no tool {params.name!r}; the tools: {known}")
        except SwitchboardError as exc:
            return types.CallToolResult(content=[_text(_sentence(exc))], is_error=True)
        except Exception:  # a bug: said in words (and logged), the server goes on
            log.exception("tool %r failed", params.name)
            said = "Something went wrong on the server; the call was not finished."
            return types.CallToolResult(content=[_text(said)], is_error=True)
        return types.CallToolResult(content=content, structured_content=data)

    return Server(
        "switchboard",
        version="0.1",
        instructions="Pixel tools (segment, detect, track, edit and any plugins) and an agent "
        "that uses them (chat). Images go in as base64 or data: URLs and come back as images.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _owner(owners: Tokens, ctx: Any) -> str | None:
    request = getattr(ctx, "request", None)
    if not owners or request is None:  # stdio: the local user
        return None
    token = bearer(request.headers.get("authorization"))
    return None if token is None else owners.owner(token)


def _sentence(exc: BaseException) -> str:
    said = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    return said[:1].upper() + said[1:] + ("" if said.endswith(".") else ".")


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _png(array: np.ndarray) -> types.ImageContent:
    data = base64.b64encode(encode_png(array)).decode()
    return types.ImageContent(type="image", data=data, mime_type="image/png")


def _mask(mask: Any) -> types.ImageContent:
    return _png(np.asarray(mask, bool).astype(np.uint8) * 255)


def _video(frames: np.ndarray, fps: float) -> types.EmbeddedResource:
    data = encode_mp4(Video(frames=frames, fps=fps))
    blob = types.BlobResourceContents(
        uri="switchboard://video/edited.mp4", mime_type="video/mp4",
        blob=base64.b64encode(data).decode(),
    )  # fmt: skip
    return types.EmbeddedResource(type="resource", resource=blob)


def _bytes(value: Any, field: str) -> bytes:
    """Base64 (or a base64 ``data:`` URL) as bytes; :class:`InvalidInputError` otherwise."""
    return decode_base64(value, field)[1]


def _media(args: dict[str, Any]) -> dict[str, Any]:
    """Take ``image``/``video`` out of ``args``, decoded (an image as pixels, a video loaded
    from a temporary file). Too big or damaged media raise :class:`InvalidInputError`."""
    out: dict[str, Any] = {}
    if "image" in args:
        out["image"] = decode_image(_bytes(args.pop("image"), "image"), convert=True)
    if "video" in args:
        data = _bytes(args.pop("video"), "video")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "video.mp4"
            path.write_bytes(data)
            out["video"] = load_video(path)
    if len(out) > 1:
        raise InvalidInputError("send an image or a video, not both")
    return out


def _call(agent: Any, name: str, args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """One specialist call: its result as MCP content and structured data."""
    media = _media(args)
    if "image" in media:
        media["image"] = Image(pixels=media["image"])
    result = agent.registry.get(name)(next(iter(media.values()), None), args)
    return content_of(result)


def content_of(result: Any) -> tuple[list[Any], dict[str, Any]]:
    """A specialist's result as MCP content (its words, then its images) and data."""
    said = [_text(result.observation())]
    if isinstance(result, Masks):
        boxes = [list(b) if b else None for b in result.boxes()]
        data = {"kind": "masks", "scores": result.scores, "labels": result.labels, "boxes": boxes}
        return said + [_mask(m) for m in result.masks], data
    if isinstance(result, Boxes):
        return said, {"kind": "boxes", "xyxy": [list(b) for b in result.xyxy],
                      "labels": result.labels, "scores": result.scores}  # fmt: skip
    if isinstance(result, Tracks):
        return said, {"kind": "tracks", "num_frames": result.num_frames,
                      "tracks": [_track(t) for t in result.tracks]}  # fmt: skip
    if isinstance(result, ImageOut):
        changed = None if result.edit_mask is None else int(np.asarray(result.edit_mask).sum())
        return [*said, _png(result.image)], {"kind": "image", "changed_px": changed}
    if isinstance(result, VideoOut):
        data = {"kind": "video", "frames": int(len(result.frames)), "fps": result.fps,
                "edited_frames": result.edited_frames}  # fmt: skip
        return [*said, _video(result.frames, result.fps)], data
    if isinstance(result, Text):
        return said, {"kind": "text", "text": result.text}
    return said, {"kind": getattr(result, "kind", type(result).__name__)}


def _track(track: Any) -> dict[str, Any]:
    return {"track_id": track.track_id, "label": track.label, "frames": list(track.frames),
            "xyxy": [list(b) for b in track.xyxy]}  # fmt: skip


def _chat(agent: Any, args: dict[str, Any], owner: str | None) -> tuple[list[Any], dict]:
    """A turn of the agent: its reply in words, the masks and images it made, and the turn
    (session, calls, boxes, tracks) as data."""
    unknown = set(args) - set(CHAT_SCHEMA["properties"])
    if unknown:
        raise InvalidInputError(f"chat takes no {', '.join(sorted(unknown))}")
    text = args.pop("text", None)
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError("chat needs some text")
    session = args.pop("session", None)
    if session is not None and not isinstance(session, str):
        raise InvalidInputError("the session is a chat result's session id")
    region = args.pop("region", None)
    if isinstance(region, str):  # some clients send JSON as a string
        try:
            region = json.loads(region)
        except json.JSONDecodeError:
            raise InvalidInputError("the region is not JSON") from None
    try:
        turn = agent.chat(text, session=session, owner=owner, region=region, **_media(args))
    except KeyError:  # an unknown session (or another owner's)
        raise InvalidInputError(f"there is no session {session!r}") from None
    content = [_text(turn.text)]
    content += [_mask(m) for m in turn.masks] + [_png(i) for i in turn.images]
    content += [_video(v.frames, v.fps) for v in turn.videos]
    reply = agent.reply(turn, owner=owner).model_dump(mode="json")
    data = {k: reply[k] for k in ("session", "turn", "text", "outcome", "calls", "boxes", "tracks")}
    return content, data


def serve_stdio(agent: Any) -> None:
    """Serve over this process's stdin and stdout until the client closes them (stray prints
    of the libraries go to stderr meanwhile: the SDK points fd 1 there)."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build_server(agent)

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)


def http_app(agent: Any, tokens: list[str] | None = None, host: str = "127.0.0.1") -> Any:
    """The streamable-HTTP transport's ASGI app (``/mcp``), behind the server's bearer tokens
    when there are any."""
    server = build_server(agent, tokens)
    app = server.streamable_http_app(host=host)
    owners = Tokens(tokens or [])
    if not owners:
        return app

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            said = headers.get(b"authorization", b"").decode("latin-1")
            if not owners.header_ok(said or None):
                refused = {"detail": "a valid bearer token is required"}
                await send_refusal(send, refused, 401, [(b"www-authenticate", b"Bearer")])
                return
        await app(scope, receive, send)

    return guarded
