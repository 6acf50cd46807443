"""runs.notified_at: when a run's notifications (``spec.notify``) were claimed for sending

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

Nullable, no default, no index: ``mark_notified`` sets it by primary key with
``UPDATE ... WHERE id = :id AND notified_at IS NULL``, so only one runner ever
sends a run's notifications. Adding a nullable column is metadata-only on every
database we support.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from activedataflow.store.schema import timestamp_type
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("notified_at", timestamp_type(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:  # SQLite before 3.35 cannot DROP COLUMN in place
        batch.drop_column("notified_at")
