"""Fault points: the n-th request a client sends through a :class:`~tests.faults.toxiproxy.Proxy`.

:func:`watching` hooks the drivers at the place each sends a request on the wire (psycopg's
``execute``/``executemany``/``copy``/``commit``, PyMySQL's ``_execute_command``, redis-py's
``send_packed_command``) and tells an :class:`Injector` before each request to a proxied port.
The injector fires its fault at the ``at``-th request that matches (counted from 0), once: the
fault is the proxy's, at the TCP level, so the runner sees what it would see in production. A
``phase`` (the store method being called, ``claim``, ``renew_lease``, ``finish_run``...) narrows
the requests counted to those made inside that call, from whichever thread.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
import pymysql.connections
import pytest
import redis.connection

from tests.faults.toxiproxy import Proxy

Mode = Literal["cut", "reset", "ack_lost", "call"]
MODES: tuple[Mode, ...] = ("cut", "reset", "ack_lost")


@dataclass
class Injector:
    """Fires ``mode`` on ``proxy`` before the ``at``-th matching request through it.

    * ``cut``: the proxy goes down (an outage) and stays down until the test restores it;
    * ``reset``: every open connection through it dies; new ones get through (a blip);
    * ``ack_lost``: the request reaches the server, the answer never comes back;
    * ``call``: ``action()`` runs first (another client takes a lock...), the request goes on.
    """

    proxy: Proxy
    at: int
    mode: Mode
    phase: str | None = None  # count only requests made inside this store method
    match: Callable[[str], bool] = lambda _text: True
    action: Callable[[], None] | None = None
    seen: list[str] = field(default_factory=list)  # the matching requests, in order
    fired: threading.Event = field(default_factory=threading.Event)  # the fault's request came
    done: threading.Event = field(default_factory=threading.Event)  # ... and the fault has been dealt
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _awaiting: bool = False  # answers are being lost until the client has read one

    def request(self, port: int | None, phase: str | None, text: str, send: Callable[[], Any], *,
                answered: bool = True) -> Any:
        """``answered``: ``send()`` returns once the answer came (psycopg, PyMySQL); False: it returns once
        sent and :meth:`answer` is told when the answer was read (redis-py)."""
        if port != self.proxy.port or self.fired.is_set():
            return send()
        if self.phase is not None and phase != self.phase:
            return send()
        if not self.match(text):
            return send()
        with self._lock:
            index = len(self.seen)
            self.seen.append(text)
            fire = index == self.at and not self.fired.is_set()
            if fire:
                self.fired.set()
        if not fire:
            return send()
        if self.mode == "ack_lost" and not answered:
            self.proxy.lose_answers()
            self._awaiting = True
            try:
                return send()
            except BaseException:  # not even sent: no answer to wait for
                self.answer(self.proxy.port)
                raise
        try:
            if self.mode == "ack_lost":
                with self.proxy.ack_lost():
                    return send()
            if self.mode == "call":
                assert self.action is not None
                self.action()
            elif self.mode == "cut":
                self.proxy.cut()
            else:
                self.proxy.reset()
            return send()
        finally:
            self.done.set()

    def answer(self, port: int | None) -> None:
        """The client read (or failed to read) an answer on ``port``: a lost answer has been dealt."""
        if port == self.proxy.port and self._awaiting:
            self._awaiting = False
            self.proxy.answer_again()
            self.done.set()


class Hooks:
    """The drivers' hooks (installed once per test by :func:`watching`); ``injector`` is the fault armed now."""

    def __init__(self) -> None:
        self.injector: Injector | None = None
        self._local = threading.local()

    def request(self, port: int | None, text: str, send: Callable[[], Any], *, answered: bool = True) -> Any:
        injector = self.injector
        if injector is None:
            return send()
        return injector.request(port, getattr(self._local, "phase", None), text, send, answered=answered)

    def answer(self, port: int | None) -> None:
        if self.injector is not None:
            self.injector.answer(port)

    @contextlib.contextmanager
    def in_phase(self, name: str) -> Iterator[None]:
        before = getattr(self._local, "phase", None)
        self._local.phase = name
        try:
            yield
        finally:
            self._local.phase = before

    def phases(self, monkeypatch: pytest.MonkeyPatch, target: Any, *names: str) -> None:
        """Wrap ``target``'s methods ``names`` so that the requests they make are in their phase."""
        for name in names:
            method = getattr(target, name)

            @functools.wraps(method)
            def wrapper(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
                with self.in_phase(_name):
                    return _method(*args, **kwargs)

            monkeypatch.setattr(target, name, wrapper)


def _text(query: Any) -> str:
    if isinstance(query, bytes):
        return query.decode(errors="replace")
    return query if isinstance(query, str) else repr(query)


def _pg_port(conn: psycopg.Connection[Any]) -> int | None:
    try:
        return int(conn.info.port)
    except psycopg.Error:  # a closed connection
        return None


def watching(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    """Route every driver request through :meth:`Hooks.request` (undone by ``monkeypatch``)."""
    hooks = Hooks()

    def cursor_method(name: str) -> None:
        original = getattr(psycopg.Cursor, name)

        def hooked(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
            return hooks.request(_pg_port(self.connection), _text(query),
                                 lambda: original(self, query, *args, **kwargs))

        monkeypatch.setattr(psycopg.Cursor, name, hooked)

    for name in ("execute", "executemany", "copy"):
        cursor_method(name)
    pg_commit = psycopg.Connection.commit
    monkeypatch.setattr(psycopg.Connection, "commit",
                        lambda self: hooks.request(_pg_port(self), "COMMIT", lambda: pg_commit(self)))

    my_command = pymysql.connections.Connection._execute_command

    def my_hooked(self: Any, command: int, sql: Any) -> Any:
        return hooks.request(self.port, _text(sql), lambda: my_command(self, command, sql))

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", my_hooked)

    redis_send = redis.connection.AbstractConnection.send_packed_command

    def redis_hooked(self: Any, command: Any, check_health: bool = True) -> Any:
        text = _text(command if isinstance(command, bytes | str) else b"".join(command))
        return hooks.request(getattr(self, "port", None), text, lambda: redis_send(self, command, check_health),
                             answered=False)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", redis_hooked)
    redis_read = redis.connection.AbstractConnection.read_response

    def redis_read_hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return redis_read(self, *args, **kwargs)
        finally:
            hooks.answer(getattr(self, "port", None))

    monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", redis_read_hooked)
    return hooks
