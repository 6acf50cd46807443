"""Runners that compete for flows, as threads or as spawned processes (importable by the children)."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta
from typing import Any, Protocol

from activedataflow.schedule import utcnow
from activedataflow.store import Counts, Store, open_store


class Gauge(Protocol):
    """How many runs of a flow are active right now, and the most ever seen (threading or multiprocessing)."""

    def enter(self) -> None: ...

    def leave(self) -> None: ...


class ThreadGauge:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self.lock:
            self.active -= 1


class ProcessGauge:
    """The same over multiprocessing shared memory (created from a spawn context)."""

    def __init__(self, ctx: Any) -> None:
        self.lock = ctx.Lock()
        self._active = ctx.Value("i", 0, lock=False)
        self._peak = ctx.Value("i", 0, lock=False)

    @property
    def peak(self) -> int:
        return int(self._peak.value)

    def enter(self) -> None:
        with self.lock:
            self._active.value += 1
            self._peak.value = max(self._peak.value, self._active.value)

    def leave(self) -> None:
        with self.lock:
            self._active.value -= 1


def runner_id() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def claim_slots(store: Store | str, name: str, namespace: str, slots: list[datetime], barrier: Any) -> list[str | None]:
    """For each slot, all claimers start together; the winner runs it. Returns the run id won per slot."""
    s = open_store(store) if isinstance(store, str) else store
    won: list[str | None] = []
    try:
        for slot in slots:
            barrier.wait(timeout=120)
            run = s.claim(
                name, namespace, now=slot, runner_id=runner_id(), lease_seconds=60, scheduled_for=slot,
                run_name=f"{name}-{int(slot.timestamp()) // 60}", next_run_at=slot + timedelta(minutes=1),
            )
            if run is not None:
                s.start_run(run.id, now=slot, lease_seconds=60)
                s.finish_run(run.id, status="success", now=slot + timedelta(seconds=1), counts=Counts())
            won.append(None if run is None else run.id)
    finally:
        if isinstance(store, str):
            s.close()
    return won


def hold_exclusively(store: Store | str, name: str, namespace: str, attempts: int, gauge: Gauge, barrier: Any) -> int:
    """Claim the flow again and again regardless of its schedule (a manual trigger storm), hold it briefly.

    Under Forbid only the store keeps two of these from running at once; the gauge records if it did not.
    """
    s = open_store(store) if isinstance(store, str) else store
    wins = 0
    try:
        barrier.wait(timeout=120)
        for _ in range(attempts):
            run = s.claim(name, namespace, now=utcnow(), runner_id=runner_id(), lease_seconds=60, require_due=False)
            if run is None:
                time.sleep(0.001)
                continue
            gauge.enter()
            s.start_run(run.id, now=utcnow(), lease_seconds=60)
            time.sleep(0.002)
            gauge.leave()
            s.finish_run(run.id, status="success", now=utcnow(), counts=Counts())
            wins += 1
    finally:
        if isinstance(store, str):
            s.close()
    return wins


def process_main(kind: str, queue: Any, *args: Any) -> None:
    """Entry point of a spawned claimer: runs ``kind`` and reports its result (or its error) on ``queue``."""
    try:
        result = {"slots": claim_slots, "hold": hold_exclusively}[kind](*args)
        queue.put(("ok", result))
    except BaseException as err:  # reported to the test, which fails with it
        queue.put(("error", repr(err)))
