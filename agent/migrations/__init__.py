"""The store's schema migrations (Alembic), applied by every :class:`~switchboard.agent.store.Store`
when it opens its database.

- A new database is made by the migrations (``upgrade head``).
- A database at an older revision is upgraded.
- A database made before the migrations existed (tables, no ``alembic_version``) is adopted:
  the columns added since its tables were made are added in place (``ALTER TABLE … ADD
  COLUMN``, nullable ones only), then it is stamped with the baseline and upgraded from there.

A schema change is a new revision in ``versions/``: change the models in ``agent/store.py``,
then ``alembic -c agent/migrations/alembic.ini revision --autogenerate -m "…"`` (it compares the
models with a database at head), read what it wrote, and add a test with an older database.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

HERE = Path(__file__).parent
BASELINE = "0001"


def _config(conn: Connection):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision."""
    from alembic.script import ScriptDirectory

    cfg = _config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(cfg).get_current_head()


def current(engine: Engine) -> str | None:
    """The database's revision (None: not under migrations)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the database at ``engine`` to the newest revision (adopting a database made before
    the migrations); returns that revision."""
    from alembic import command

    with engine.begin() as conn:
        cfg = _config(conn)
        tables = set(inspect(conn).get_table_names())
        if "sessions" in tables and "alembic_version" not in tables:
            adopt(conn)
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, "head")
    return head()


def adopt(conn: Connection) -> list[str]:
    """Bring a database made before the migrations to the baseline: its missing tables made and
    the nullable columns added since its tables were made added in place. Returns the SQL run."""
    from .baseline import metadata

    baseline = metadata()
    baseline.create_all(conn)
    found = inspect(conn)
    adds = []
    for table in baseline.sorted_tables:
        have = {c["name"] for c in found.get_columns(table.name)}
        for col in table.columns:
            if col.name not in have and col.nullable and not col.primary_key:
                kind = col.type.compile(dialect=conn.dialect)
                adds.append(f'ALTER TABLE {table.name} ADD COLUMN "{col.name}" {kind}')
    for sql in adds:
        conn.execute(text(sql))
    return adds
