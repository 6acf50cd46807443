"""A real store with some of its methods replaced: what only a store that lost its data, one that stops
answering, or another runner can do at a chosen moment of a run."""

from __future__ import annotations

from typing import Any


class StoreWith:
    """``inner`` with ``overrides`` (method name -> callable taking ``inner`` first, then the call's arguments)."""

    def __init__(self, inner: Any, **overrides: Any) -> None:
        self.inner, self.overrides = inner, overrides

    def __getattr__(self, name: str) -> Any:
        if name in self.overrides:
            return lambda *args, **kwargs: self.overrides[name](self.inner, *args, **kwargs)
        return getattr(self.inner, name)
