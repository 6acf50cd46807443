"""Engines shared within one run attempt: one per database and options, disposed when the attempt ends.

A flow's attempt opens the same database several times: the planner reflects the source and the sink,
the push-down statement runs on the sink, and the row path (or a failed push-down's fallback) opens
the source and the sink again. Each engine of its own would connect, authenticate and initialise
its dialect (server version, settings) again. Inside :func:`attempt_engines` (the executor wraps
each attempt in it) :func:`engine_for` hands out one engine per key (the connector's URL and the
options that change the engine), and :func:`release` leaves it to the attempt, which disposes them
all at its end. Outside an attempt, or in another thread than the attempt's, every caller gets an
engine of its own, disposed by :func:`release` (a thread's own connections are never another's).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: a heartbeat with nothing due never loads SQLAlchemy
    import sqlalchemy as sa

__all__ = ["EngineRegistry", "attempt_engines", "engine_for", "release"]


class EngineRegistry:
    """The engines of one attempt, by key; used only by the thread that opened it."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self._engines: dict[Hashable, sa.Engine] = {}
        self.closed = False

    def get(self, key: Hashable, make: Callable[[], sa.Engine]) -> sa.Engine:
        engine = self._engines.get(key)
        if engine is None:
            engine = self._engines[key] = make()
        return engine

    def holds(self, engine: sa.Engine) -> bool:
        return any(e is engine for e in self._engines.values())

    def __len__(self) -> int:
        return len(self._engines)

    def close(self) -> None:
        """Dispose every engine (their pooled connections close); later requests get engines of their own."""
        self.closed = True
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.dispose()


_current: contextvars.ContextVar[EngineRegistry | None] = contextvars.ContextVar("adf_engines", default=None)


@contextlib.contextmanager
def attempt_engines() -> Iterator[EngineRegistry]:
    """Share engines inside the block (one attempt); dispose them all when it ends, however it ends."""
    registry = EngineRegistry()
    token = _current.set(registry)
    try:
        yield registry
    finally:
        _current.reset(token)
        registry.close()


def _registry() -> EngineRegistry | None:
    registry = _current.get()
    if registry is None or registry.closed or registry.thread != threading.get_ident():
        return None
    return registry


def engine_for(key: Hashable, make: Callable[[], sa.Engine]) -> sa.Engine:
    """The attempt's engine for ``key`` (made by ``make`` the first time); outside an attempt, ``make()``."""
    registry = _registry()
    return make() if registry is None else registry.get(key, make)


def release(engine: sa.Engine) -> None:
    """A caller is done with ``engine``: disposed now, unless the attempt holds it (disposed at its end)."""
    registry = _current.get()
    if registry is None or not registry.holds(engine):
        engine.dispose()
