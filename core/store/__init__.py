"""Storage backends for flow and run records, chosen by URL.

==========================================  =====================================
``sqlite:///adf.db`` (the default)          :class:`~.sql.SqlStore` (SQLAlchemy)
``postgresql+psycopg://`` (``postgresql://``) :class:`~.sql.SqlStore`
``mysql+pymysql://`` (``mysql://``)          :class:`~.sql.SqlStore`
``redis://``, ``rediss://``                  :class:`~.redis_store.RedisStore`
``memory://``                                :class:`~.redis_store.RedisStore` on fakeredis,
                                             one server shared by the whole process
==========================================  =====================================
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ConfigError, redact
from .base import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    Counts,
    FlowKey,
    FlowRecord,
    FlowUpsert,
    RunRecord,
    RunStatus,
    Store,
    Trigger,
    UnknownRun,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_STORE_URL",
    "FINAL_STATUSES",
    "Counts",
    "FlowKey",
    "FlowRecord",
    "FlowUpsert",
    "RunRecord",
    "RunStatus",
    "Store",
    "Trigger",
    "UnknownRun",
    "open_store",
    "store_url",
]

DEFAULT_STORE_URL = "sqlite:///adf.db"
ENV_VAR = "ADF_STORE_URL"
_SQL_BACKENDS = frozenset({"sqlite", "postgresql", "postgres", "mysql", "mariadb"})
SUPPORTED = "sqlite:///PATH, postgresql+psycopg://, mysql+pymysql://, redis://, rediss:// or memory://"


def store_url(url: str | None = None) -> str:
    """The store URL in effect: the argument, else ``$ADF_STORE_URL``, else the embedded default."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_STORE_URL


def sql_url(url: str) -> sa.URL:
    """A SQLAlchemy URL with the driver we ship filled in (``postgresql://`` -> psycopg)."""
    import sqlalchemy as sa  # not at module level: `adf` imports this package and may never need SQLAlchemy

    from .engine import normalize_url

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"'{redact(url)}' is not a store URL; use {SUPPORTED}") from None
    if parsed.get_backend_name() not in _SQL_BACKENDS:
        raise ConfigError(f"unknown store URL scheme in '{redact(url)}'; use {SUPPORTED}")
    return normalize_url(parsed)


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open the store at ``url`` (else ``$ADF_STORE_URL``, else ``sqlite:///adf.db``).

    With ``migrate`` (the default) the schema is created or upgraded first, so an
    unreachable store raises :class:`~activedataflow.errors.StoreUnavailable`
    (naming the address, password masked) here, within the connect timeout.
    An unknown scheme raises :class:`~activedataflow.errors.ConfigError`.
    """
    text = store_url(url).strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    store: Store
    if scheme in ("redis", "rediss", "memory"):
        from .redis_store import RedisStore

        store = RedisStore.from_url(text)
    else:
        from .sql import SqlStore

        store = SqlStore(sql_url(text))
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
