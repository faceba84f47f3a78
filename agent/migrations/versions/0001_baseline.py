"""Baseline: the store's tables as of 2026-11-30 (``agent/migrations/baseline.py``).

A database made before the migrations existed is brought to this schema by
:func:`switchboard.agent.migrations.adopt` and stamped with this revision; a new one is made here.

Revision ID: 0001
Revises:
Create Date: 2026-11-30 04:49:48
"""

from __future__ import annotations

from alembic import op
from switchboard.agent.migrations.baseline import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    metadata().create_all(op.get_bind())


def downgrade() -> None:
    metadata().drop_all(op.get_bind())
