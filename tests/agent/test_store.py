"""The conversation store: sessions, turns, calls and content-addressed artifacts survive a
restart, pending turns are recovered (one process claims each), owners see only their own — on
SQLite and on a real PostgreSQL server (``postgres_url``: a database of its own per test)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from switchboard.agent.store import NotFoundError, SessionBusyError, Store

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _roundtrip(url: str, root: Path, artifacts: str | None = None) -> None:
    artifacts = artifacts or root / "artifacts"
    store = Store(url, artifacts)
    sid = store.create_session(owner="alice")
    turn = store.begin_turn(
        sid,
        "segment the red circle",
        inputs=[("image", PNG)],
        region={"box": [1, 2, 30, 40]},
        owner="alice",
    )
    store.add_call(
        turn,
        "segment",
        {"target": "red circle"},
        "ok",
        0.25,
        observation="[segment → 1 mask]",
        with_signal=True,
    )
    store.add_call(turn, "edit", {"instruction": "x"}, "error", 0.01, error="boom")
    store.finish_turn(turn, "Here is the mask.", outputs=[("mask", b"mask-bytes")])

    again = Store(url, artifacts)  # a restart: a new engine on the same database
    (session,) = again.sessions(owner="alice")
    assert session["id"] == sid and session["title"] == "segment the red circle"
    (t,) = again.history(sid, owner="alice")
    assert t["status"] == "done" and [m["role"] for m in t["messages"]] == ["user", "assistant"]
    assert t["messages"][0]["region"] == {"box": [1, 2, 30, 40]}
    assert [(c["tool"], c["status"]) for c in t["calls"]] == [("segment", "ok"), ("edit", "error")]
    assert t["calls"][0]["with_signal"] and t["calls"][1]["error"] == "boom"
    image = t["messages"][0]["artifacts"][0]
    assert image["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert again.artifact(image["sha256"], owner="alice") == (PNG, "image/png")
    # Other owners (and no owner) cannot see the session or its artifacts.
    assert again.sessions(owner="bob") == []
    with pytest.raises(NotFoundError):
        again.history(sid, owner="bob")
    with pytest.raises(NotFoundError):
        again.artifact(image["sha256"], owner="bob")
    assert t["outcome"] == "partial"  # one call ok, one not
    # A name is given and a session deleted only by its owner; its files stay (shared by hash).
    with pytest.raises(NotFoundError):
        again.rename_session(sid, "mine", owner="bob")
    with pytest.raises(NotFoundError):
        again.delete_session(sid, owner="bob")
    renamed = again.rename_session(sid, " the  red circle ", owner="alice")
    assert renamed["title"] == "the red circle"
    (session,) = again.sessions(owner="alice")
    assert session["title"] == "the red circle" and session["named"] is True
    assert again.delete_session(sid, owner="alice") == 1
    assert again.sessions(owner="alice") == []
    with pytest.raises(NotFoundError):
        again.artifact(image["sha256"], owner="alice")
    assert again.files.get(image["sha256"]) == PNG


def test_sqlite_store_survives_a_restart(tmp_path):
    _roundtrip(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)


def test_the_same_bytes_are_stored_once_and_hashes_cannot_escape_the_folder(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "a")
    sid = store.create_session()
    for _ in range(2):
        turn = store.begin_turn(sid, "hi", inputs=[("image", PNG)])
        store.finish_turn(turn, "ok")
    files = [p for p in (tmp_path / "a").rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].read_bytes() == PNG
    for bad in ("../db.sqlite", "..%2Fdb.sqlite", "a" * 63, "A" * 64, "/etc/passwd"):
        with pytest.raises(NotFoundError):
            store.artifact(bad)
    with pytest.raises(NotFoundError):
        store.artifact("0" * 64)  # well-formed, unknown


def test_a_turn_cut_off_before_it_finished_is_recovered_as_failed(tmp_path, dead_runner):
    """A killed process leaves its accepted request pending (user message and media stored);
    on restart it is marked failed with a reason, and the session carries on."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url, tmp_path / "a", runner=dead_runner)  # the process that gets killed
    sid = store.create_session()
    turn = store.begin_turn(sid, "track the star", inputs=[("video", b"frames")])
    store.add_call(turn, "track", {"target": "star"}, "ok", 1.0)
    del store  # the process dies here
    again = Store(url, tmp_path / "a")
    assert again.pending_turns() == [turn]
    assert again.recover() == 1 and again.pending_turns() == []
    (t,) = again.history(sid)
    assert t["status"] == "failed" and "stopped" in t["error"]
    assert t["messages"][0]["text"] == "track the star" and t["calls"][0]["tool"] == "track"
    nxt = again.begin_turn(sid, "again")
    assert [h["index"] for h in again.history(sid)] == [0, 1] and nxt != turn


def test_bad_statuses_and_unknown_ids_are_typed_errors(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "a")
    with pytest.raises(NotFoundError):
        store.begin_turn("nope", "hi")
    sid = store.create_session()
    turn = store.begin_turn(sid, "hi")
    with pytest.raises(ValueError, match="status"):
        store.add_call(turn, "segment", {}, "maybe", 0.0)
    with pytest.raises(ValueError, match="done or failed"):
        store.finish_turn(turn, "x", status="pending")
    with pytest.raises(NotFoundError):
        store.add_call(10_000, "segment", {}, "ok", 0.0)


def test_postgresql_store_works_unchanged(postgres_url, tmp_path):
    _roundtrip(postgres_url, tmp_path)


def test_artifacts_can_live_in_the_database(postgres_url, tmp_path):
    """``artifacts="database"``: the bytes go to the database's own table (what replicas on
    several machines share without a shared folder); nothing is written to disk."""
    _roundtrip(postgres_url, tmp_path, artifacts="database")
    assert list(tmp_path.iterdir()) == []
    store = Store(postgres_url, "database")
    with pytest.raises(NotFoundError):
        store.files.get("0" * 64)
    with pytest.raises(NotFoundError):
        store.files.get("../etc/passwd")
    assert store.files.put(PNG) == store.files.put(PNG) == hashlib.sha256(PNG).hexdigest()


def _claims(url: str, tmp_path: Path, dead_runner: str) -> None:
    """Pending turns of a dead process are claimed once each by two processes claiming at
    once; a live process's turns are not claimed until its lease lapses."""
    import threading

    killed = Store(url, tmp_path / "a", runner=dead_runner)
    sid = killed.create_session()
    orphans = [killed.begin_turn(sid, f"turn {i}") for i in range(12)]
    # A process on another host that renews its lease: its turn is not an orphan.
    away = Store(url, tmp_path / "a", runner="elsewhere:41:1700000000", lease_s=1.0)
    live = away.begin_turn(sid, "still running elsewhere")
    claimers = [Store(url, tmp_path / "a", runner=f"replica-{i}:1:1") for i in range(2)]
    got: list[list[int]] = [[], []]
    start = threading.Barrier(2)

    def claim(i: int) -> None:
        start.wait()
        while (tid := claimers[i].claim()) is not None:
            got[i].append(tid)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got[0] + got[1]) == orphans and not set(got[0]) & set(got[1])
    assert {claimers[0].runner_of(t) for t in got[0]} <= {claimers[0].runner}
    assert claimers[1].runner_of(live) == "elsewhere:41:1700000000"
    assert away.renew() == 1 and claimers[0].claim() is None  # renewed: still its own
    time.sleep(1.2)  # the other host stopped renewing: its lease lapses
    assert claimers[0].claim() == live and claimers[1].claim() is None
    assert claimers[0].renew() == len(got[0]) + 1


def test_each_orphaned_turn_is_claimed_by_one_process_on_postgresql(
    postgres_url, tmp_path, dead_runner
):
    _claims(postgres_url, tmp_path, dead_runner)


def test_each_orphaned_turn_is_claimed_by_one_process_on_sqlite(tmp_path, dead_runner):
    _claims(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, dead_runner)


def test_an_older_database_gains_the_new_columns(tmp_path, dead_runner):
    """A database made before the migrations and before sessions could be renamed (no
    ``custom_title`` column, no versions, no ``alembic_version``) opens, is adopted — given the
    column and the table, stamped — and keeps its sessions; a pending turn's session cannot be
    deleted."""
    from sqlalchemy import create_engine, text
    from switchboard.agent import migrations

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url, tmp_path / "a")
    sid = store.create_session(owner="alice")
    store.finish_turn(store.begin_turn(sid, "hi", owner="alice"), "hello")
    store.engine.dispose()
    with create_engine(url).begin() as conn:
        conn.execute(text("ALTER TABLE sessions DROP COLUMN custom_title"))
        conn.execute(text("ALTER TABLE sessions DROP COLUMN head_id"))
        conn.execute(text("DROP TABLE versions"))
        conn.execute(text("DROP TABLE alembic_version"))
        cols = [r[1] for r in conn.execute(text("PRAGMA table_info(sessions)"))]
    assert "custom_title" not in cols and "head_id" not in cols
    assert migrations.current(create_engine(url)) is None
    again = Store(url, tmp_path / "a")
    assert again.revision == migrations.current(again.engine) == migrations.head()
    (session,) = again.sessions(owner="alice")
    assert session["title"] == "hi" and session["named"] is False
    assert again.rename_session(sid, "greetings", owner="alice")["named"] is True
    assert again.current(sid, owner="alice") is None  # versions work on the old database too
    again.finish_turn(again.begin_turn(sid, "x", [("image", PNG)], owner="alice"), "ok")
    assert again.current(sid, owner="alice")["source"] == "upload"
    killed = Store(url, tmp_path / "a", runner=dead_runner)
    killed.begin_turn(sid, "still running", owner="alice")
    with pytest.raises(SessionBusyError):
        again.delete_session(sid, owner="alice")
    assert again.recover() == 1 and again.delete_session(sid, owner="alice") == 3


def _schema_differences(url):
    """What the models say that the migrated database lacks (or has more), by Alembic's own
    comparison; empty when the migrations make exactly the models' schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from switchboard.agent.store import Base

    with create_engine(url).connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_the_migrations_make_the_models_schema(tmp_path):
    """A new database is made by the migrations, stamped at the newest revision, with exactly the
    tables, columns and indexes of the models; opening it again changes nothing."""
    from switchboard.agent import migrations

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url, tmp_path / "a")
    assert store.revision == migrations.current(store.engine) == migrations.head() == "0003"
    assert _schema_differences(url) == []
    sid = store.create_session(owner="alice")
    store.engine.dispose()
    again = Store(url, tmp_path / "a")
    assert [s["id"] for s in again.sessions(owner="alice")] == [sid]


def test_the_migrations_make_the_models_schema_on_postgresql(postgres_url, tmp_path):
    from switchboard.agent import migrations

    store = Store(postgres_url, tmp_path / "a")
    assert migrations.current(store.engine) == migrations.head()
    assert _schema_differences(postgres_url) == []


def test_the_current_image_moves_with_edits_undo_and_redo(tmp_path):
    """Uploads and edited images become the session's current version in order; undo goes to
    the one before, redo back; an edit after an undo starts a branch and keeps the old one."""
    from switchboard.core import InvalidInputError

    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "a")
    sid = store.create_session(owner="alice")
    assert store.current(sid, owner="alice") is None
    with pytest.raises(InvalidInputError, match="nothing to undo"):
        store.undo(sid, owner="alice")
    t0 = store.begin_turn(sid, "segment the circle", [("image", PNG)], owner="alice")
    store.finish_turn(t0, "mask", outputs=[("mask", b"m")])  # a mask is no new version
    up = store.current(sid, owner="alice")
    assert (up["source"], up["turn_id"], up["parent_id"]) == ("upload", t0, None)
    t1 = store.begin_turn(sid, "make it blue", owner="alice", current=up["id"])
    (att,) = store.turn(t1, owner="alice")["messages"][0]["artifacts"]
    assert (att["sha256"], att["kind"], att["name"]) == (up["sha256"], "image", "current")
    store.finish_turn(t1, "done", outputs=[("edited", PNG + b"1"), ("edited", PNG + b"2")])
    two = store.current(sid, owner="alice")
    one = store.undo(sid, owner="alice")
    assert two["source"] == "edited" and one["id"] == two["parent_id"]
    assert store.undo(sid, owner="alice")["id"] == up["id"]
    assert store.redo(sid, owner="alice")["id"] == one["id"]
    # A new edit from here branches; the undone version stays stored, redo takes the newest.
    t2 = store.begin_turn(sid, "make it red", owner="alice", current=one["id"])
    store.finish_turn(t2, "done", outputs=[("edited", PNG + b"3")])
    branch = store.current(sid, owner="alice")
    assert branch["parent_id"] == one["id"] and len(store.versions(sid, owner="alice")) == 4
    store.undo(sid, owner="alice")
    assert store.redo(sid, owner="alice")["id"] == branch["id"]
    with pytest.raises(InvalidInputError, match="nothing to redo"):
        store.redo(sid, owner="alice")
    with pytest.raises(NotFoundError):
        store.undo(sid, owner="bob")
    store.begin_turn(sid, "still running", owner="alice")
    with pytest.raises(SessionBusyError):
        store.undo(sid, owner="alice")
