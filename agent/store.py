"""Where conversations live: SQLAlchemy models for sessions, turns, messages, calls and
artifacts, and a content-addressed file store for the artifacts' bytes.

    store = Store("sqlite:///switchboard.db", "artifacts/")   # or a postgresql+psycopg:// URL
    session = store.create_session(owner=token_hash)
    turn = store.begin_turn(session, "segment the red circle", inputs=[("image", png_bytes)])
    store.add_call(turn, tool="segment", args={...}, status="ok", seconds=0.21)
    store.finish_turn(turn, "Found it.", outputs=[("mask", mask_png)])

A turn is written ``pending`` when it is accepted and ``done`` or ``failed`` when it ends, in
one transaction each: a process killed between the two leaves a pending turn, which
:meth:`Store.recover` marks failed (or the agent resumes from its checkpoint) — an accepted
request is never silently lost, and nothing half-written is visible. Artifacts are files named
by the SHA-256 of their bytes (written once, shared by every message that uses them); the
database keeps the hash, the kind and the media type.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    sessionmaker,
)
from switchboard.core.errors import InvalidInputError

from .migrations import upgrade as upgrade_schema

TURN_STATUSES = ("pending", "done", "failed")
CALL_STATUSES = ("ok", "not_found", "error", "timeout")
TITLE_CHARS = 120  # a session's name, as a person gives it
LEASE_S = 30.0  # how long a runner's claim on its pending turns holds unless renewed

_HASH = re.compile(r"^[0-9a-f]{64}$")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def runner_id() -> str:
    """This process as a turn's runner: ``host:pid:started`` (the process's start time tells a
    live process from a later one that reused its pid)."""
    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{int(psutil.Process().create_time())}"


def runner_dead(runner: str) -> bool:
    """Whether ``runner`` is known to be gone: a process of this host that no longer runs (or
    whose pid another process has since taken). A runner on another host is never known dead
    here; its turns wait for its lease to lapse."""
    import psutil

    parts = runner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid, started = int(parts[1]), int(parts[2])
        return int(psutil.Process(pid).create_time()) != started
    except psutil.NoSuchProcess:
        return True
    except (ValueError, psutil.Error):
        return False


class NotFoundError(KeyError):
    """An unknown session, turn or artifact — or one that belongs to another owner (the same
    error on purpose: a caller cannot tell someone else's id from a made-up one)."""


class SessionBusyError(RuntimeError):
    """A session with a turn still running cannot be deleted (its reply has nowhere to go)."""


def turn_outcome(statuses: list[str]) -> str:
    """What a turn achieved, from its calls' statuses: ``"ok"`` (every call did its work, or
    no call was needed), ``"partial"`` (some did) or ``"failed"`` (none did)."""
    ok = sum(s == "ok" for s in statuses)
    if ok == len(statuses):
        return "ok"
    return "partial" if ok else "failed"


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")  # the first request's words
    # The title a person gave the session (rename); None until then. Added after the first
    # release: adopting an older database adds it (``agent.migrations.adopt``).
    custom_title: Mapped[str | None] = mapped_column(String(TITLE_CHARS), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    # The session's current image or video (a :class:`VersionRow` id): what a request without
    # media of its own works on. None until something is sent or made. Added after the first
    # release, like ``custom_title``. (No foreign key: SQLite cannot add one to a table.)
    head_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    turns: Mapped[list[TurnRow]] = relationship(
        back_populates="session", order_by="TurnRow.index", cascade="all, delete-orphan"
    )
    versions: Mapped[list[VersionRow]] = relationship(
        order_by="VersionRow.id", cascade="all, delete-orphan"
    )
    keys: Mapped[list[SessionKeyRow]] = relationship(cascade="all, delete-orphan")


class SessionKeyRow(Base):
    """A name a client keeps a conversation under, mapped to the session that holds it: the
    OpenAI-compatible route's ``user`` field, or the hash of the messages so far for a client
    that resends the whole conversation each time (``ui.openai``). ``key`` is a hash that
    includes the owner, so one owner's names never find another's sessions."""

    __tablename__ = "session_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class VersionRow(Base):
    """One version of a session's media: an upload, or an image an edit or generation made.
    Versions form a tree (``parent_id``: the version that was current when it was made), so an
    undo goes to the parent, a redo to the newest child, and an edit after an undo starts a new
    branch without losing the old one. Never deleted but with their session."""

    __tablename__ = "versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))
    kind: Mapped[str] = mapped_column(String(16))  # image | video
    source: Mapped[str] = mapped_column(String(16))  # upload | edited | generated
    turn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class TurnRow(Base):
    """One request and everything the agent did for it."""

    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)  # 0, 1, … within the session
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # When a restart resumed it (the process running it had died); None for most turns.
    # Added after the first release (``agent.migrations.adopt``).
    resumed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Who runs a pending turn (an agent process: "host:pid:started", :func:`runner_id`) and
    # until when its claim holds unless renewed: another process resumes the turn only once the
    # claim has lapsed or its runner is known dead (revision 0002).
    runner: Mapped[str | None] = mapped_column(String(96), nullable=True, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    session: Mapped[SessionRow] = relationship(back_populates="turns")
    messages: Mapped[list[MessageRow]] = relationship(
        back_populates="turn", order_by="MessageRow.id", cascade="all, delete-orphan"
    )
    calls: Mapped[list[CallRow]] = relationship(
        back_populates="turn", order_by="CallRow.id", cascade="all, delete-orphan"
    )


class MessageRow(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # user | assistant | observation
    text: Mapped[str] = mapped_column(Text, default="")
    region: Mapped[Any] = mapped_column(JSON, nullable=True)  # the user's region, as sent
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    turn: Mapped[TurnRow] = relationship(back_populates="messages")
    artifacts: Mapped[list[MessageArtifact]] = relationship(
        order_by="MessageArtifact.id", cascade="all, delete-orphan"
    )


class CallRow(Base):
    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    tool: Mapped[str] = mapped_column(String(64))
    args: Mapped[Any] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    observation: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    with_signal: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    turn: Mapped[TurnRow] = relationship(back_populates="calls")


class ArtifactRow(Base):
    """Bytes known by their SHA-256; the file is ``<root>/<h[:2]>/<h>``."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class ArtifactBlobRow(Base):
    """An artifact's bytes, when they live in the database (:class:`DatabaseArtifacts`)."""

    __tablename__ = "artifact_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MessageArtifact(Base):
    """An artifact attached to a message under a kind (image, video, mask, edited, …)."""

    __tablename__ = "message_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("artifacts.sha256"))
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    artifact: Mapped[ArtifactRow] = relationship(lazy="joined")


def check_hash(sha256: str) -> str:
    """``sha256`` if it is a SHA-256 in hex, else :class:`NotFoundError` (also what stops "../"
    in a URL from reaching the disk)."""
    if not isinstance(sha256, str) or not _HASH.match(sha256):
        raise NotFoundError(f"no artifact {sha256!r}")
    return sha256


def insert_once(s: Session, row: Base) -> None:
    """Add ``row`` unless a row with its primary key exists — also when another process adds
    the same one at the same moment (``INSERT … ON CONFLICT DO NOTHING``): artifacts are named
    by their bytes, so two replicas storing the same image is normal."""
    table = type(row).__table__
    values = {c.key: getattr(row, c.key) for c in table.columns if getattr(row, c.key) is not None}
    if s.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif s.bind.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # another database: check, then add (the check and the add are not atomic)
        if s.get(type(row), values[table.primary_key.columns[0].key]) is None:
            s.add(row)
            s.flush()
        return
    s.execute(insert(table).values(**values).on_conflict_do_nothing())


class ArtifactFiles:
    """Content-addressed files: :meth:`put` returns the SHA-256; the same bytes are stored once.
    Writes go to a temporary name and are renamed into place, so a reader never sees half a
    file and a crash leaves at most a stray temporary."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / check_hash(sha256)[:2] / sha256

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{sha}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha

    def get(self, sha256: str) -> bytes:
        path = self.path(sha256)
        if not path.is_file():
            raise NotFoundError(f"no artifact {sha256!r}")
        return path.read_bytes()


class DatabaseArtifacts:
    """Artifact bytes in the database itself (``artifact_blobs``): every replica that shares the
    database sees every artifact, with no shared folder to mount (``SWITCHBOARD_ARTIFACTS=
    database``). The same bytes are stored once; a write is its own transaction, committed
    before the turn that refers to it."""

    root = None  # no folder

    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        with self._sessions() as s, s.begin():
            if s.get(ArtifactBlobRow, sha) is None:
                insert_once(s, ArtifactBlobRow(sha256=sha, data=bytes(data)))
        return sha

    def get(self, sha256: str) -> bytes:
        with self._sessions() as s:
            data = s.scalar(
                select(ArtifactBlobRow.data).where(ArtifactBlobRow.sha256 == check_hash(sha256))
            )
        if data is None:
            raise NotFoundError(f"no artifact {sha256!r}")
        return bytes(data)


MEDIA_TYPES = {
    "image": "image/png",
    "mask": "image/png",
    "edited": "image/png",
    "generated": "image/png",
    "video": "video/mp4",
    "json": "application/json",
    "results": "application/json",  # a turn's boxes and tracks
}


def media_type(kind: str, data: bytes) -> str:
    """An artifact's media type: by kind, and for a video by its container's magic bytes (an
    uploaded WebM, AVI, QuickTime or GIF is stored as sent)."""
    if kind == "edited" and data[4:8] == b"ftyp":  # an edited video
        return "video/mp4"
    if kind == "video":
        if data[:4] == b"\x1aE\xdf\xa3":
            return "video/webm"
        if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
            return "video/x-msvideo"
        if data[:4] == b"GIF8":
            return "image/gif"
        if data[4:8] == b"ftyp" and data[8:12] == b"qt  ":
            return "video/quicktime"
    return MEDIA_TYPES.get(kind, "application/octet-stream")


class Store:
    """Sessions, turns, messages, calls and artifacts in a SQL database (``url``: any
    SQLAlchemy URL — ``sqlite:///file.db`` by default, ``postgresql+psycopg://…`` unchanged)
    and artifact bytes in ``artifacts``: a folder (shared between machines when several
    processes share a database: an NFS mount, a volume), or ``"database"`` for the database's
    own ``artifact_blobs`` table.

    Several processes may share one database. Each pending turn names its ``runner`` (the
    process running it, ``runner``: this one by default) and a lease it renews
    (:meth:`renew`); :meth:`claim` hands a process one turn whose runner died or stopped
    renewing, and never the same turn to two processes (``SELECT … FOR UPDATE SKIP LOCKED`` on
    PostgreSQL, then a compare-and-set on the runner)."""

    def __init__(
        self,
        url: str,
        artifacts: str | Path,
        runner: str | None = None,
        lease_s: float = LEASE_S,
    ) -> None:
        self.url = url
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            # Foreign keys on, and a writer waits for another instead of failing at once.
            @event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, _record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        # The schema by the migrations (agent/migrations): a new database is made, an older
        # one upgraded, one made before the migrations adopted.
        self.revision = upgrade_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.files: ArtifactFiles | DatabaseArtifacts = (
            DatabaseArtifacts(self._sessions)
            if str(artifacts) == "database"
            else ArtifactFiles(artifacts)
        )
        self.runner = runner or runner_id()
        if lease_s <= 0:
            raise ValueError("a turn's lease lasts more than 0 seconds")
        self.lease_s = float(lease_s)

    @contextmanager
    def db(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self._sessions() as s, s.begin():
            yield s

    # -- sessions ----------------------------------------------------------------------------
    def create_session(self, owner: str | None = None, title: str = "") -> str:
        sid = secrets.token_hex(16)
        with self.db() as s:
            s.add(SessionRow(id=sid, owner=owner, title=title[:200]))
        return sid

    @staticmethod
    def _key(owner: str | None, key: str) -> str:
        return hashlib.sha256(f"{owner or ''}\0{key}".encode()).hexdigest()

    def keyed_session(self, key: str, owner: str | None = None) -> str | None:
        """The session kept under ``key`` for ``owner`` (:meth:`keep_session`), or None."""
        with self.db() as s:
            row = s.get(SessionKeyRow, self._key(owner, key))
            if row is None:
                return None
            found = s.get(SessionRow, row.session_id)
            return found.id if found is not None and found.owner == owner else None

    def keep_session(self, key: str, session_id: str, owner: str | None = None) -> str:
        """Keep ``session_id`` under ``key`` unless the key names a session already (two
        requests making the same conversation at once: the first one's wins). Returns the
        session the key names now."""
        with self.db() as s:
            self._session(s, session_id, owner)
            insert_once(s, SessionKeyRow(key=self._key(owner, key), session_id=session_id))
        return self.keyed_session(key, owner) or session_id

    def _session(self, s: Session, session_id: str, owner: str | None) -> SessionRow:
        row = s.get(SessionRow, session_id)
        if row is None or row.owner != owner:
            raise NotFoundError(f"no session {session_id!r}")
        return row

    def check_session(self, session_id: str, owner: str | None = None) -> None:
        """:class:`NotFoundError` unless ``owner`` has ``session_id`` (no turns are read)."""
        with self.db() as s:
            self._session(s, session_id, owner)

    def sessions(
        self, owner: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """The owner's sessions, newest activity first (``limit`` of them from ``offset``; all
        by default). ``title``: the name a person gave it, else its first request's words
        (``named`` says which); times are UTC. One query: turns are counted, not loaded."""
        counts = (
            select(TurnRow.session_id, func.count().label("n"))
            .group_by(TurnRow.session_id)
            .subquery()
        )
        query = (
            select(SessionRow, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.session_id == SessionRow.id)
            .where(SessionRow.owner == owner)
            .order_by(SessionRow.updated_at.desc(), SessionRow.id)
            .offset(offset)
            .limit(limit)
        )
        with self.db() as s:
            return [self._session_dict(r, n) for r, n in s.execute(query)]

    def count_sessions(self, owner: str | None = None) -> int:
        with self.db() as s:
            query = select(func.count()).select_from(SessionRow).where(SessionRow.owner == owner)
            return int(s.scalar(query) or 0)

    @staticmethod
    def _session_dict(r: SessionRow, turns: int | None = None) -> dict[str, Any]:
        return {
            "id": r.id,
            "title": r.custom_title or r.title,
            "named": bool(r.custom_title),
            "created_at": r.created_at.isoformat(),
            "updated_at": r.updated_at.isoformat(),
            "turns": len(r.turns) if turns is None else int(turns),
        }

    def rename_session(
        self, session_id: str, title: str, owner: str | None = None
    ) -> dict[str, Any]:
        """Give a session a name (1–120 characters after trimming; ``ValueError`` else).
        Returns the session as :meth:`sessions` lists it."""
        title = " ".join(title.split())
        if not 1 <= len(title) <= TITLE_CHARS:
            raise ValueError(f"a session title has 1 to {TITLE_CHARS} characters")
        with self.db() as s:
            row = self._session(s, session_id, owner)
            row.custom_title = title
            s.flush()
            return self._session_dict(row)

    def delete_session(self, session_id: str, owner: str | None = None) -> int:
        """Delete a session with its turns, messages, calls and artifact links (the artifacts'
        files stay: content-addressed, the same bytes may belong to other sessions). Refused
        (:class:`SessionBusyError`) while one of its turns is pending. Returns how many turns
        went."""
        with self.db() as s:
            row = self._session(s, session_id, owner)
            if any(t.status == "pending" for t in row.turns):
                raise SessionBusyError(f"session {session_id!r} has a turn still running")
            n = len(row.turns)
            s.delete(row)  # the relationships cascade: turns → messages → links, calls
            return n

    def history(self, session_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Every turn of a session with its messages, calls and artifacts (hashes)."""
        with self.db() as s:
            row = self._session(s, session_id, owner)
            return [self._turn_dict(t) for t in row.turns]

    @staticmethod
    def _turn_dict(t: TurnRow) -> dict[str, Any]:
        return {
            "id": t.id,
            "index": t.index,
            "status": t.status,
            "error": t.error,
            "resumed": t.resumed_at is not None,
            "outcome": turn_outcome([c.status for c in t.calls]),
            "messages": [
                {
                    "role": m.role,
                    "text": m.text,
                    "region": m.region,
                    "artifacts": [
                        {
                            "sha256": a.sha256,
                            "kind": a.kind,
                            "name": a.name,
                            "media_type": a.artifact.media_type,
                        }
                        for a in m.artifacts
                    ],
                }
                for m in t.messages
            ],
            "calls": [
                {
                    "tool": c.tool,
                    "args": c.args,
                    "status": c.status,
                    "seconds": c.seconds,
                    "observation": c.observation,
                    "error": c.error,
                    "with_signal": c.with_signal,
                }
                for c in t.calls
            ],
        }

    # -- turns -------------------------------------------------------------------------------
    def begin_turn(
        self,
        session_id: str,
        text: str,
        inputs: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
        region: Any = None,
        owner: str | None = None,
        current: int | None = None,
    ) -> int:
        """Accept a request: the user's message and its media are stored with a ``pending``
        turn in one transaction. An image or video sent becomes the session's current version;
        ``current``: the id of the version a request without media works on (attached to the
        message as it, named "current", so the turn records what it saw). Returns the turn
        id."""
        shas = [
            (kind, self.files.put(data), media_type(kind, data), len(data)) for kind, data in inputs
        ]
        with self.db() as s:
            sess = self._session(s, session_id, owner)
            turn = TurnRow(
                session_id=session_id,
                index=len(sess.turns),
                status="pending",
                runner=self.runner,
                lease_until=self._lease(),
            )
            s.add(turn)
            msg = MessageRow(role="user", text=text, region=region)
            turn.messages.append(msg)
            self._attach(s, msg, shas)
            s.flush()
            for kind, sha, _, _ in shas:
                if kind in ("image", "video"):
                    self._add_version(s, sess, sha, kind, "upload", turn.id)
            if current is not None and not shas:
                v = s.get(VersionRow, current)
                if v is None or v.session_id != session_id:
                    raise NotFoundError(f"no version {current} in session {session_id!r}")
                msg.artifacts.append(MessageArtifact(sha256=v.sha256, kind=v.kind, name="current"))
            if not sess.title:
                sess.title = text[:80]
            sess.updated_at = _now()
            s.flush()
            return turn.id

    def set_turn_current(self, turn_id: int, version_id: int) -> None:
        """Point a pending turn's "current" attachment at another version (a turn of the same
        session ran in between and changed the session's current image)."""
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            v = s.get(VersionRow, version_id)
            if turn is None or v is None or v.session_id != turn.session_id:
                raise NotFoundError(f"no version {version_id} for turn {turn_id}")
            user = next(m for m in turn.messages if m.role == "user")
            user.artifacts[:] = [a for a in user.artifacts if a.name != "current"]
            user.artifacts.append(MessageArtifact(sha256=v.sha256, kind=v.kind, name="current"))

    # -- versions of the session's media -----------------------------------------------------
    @staticmethod
    def _add_version(
        s: Session, sess: SessionRow, sha: str, kind: str, source: str, turn_id: int | None
    ) -> VersionRow:
        v = VersionRow(
            session_id=sess.id,
            parent_id=sess.head_id,
            sha256=sha,
            kind=kind,
            source=source,
            turn_id=turn_id,
        )
        sess.versions.append(v)
        s.flush()
        sess.head_id = v.id
        return v

    @staticmethod
    def _version_dict(v: VersionRow | None) -> dict[str, Any] | None:
        if v is None:
            return None
        return {
            "id": v.id,
            "sha256": v.sha256,
            "kind": v.kind,
            "source": v.source,
            "turn_id": v.turn_id,
            "parent_id": v.parent_id,
        }

    def current(self, session_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The session's current version (``id``, ``sha256``, ``kind``, ``source``,
        ``turn_id``, ``parent_id``), or None when nothing was sent or made yet."""
        with self.db() as s:
            sess = self._session(s, session_id, owner)
            head = s.get(VersionRow, sess.head_id) if sess.head_id is not None else None
            return self._version_dict(head)

    def versions(self, session_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        """Every version of the session's media, oldest first."""
        with self.db() as s:
            return [self._version_dict(v) for v in self._session(s, session_id, owner).versions]

    def undo(self, session_id: str, owner: str | None = None) -> dict[str, Any]:
        """Make the current version's parent current again; returns it.
        :class:`InvalidInputError` when there is nothing before it, :class:`SessionBusyError`
        while a turn of the session runs."""
        return self._move(session_id, owner, back=True)

    def redo(self, session_id: str, owner: str | None = None) -> dict[str, Any]:
        """Make the newest version made from the current one current again (what an undo
        left); :class:`InvalidInputError` when there is none."""
        return self._move(session_id, owner, back=False)

    def _move(self, session_id: str, owner: str | None, back: bool) -> dict[str, Any]:
        with self.db() as s:
            sess = self._session(s, session_id, owner)
            if any(t.status == "pending" for t in sess.turns):
                raise SessionBusyError(f"session {session_id!r} has a turn still running")
            return self._version_dict(self._step(s, sess, back))  # type: ignore[return-value]

    @staticmethod
    def _step(s: Session, sess: SessionRow, back: bool) -> VersionRow:
        head = s.get(VersionRow, sess.head_id) if sess.head_id is not None else None
        if back:
            to = s.get(VersionRow, head.parent_id) if head and head.parent_id else None
            if to is None:
                raise InvalidInputError("there is nothing to undo")
        else:
            kids = [v for v in sess.versions if head and v.parent_id == head.id]
            if not kids:
                raise InvalidInputError("there is nothing to redo")
            to = kids[-1]
        sess.head_id = to.id
        sess.updated_at = _now()
        return to

    def _attach(self, s: Session, msg: MessageRow, shas: list[tuple[str, str, str, int]]) -> None:
        for kind, sha, mtype, size in shas:
            if s.get(ArtifactRow, sha) is None:
                insert_once(s, ArtifactRow(sha256=sha, media_type=mtype, size=size))
            msg.artifacts.append(MessageArtifact(sha256=sha, kind=kind, name=kind))

    def add_call(
        self,
        turn_id: int,
        tool: str,
        args: dict[str, Any],
        status: str,
        seconds: float,
        observation: str = "",
        error: str | None = None,
        with_signal: bool = False,
    ) -> None:
        if status not in CALL_STATUSES:
            raise ValueError(f"call status {status!r} not in {CALL_STATUSES}")
        with self.db() as s:
            if s.get(TurnRow, turn_id) is None:
                raise NotFoundError(f"no turn {turn_id}")
            s.add(
                CallRow(
                    turn_id=turn_id,
                    tool=tool,
                    args=args,
                    status=status,
                    seconds=float(seconds),
                    observation=observation,
                    error=error,
                    with_signal=with_signal,
                )
            )

    def finish_turn(
        self,
        turn_id: int,
        text: str,
        outputs: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
        status: str = "done",
        error: str | None = None,
    ) -> None:
        """The agent's reply and its artifacts, and the turn's final status, together.
        ``outputs`` in the order the turn made them; an ``edited`` or ``generated`` image
        becomes the session's current version, and an ``("undo", b"")`` or ``("redo", b"")``
        entry (no artifact) moves the current version as :meth:`undo` / :meth:`redo` do."""
        if status not in ("done", "failed"):
            raise ValueError(f"a turn finishes done or failed, not {status!r}")
        moves = {i: kind for i, (kind, _) in enumerate(outputs) if kind in ("undo", "redo")}
        shas = [
            (kind, self.files.put(data), media_type(kind, data), len(data))
            for i, (kind, data) in enumerate(outputs)
            if i not in moves
        ]
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is None:
                raise NotFoundError(f"no turn {turn_id}")
            msg = MessageRow(role="assistant", text=text)
            turn.messages.append(msg)
            self._attach(s, msg, shas)
            made = iter(shas)
            for i, (kind, _) in enumerate(outputs):  # versions and moves, in the turn's order
                if i in moves:
                    self._step(s, turn.session, back=kind == "undo")
                    continue
                _, sha, mtype, _ = next(made)
                if kind in ("edited", "generated"):
                    media = "video" if mtype.startswith("video/") else "image"
                    self._add_version(s, turn.session, sha, media, kind, turn.id)
            turn.status, turn.error, turn.finished_at = status, error, _now()
            turn.session.updated_at = _now()

    def turn(self, turn_id: int, owner: str | None = None) -> dict[str, Any]:
        """One turn as :meth:`history` lists it (only within ``owner``'s sessions)."""
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is None or turn.session.owner != owner:
                raise NotFoundError(f"no turn {turn_id}")
            return self._turn_dict(turn)

    def turn_request(self, turn_id: int) -> dict[str, Any]:
        """A turn's request as accepted: session, owner, text, region and the input media
        (``[(kind, bytes)]``) — what resuming it needs."""
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is None:
                raise NotFoundError(f"no turn {turn_id}")
            user = next(m for m in turn.messages if m.role == "user")
            inputs = [(a.kind, a.sha256) for a in user.artifacts]
            out = {"session": turn.session_id, "owner": turn.session.owner, "text": user.text,
                   "region": user.region}  # fmt: skip
        out["inputs"] = [(kind, self.files.get(sha)) for kind, sha in inputs]
        return out

    def mark_resumed(self, turn_id: int) -> None:
        """Note that a restart resumed this turn (its history says so)."""
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is not None:
                turn.resumed_at = _now()

    RERUN = "re-run after a restart"

    def claim_rerun(self, turn_id: int) -> bool:
        """Mark a pending turn as being re-run from its request after a restart; False when it
        already was (the restart before this one died on it too)."""
        with self.db() as s:
            turn = s.get(TurnRow, turn_id)
            if turn is None or turn.status != "pending" or turn.error == self.RERUN:
                return False
            turn.error = self.RERUN
            return True

    def pending_turns(self) -> list[int]:
        """Every pending turn, whoever runs it."""
        with self.db() as s:
            return list(s.scalars(select(TurnRow.id).where(TurnRow.status == "pending")))

    # -- who runs a pending turn -------------------------------------------------------------
    def _lease(self) -> datetime:
        return _now() + timedelta(seconds=self.lease_s)

    def renew(self) -> int:
        """Extend the lease of every pending turn this store's runner holds (an agent does so
        every third of a lease while it lives). Returns how many."""
        with self.db() as s:
            done = s.execute(
                update(TurnRow)
                .where(TurnRow.runner == self.runner, TurnRow.status == "pending")
                .values(lease_until=self._lease())
            )
            return int(done.rowcount or 0)

    def orphans(self) -> list[int]:
        """Pending turns no live process runs: their runner is known dead (a process of this
        host that is gone), their lease lapsed, or they never had a runner (a database from
        before runners)."""
        with self.db() as s:
            rows = s.execute(
                select(TurnRow.id, TurnRow.runner, TurnRow.lease_until)
                .where(TurnRow.status == "pending")
                .order_by(TurnRow.id)
            ).all()
        now, dead = _now(), {}
        return [
            tid
            for tid, runner, lease in rows
            if runner != self.runner
            and (
                runner is None
                or (lease is not None and lease < now)
                or dead.setdefault(runner, runner_dead(runner))
            )
        ]

    def claim(self) -> int | None:
        """Take one orphaned pending turn (:meth:`orphans`) for this runner, oldest first, or
        None when there is none. Two processes claiming at once never get the same turn: the
        row is locked (``FOR UPDATE SKIP LOCKED``: a turn another process is claiming is
        skipped, not waited for) and taken only if its runner is still the one seen."""
        for tid in self.orphans():
            with self.db() as s:
                row = s.execute(
                    select(TurnRow.runner, TurnRow.lease_until)
                    .where(TurnRow.id == tid, TurnRow.status == "pending")
                    .with_for_update(skip_locked=True)
                ).first()
                if row is None:  # finished meanwhile, or being claimed by another process
                    continue
                runner, lease = row
                if runner is not None and not (
                    (lease is not None and lease < _now()) or runner_dead(runner)
                ):
                    continue  # renewed meanwhile: its runner lives
                same = TurnRow.runner.is_(None) if runner is None else TurnRow.runner == runner
                took = s.execute(
                    update(TurnRow)
                    .where(TurnRow.id == tid, TurnRow.status == "pending", same)
                    .values(runner=self.runner, lease_until=self._lease())
                )
                if took.rowcount == 1:
                    return tid
        return None

    def fail_turn(self, turn_id: int, reason: str) -> None:
        """Mark a pending turn failed with no reply (its request, media and calls stay)."""
        with self.db() as s:
            t = s.get(TurnRow, turn_id)
            if t is None:
                raise NotFoundError(f"no turn {turn_id}")
            t.status, t.error, t.finished_at = "failed", reason, _now()

    def runner_of(self, turn_id: int) -> str | None:
        with self.db() as s:
            return s.scalar(select(TurnRow.runner).where(TurnRow.id == turn_id))

    def recover(self, reason: str = "the process stopped before the turn finished") -> int:
        """Mark failed every pending turn no live process runs (:meth:`claim`, then failed).
        Returns how many."""
        n = 0
        while (tid := self.claim()) is not None:
            self.fail_turn(tid, reason)
            n += 1
        return n

    # -- artifacts ---------------------------------------------------------------------------
    def artifact(self, sha256: str, owner: str | None = None) -> tuple[bytes, str]:
        """An artifact's bytes and media type — only when one of ``owner``'s sessions holds
        it (else :class:`NotFoundError`, as for a hash that does not exist)."""
        check_hash(sha256)  # rejects anything but a hash
        with self.db() as s:
            row = s.scalar(
                select(ArtifactRow)
                .join(MessageArtifact, MessageArtifact.sha256 == ArtifactRow.sha256)
                .join(MessageRow, MessageRow.id == MessageArtifact.message_id)
                .join(TurnRow, TurnRow.id == MessageRow.turn_id)
                .join(SessionRow, SessionRow.id == TurnRow.session_id)
                .where(ArtifactRow.sha256 == sha256, SessionRow.owner == owner)
                .limit(1)
            )
            if row is None:
                raise NotFoundError(f"no artifact {sha256!r}")
            media_type = row.media_type
        return self.files.get(sha256), media_type
