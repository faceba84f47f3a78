"""The conversation store: sessions, turns, calls and content-addressed artifacts survive a
restart, pending turns are recovered, owners see only their own — on SQLite and on a real
PostgreSQL server when one can be started here."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from switchboard.agent.store import NotFoundError, SessionBusyError, Store

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def _roundtrip(url: str, root: Path) -> None:
    store = Store(url, root / "artifacts")
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

    again = Store(url, root / "artifacts")  # a restart: a new engine on the same database
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


def test_a_turn_cut_off_before_it_finished_is_recovered_as_failed(tmp_path):
    """A killed process leaves its accepted request pending (user message and media stored);
    on restart it is marked failed with a reason, and the session carries on."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    store = Store(url, tmp_path / "a")
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    """A throwaway PostgreSQL server on loopback (initdb + pg_ctl from the machine's
    PostgreSQL install; as the ``postgres`` user when the tests run as root)."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("no PostgreSQL server install here (initdb/pg_ctl not on PATH)")
    prefix: list[str] = []
    root = tmp_path_factory.mktemp("pg")
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: initdb refuses root")
        prefix = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        root.chmod(0o700)
        for parent in root.parents:  # postgres must be able to reach its data folder
            if str(parent).startswith(str(tmp_path_factory.getbasetemp().parent)):
                parent.chmod(parent.stat().st_mode | 0o711)
    data, port = root / "data", _free_port()
    try:
        subprocess.run(
            [*prefix, initdb, "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *prefix,
                pg_ctl,
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-o",
                f"-p {port} -k {root} -h 127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        detail = getattr(e, "stderr", b"") or b""
        pytest.skip(f"could not start PostgreSQL: {e} {detail.decode(errors='replace')[-300:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        time.sleep(0.1)


def test_postgresql_store_works_unchanged(postgres_url, tmp_path):
    _roundtrip(postgres_url, tmp_path)


def test_an_older_database_gains_the_new_columns(tmp_path):
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
    again.begin_turn(sid, "still running", owner="alice")
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
    assert store.revision == migrations.current(store.engine) == migrations.head() == "0001"
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
