"""Tools the agent itself serves, beside the registry's specialists: the router calls them
with the same wire format, and the graph runs them against the session instead of pixels.

``history`` — undo or redo a change to the session's current image ("undo that", "go back",
"redo"). The store keeps every version of a session's media (:class:`~.store.VersionRow`);
the call moves the turn's cursor along them (:class:`VersionCursor`), the calls after it work
on the version it made current, and the store's pointer moves when the turn is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field
from switchboard.core import ExampleRequest, InvalidInputError, Specialist, Video
from switchboard.core.results import Text

HISTORY = "history"


class HistoryArgs(BaseModel):
    op: Literal["undo", "redo"] = Field(
        description="undo: back to the image before the last change; redo: forward again"
    )


class HistoryTool(Specialist):
    """Registered so that the router's grammar and training data know it; the graph runs it
    with the turn's :class:`VersionCursor` (a session's versions are no specialist's
    business), so :meth:`run` is never reached through the agent."""

    name = HISTORY
    description = "Undo or redo the last change to the image of this conversation."
    tasks = ("undo", "redo")
    Args = HistoryArgs
    media: ClassVar[tuple[str, ...]] = ("image", "video", "none")
    examples = (
        ExampleRequest(request="undo that", args={"op": "undo"}),
        ExampleRequest(request="go back to the image before", args={"op": "undo"}),
        ExampleRequest(request="redo the change", args={"op": "redo"}),
    )

    @classmethod
    def args_for(cls, intent: Any) -> dict[str, Any] | None:
        if intent.task in ("undo", "redo"):
            return {"op": intent.task}
        return None

    def run(self, media: Any, args: HistoryArgs, signal: Any = None) -> Text:
        raise InvalidInputError("undo and redo need a conversation: ask the agent, not the tool")


AGENT_TOOLS: dict[str, type[Specialist]] = {HISTORY: HistoryTool}


def with_agent_tools(registry: Any) -> Any:
    """``registry`` with the agent's own tools registered beside its specialists (the router
    is trained, evaluated and served with them)."""
    for name, cls in AGENT_TOOLS.items():
        if name not in registry.names():
            registry.register(cls)
    return registry


class VersionCursor:
    """A turn's view of its session's versions: :meth:`move` goes back (undo) or forward
    (redo) from the current one without writing the store, and returns the version and its
    decoded media; the moves are written when the turn is stored, in order with the images
    the turn made."""

    def __init__(
        self,
        versions: list[dict[str, Any]],
        head: int | None,
        load: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.versions = {v["id"]: v for v in versions}
        self.head, self.load = head, load
        self._made: dict[int, Any] = {}  # images this turn made: not stored yet

    def made(self, media: Any) -> None:
        """An image this turn made is the current version now (stored with the turn)."""
        vid = -1 - len(self._made)
        kind = "video" if isinstance(media, Video) else "image"
        self.versions[vid] = {"id": vid, "parent_id": self.head, "kind": kind}
        self._made[vid] = media
        self.head = vid

    def move(self, op: str) -> tuple[dict[str, Any], Any]:
        cur = self.versions.get(self.head) if self.head is not None else None
        if op == "undo":
            to = self.versions.get(cur["parent_id"]) if cur and cur["parent_id"] else None
            if to is None:
                raise InvalidInputError("there is nothing to undo")
        else:
            kids = [v for v in self.versions.values() if cur and v["parent_id"] == cur["id"]]
            if not kids:
                raise InvalidInputError("there is nothing to redo")
            # the newest: one this turn made (not stored yet), else the highest id
            to = max(kids, key=lambda v: (v["id"] < 0, abs(v["id"])))
        self.head = to["id"]
        return to, self._made[to["id"]] if to["id"] in self._made else self.load(to)
