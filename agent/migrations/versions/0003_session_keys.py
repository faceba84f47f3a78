"""Session keys: the names clients keep conversations under.

The OpenAI-compatible route (``/v1/chat/completions``) maps a conversation to a session by the
request's ``user`` field, or, for a client that resends the whole conversation each time, by a
hash of the messages so far; ``session_keys`` holds those names (hashed with the owner).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "session_keys" in sa.inspect(op.get_bind()).get_table_names():  # an adopted database
        return
    op.create_table(
        "session_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"]),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_session_keys_session_id", "session_keys", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_session_keys_session_id", table_name="session_keys")
    op.drop_table("session_keys")
