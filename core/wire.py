"""What the HTTP API sends: one schema per resource, shared by the server (its response models,
so the OpenAPI document describes them), the HTTP SDK (which parses replies with them) and the
page (which reads the same JSON).

A turn is sent as :class:`TurnReply` (the answer to ``POST …/messages``, and the ``turn``
event of its stream); a session's stored turns as :class:`StoredTurn`. Masks and images are
not inlined: each is an :class:`ArtifactRef`, fetched from ``/api/artifacts/<sha256>``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Call(BaseModel):
    """One specialist call of a turn: what was asked, how it ended, what the router read back."""

    tool: str
    args: dict[str, Any]
    status: str = Field(description="ok | failed | not_found | refused | skipped ...")
    seconds: float
    observation: str
    error: str | None = None
    with_signal: bool = False


class Box(BaseModel):
    """A detection: XYXY in pixels of the image, its label and score."""

    xyxy: list[float] = Field(min_length=4, max_length=4)
    label: str
    score: float


class TrackOut(BaseModel):
    """One object followed through a video: a box on each listed frame."""

    track_id: int
    label: str = ""
    frames: list[int]
    xyxy: list[list[float]]


class ArtifactRef(BaseModel):
    """A stored file of a message (the upload, a mask, an edited image, the results JSON)."""

    sha256: str
    kind: str = Field(description="image | video | mask | edited | generated | results ...")
    name: str | None = None
    media_type: str


class Message(BaseModel):
    """A user's request or the agent's reply, with its files."""

    role: str
    text: str
    region: Any = None
    artifacts: list[ArtifactRef] = []


class Version(BaseModel):
    """One version of a session's media: an upload, or what an edit or a generation made."""

    id: int
    sha256: str
    kind: str
    source: str = Field(description="upload | edited | generated")
    turn_id: int | None = None
    parent_id: int | None = None


class TurnReply(BaseModel):
    """A turn as it is answered: the reply, the calls, boxes and tracks, the stored messages
    (their artifacts), and the session's current media after it."""

    session: str
    turn: int
    text: str
    outcome: str = Field(description="ok | partial | failed")
    calls: list[Call]
    boxes: list[Box]
    tracks: list[TrackOut]
    messages: list[Message]
    current: Version | None = None


class StoredTurn(BaseModel):
    """A turn as the store keeps it (``GET /api/sessions/{id}``)."""

    id: int
    index: int
    status: str = Field(description="pending | running | done | failed")
    error: str | None = None
    resumed: bool = False
    outcome: str
    messages: list[Message]
    calls: list[Call]


class SessionSummary(BaseModel):
    """A session as the list shows it."""

    id: str
    title: str | None = None
    named: bool = False
    created_at: str
    updated_at: str
    turns: int


class SessionDetail(BaseModel):
    """A session with its turns and its current media."""

    id: str
    turns: list[StoredTurn]
    current: Version | None = None


class NewSession(BaseModel):
    id: str


class Moved(BaseModel):
    """The current version after an undo or a redo."""

    current: Version


class Health(BaseModel):
    status: str
    auth: bool = Field(description="whether /api routes need a bearer token")
    tools: list[str]
    recovering: bool
    loaded: list[str]
    max_text: int
    max_upload_bytes: int
    calls: str = Field(
        "text", description="how the router calls tools: hybrid (text call + signal) or text"
    )
