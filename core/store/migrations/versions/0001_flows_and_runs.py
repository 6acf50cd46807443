"""flows and runs

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from activedataflow.store.schema import NAME_LENGTH, id_type, timestamp_type
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", id_type(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("namespace", sa.String(NAME_LENGTH), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.String(255)),
        sa.Column("interval_seconds", sa.Integer()),
        sa.Column("time_zone", sa.String(64)),
        sa.Column("concurrency_policy", sa.String(16), nullable=False),
        sa.Column("last_run_at", timestamp_type()),
        sa.Column("last_run_status", sa.String(16)),
        sa.Column("next_run_at", timestamp_type()),
        sa.Column("cursor", sa.JSON()),
        sa.Column("created_at", timestamp_type(), nullable=False),
        sa.Column("updated_at", timestamp_type(), nullable=False),
        sa.UniqueConstraint("namespace", "name", name="uq_flows_namespace_name"),
    )
    op.create_index("ix_flows_enabled_next_run_at", "flows", ["enabled", "next_run_at"])
    op.create_table(
        "runs",
        sa.Column("id", id_type(), primary_key=True, autoincrement=True),
        sa.Column("flow_id", id_type(), sa.ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("run_name", sa.String(NAME_LENGTH)),
        sa.Column("scheduled_for", timestamp_type()),
        sa.Column("started_at", timestamp_type()),
        sa.Column("ended_at", timestamp_type()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_backtrace", sa.Text()),
        sa.Column("records_read", sa.BigInteger(), nullable=False),
        sa.Column("records_written", sa.BigInteger(), nullable=False),
        sa.Column("records_failed", sa.BigInteger(), nullable=False),
        sa.Column("runner_id", sa.String(255)),
        sa.Column("lease_expires_at", timestamp_type()),
        sa.Column("created_at", timestamp_type(), nullable=False),
        sa.UniqueConstraint("flow_id", "run_name", name="uq_runs_flow_run_name"),
    )
    op.create_index("ix_runs_flow_created_at", "runs", ["flow_id", "created_at"])
    op.create_index("ix_runs_status_lease", "runs", ["status", "lease_expires_at"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("flows")
