"""A guard against a hang: run a call in a thread and fail the test if it has not finished in time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

GUARD_SECONDS = 60


def bounded(fn: Callable[[], Any], *, hang: str, seconds: float = GUARD_SECONDS) -> Any:
    """fn() in a thread: its result, or its exception re-raised; the test fails with ``hang`` if it has not
    finished within ``seconds``. The guard only catches a hang: the tests assert on the outcome."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as err:  # handed to the test, which asserts on it
            outcome["error"] = err
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    assert done.wait(seconds), hang
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
