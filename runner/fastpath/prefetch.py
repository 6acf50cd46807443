"""Read ahead: the next source page is fetched by a thread while the runner transforms and writes this one.

The database works on the next page while Python works on this one (the
driver releases the GIL while it waits), so the source's server time and
the sink's no longer add up. Memory stays bounded: the thread starts a fetch
only while fewer than ``depth`` pages are ahead of the consumer, counting the
one it is fetching, so with ``depth=1`` two pages are alive at most: the one
being written and the next one.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Prefetcher"]

_DONE = object()


class _Failed:
    def __init__(self, err: BaseException) -> None:
        self.err = err


class Prefetcher(Generic[T]):
    """Iterate ``source`` in a thread, ``depth`` items ahead. ``close()`` stops the thread and waits for it."""

    def __init__(self, source: Iterator[T], *, depth: int = 1, name: str = "adf-prefetch") -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue()  # bounded by the slots
        self._slots = threading.Semaphore(depth)  # pages fetched or being fetched, not yet taken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _slot(self) -> bool:
        """Wait until the consumer has taken a page (False once closed)."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.05):
                return True
        return False

    def _run(self) -> None:
        try:
            iterator = iter(self._source)
            while self._slot():
                try:
                    item = next(iterator)
                except StopIteration:
                    self._queue.put(_DONE)
                    return
                self._queue.put(item)
        except BaseException as err:  # handed to the consumer, raised there
            self._queue.put(_Failed(err))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                close()  # a generator's finally runs in the thread that ran it

    def __iter__(self) -> Iterator[T]:
        try:
            while True:
                item = self._queue.get()
                self._slots.release()  # the thread may fetch the next page while this one is used
                if item is _DONE:
                    return
                if isinstance(item, _Failed):
                    raise item.err
                yield item  # type: ignore[misc]
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        while True:  # drop what was read ahead
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
