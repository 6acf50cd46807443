"""indexes for the store at scale: a flow's runs by status, every run by age

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

``ix_runs_flow_status`` answers what every claim, ``active_runs`` and ``prune_runs`` ask
(this flow's pending/in_progress runs, or its runs of one status) without reading the flow's
whole history; ``ix_runs_created_at`` gives ``list_runs`` over all flows its newest runs
without sorting every run. Plain ``CREATE INDEX`` (in the migration's transaction): on a store's
tables, thousands of rows, it takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_flow_status", "runs", ["flow_id", "status"])
    op.create_index("ix_runs_created_at", "runs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_created_at", table_name="runs")
    op.drop_index("ix_runs_flow_status", table_name="runs")
