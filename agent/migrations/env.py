"""Alembic's environment for the store: run by :func:`switchboard.agent.migrations.upgrade`
(on every :class:`~switchboard.agent.store.Store` start) with the store's open connection, or by
the ``alembic`` command for a new revision (``alembic -c agent/migrations/alembic.ini revision
--autogenerate -m "…"`` against a database at head)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from switchboard.agent.store import Base

config = context.config
target = Base.metadata
connection = config.attributes.get("connection")
if connection is None:  # the alembic command line: the URL from alembic.ini or -x url=…
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    connection = create_engine(url).connect()
# SQLite cannot ALTER most things in place: batch mode copies the table instead.
context.configure(
    connection=connection,
    target_metadata=target,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
