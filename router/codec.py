"""The hybrid-call wire format the router writes and the agent reads.

    Sure.<call>{"tool":"segment","args":{"target":"the red circle"}}</call><sig_0><sig_1>

Optional prose, then one or more ``<call>{json}</call>`` blocks, each optionally followed by
exactly as many ``<sig_k>`` tokens as the called tool's ``SignalSpec`` declares (all or none).
The JSON is compact (no whitespace) with the keys ``tool`` and ``args``; the arguments must
validate against the tool's ``Args``. :func:`format_reply` writes a reply, :func:`parse_reply`
reads one back and raises :class:`MalformedCallError` for anything else. The signal tensors
themselves never travel as text: the router reads them off the hidden states at the ``<sig_k>``
positions.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from switchboard.core import HybridCall, MalformedCallError, Registry
from switchboard.core.errors import InvalidInputError

CALL_OPEN, CALL_CLOSE = "<call>", "</call>"
MAX_SIGNAL_TOKENS = 16
SIG_TOKENS = tuple(f"<sig_{k}>" for k in range(MAX_SIGNAL_TOKENS))
REGION_TOKEN = "<region>"
IMAGE_TOKEN = "<image>"
OBJECT_TOKEN = "<object>"  # one per listed detection (router/prompt.py); appended last so that
# routers trained before it keep their token ids
# Added to the tokenizer as special tokens (single ids, never split).
SPECIAL_TOKENS = (CALL_OPEN, CALL_CLOSE, REGION_TOKEN, IMAGE_TOKEN, *SIG_TOKENS, OBJECT_TOKEN)

_SIG = re.compile(r"<sig_(\d+)>")
_TAG = re.compile(r"</?call>|<sig_\d+>|<object>")


@dataclass
class Reply:
    """A parsed reply: prose and calls; ``signal_tokens[i]`` is how many ``<sig_k>`` follow
    call ``i`` (0 = text-only call)."""

    prose: str = ""
    calls: list[HybridCall] = field(default_factory=list)
    signal_tokens: list[int] = field(default_factory=list)


def call_json(tool: str, args: dict[str, Any]) -> str:
    """The compact JSON of one call (what goes between the tags)."""
    return json.dumps({"tool": tool, "args": args}, separators=(",", ":"), ensure_ascii=False)


def format_reply(
    prose: str, calls: list[HybridCall], registry: Registry, with_signals: bool = True
) -> str:
    """Write a reply; a call's ``<sig_k>`` tokens are written when its tool declares a signal
    and ``with_signals`` is set. A call to a tool ``registry`` lacks is written without them
    (the agent writes back the calls it made, and such a call failed with its own error)."""
    if _TAG.search(prose):
        raise MalformedCallError("prose may not contain call or signal tags")
    parts = [prose]
    for call in calls:
        spec = registry.cls(call.tool).signal if call.tool in registry else None
        parts.append(f"{CALL_OPEN}{call_json(call.tool, call.args)}{CALL_CLOSE}")
        if with_signals and spec is not None:
            parts.append("".join(SIG_TOKENS[: spec.num_tokens]))
    return "".join(parts)


def parse_reply(text: str, registry: Registry) -> Reply:
    """Read a reply back, validating every call against the registry."""
    start = text.find(CALL_OPEN)
    prose = text if start < 0 else text[:start]
    if _TAG.search(prose):
        raise MalformedCallError(f"stray tag before the first call: {prose[-40:]!r}")
    reply = Reply(prose=prose.strip())
    pos = start
    while 0 <= pos < len(text):
        if not text.startswith(CALL_OPEN, pos):
            raise MalformedCallError(f"expected <call> or the end at {text[pos : pos + 30]!r}")
        end = text.find(CALL_CLOSE, pos)
        if end < 0:
            raise MalformedCallError("unclosed <call> block")
        body = text[pos + len(CALL_OPEN) : end]
        if _TAG.search(body):
            raise MalformedCallError("a tag inside a <call> block")
        reply.calls.append(_parse_call(body, registry))
        pos = end + len(CALL_CLOSE)
        k = 0
        while (m := _SIG.match(text, pos)) is not None:
            if int(m.group(1)) != k:
                raise MalformedCallError(f"signal token <sig_{m.group(1)}> out of order")
            k, pos = k + 1, m.end()
        spec = registry.cls(reply.calls[-1].tool).signal
        if k and (spec is None or k != spec.num_tokens):
            want = 0 if spec is None else spec.num_tokens
            raise MalformedCallError(
                f"{reply.calls[-1].tool!r} takes {want} signal tokens, got {k}"
            )
        reply.signal_tokens.append(k)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return reply


def _parse_call(body: str, registry: Registry) -> HybridCall:
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedCallError(f"call is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or set(obj) != {"tool", "args"}:
        raise MalformedCallError('a call is {"tool": …, "args": {…}} and nothing else')
    tool, args = obj["tool"], obj["args"]
    if not isinstance(tool, str) or tool not in registry:
        raise MalformedCallError(f"unknown tool {tool!r} (registered: {registry.names()})")
    if not isinstance(args, dict):
        raise MalformedCallError("call args must be an object")
    try:
        registry.cls(tool).parse_args(args)
    except InvalidInputError as exc:
        raise MalformedCallError(str(exc)) from exc
    return HybridCall(tool=tool, args=args)
