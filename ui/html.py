"""Escaping by construction: every value put into a page goes through :func:`render` or :func:`esc`.

:class:`Safe` marks text that is already HTML (a fragment built by these helpers);
everything else (flow names, errors, specs, numbers) is escaped, quotes included, so
it is safe in element content and in quoted attribute values alike.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

__all__ = ["Safe", "esc", "join", "render"]


class Safe(str):
    """A string that is HTML already; :func:`esc` passes it through unchanged."""

    __slots__ = ()


def esc(value: object) -> Safe:
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value), quote=True))


def render(template: str, **values: object) -> Safe:
    """``template.format(...)`` with every value escaped (``Safe`` values as they are).

    The template is the programmer's constant, never data.
    """
    return Safe(template.format(**{key: esc(value) for key, value in values.items()}))


def join(parts: Iterable[object], sep: str = "") -> Safe:
    return Safe(sep.join(esc(part) for part in parts))
