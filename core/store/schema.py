"""The SQL tables of the store (SQLAlchemy Core). Alembic migrations create and change them.

Timestamps are timezone-aware UTC in Python on every database: ``timestamptz``
on PostgreSQL, naive UTC ``DATETIME(6)`` on MySQL/MariaDB and naive UTC text on
SQLite, converted by :class:`UTCDateTime`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAME_LENGTH = 253  # a Kubernetes object name (DNS-1123 subdomain)


_MYSQL = ("mysql", "mariadb")


def _mysql_timestamp() -> sa.types.TypeEngine[datetime]:
    # Imported here: SQLAlchemy's MySQL dialect costs a store on PostgreSQL or SQLite ~50 ms of start-up.
    from sqlalchemy.dialects import mysql

    return mysql.DATETIME(fsp=6)


def timestamp_type() -> sa.types.TypeEngine[datetime]:
    """The column type of every timestamp (what the migrations create)."""
    return sa.DateTime(timezone=True).with_variant(_mysql_timestamp(), *_MYSQL)


def id_type() -> sa.types.TypeEngine[int]:
    """A 64-bit autoincrement key (SQLite's is INTEGER, its ROWID)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; naive UTC where the database has no time zones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        # timestamp_type() resolved for this dialect, without loading the MySQL dialect for others
        return dialect.type_descriptor(_mysql_timestamp() if dialect.name in _MYSQL else sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: the store takes timezone-aware UTC")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData()

flows = sa.Table(
    "flows",
    metadata,
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
    sa.Column("last_run_at", UTCDateTime()),
    sa.Column("last_run_status", sa.String(16)),
    sa.Column("next_run_at", UTCDateTime()),
    sa.Column("cursor", sa.JSON(none_as_null=True)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("namespace", "name", name="uq_flows_namespace_name"),
    sa.Index("ix_flows_enabled_next_run_at", "enabled", "next_run_at"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("flow_id", id_type(), sa.ForeignKey("flows.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("run_name", sa.String(NAME_LENGTH)),
    sa.Column("scheduled_for", UTCDateTime()),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("ended_at", UTCDateTime()),
    sa.Column("duration_seconds", sa.Float()),
    sa.Column("error_message", sa.Text()),
    sa.Column("error_backtrace", sa.Text()),
    sa.Column("records_read", sa.BigInteger(), nullable=False),
    sa.Column("records_written", sa.BigInteger(), nullable=False),
    sa.Column("records_failed", sa.BigInteger(), nullable=False),
    sa.Column("runner_id", sa.String(255)),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("notified_at", UTCDateTime()),  # migration 0003: notifications claimed (Store.mark_notified)
    sa.UniqueConstraint("flow_id", "run_name", name="uq_runs_flow_run_name"),
    sa.Index("ix_runs_flow_created_at", "flow_id", "created_at"),
    sa.Index("ix_runs_status_lease", "status", "lease_expires_at"),
    sa.Index("ix_runs_flow_status", "flow_id", "status"),  # migration 0002
    sa.Index("ix_runs_created_at", "created_at", "id"),  # migration 0002
)
