"""Runners and leases on turns; artifact bytes in the database.

Several processes may share one database (``switchboard serve`` replicas over PostgreSQL): a
pending turn names the process running it (``runner``) and until when its claim holds
(``lease_until``), so a process resumes only the turns whose runner died, and never one that
another process resumes. ``artifact_blobs`` holds artifact bytes for a deployment that keeps
them in the database (``SWITCHBOARD_ARTIFACTS=database``) rather than in a shared folder.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from before the migrations may have these already (its tables were
    # made by a newer program than its missing stamp says): add only what is missing.
    found = sa.inspect(op.get_bind())
    have = {c["name"] for c in found.get_columns("turns")}
    indexes = {i["name"] for i in found.get_indexes("turns")}
    with op.batch_alter_table("turns") as batch:
        if "runner" not in have:
            batch.add_column(sa.Column("runner", sa.String(length=96), nullable=True))
        if "lease_until" not in have:
            batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        if "ix_turns_runner" not in indexes:
            batch.create_index("ix_turns_runner", ["runner"])
    if "artifact_blobs" not in found.get_table_names():
        op.create_table(
            "artifact_blobs",
            sa.Column("sha256", sa.String(length=64), nullable=False),
            sa.Column("data", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("sha256"),
        )


def downgrade() -> None:
    op.drop_table("artifact_blobs")
    with op.batch_alter_table("turns") as batch:
        batch.drop_index("ix_turns_runner")
        batch.drop_column("lease_until")
        batch.drop_column("runner")
