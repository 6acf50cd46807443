"""Cursor values (``Batch.cursor``): JSON-safe, and back to an equal value (:func:`encode_cursor_value`)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["decode_cursor_value", "encode_cursor_value"]


def encode_cursor_value(value: Any) -> Any:
    """A JSON-safe form of a column value that :func:`decode_cursor_value` turns back into an equal value.

    JSON scalars stay as they are; Decimal, datetime, date, time, bytes and UUID
    become one-key objects (``{"$decimal": "12.30"}``) so that nothing is lost.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else {"$float": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dt.datetime):
        if isinstance(value.tzinfo, ZoneInfo) and value.tzinfo.key:
            # keep the zone and the fold (psycopg returns timestamptz in the session's zone): an offset is ambiguous
            return {"$datetime": [value.isoformat(), value.tzinfo.key, value.fold]}
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$time": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    raise TypeError(f"a {type(value).__name__} value cannot be used as a cursor")


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "$decimal": decimal.Decimal,
    "$datetime": lambda v: (
        dt.datetime.fromisoformat(v[0]).replace(tzinfo=ZoneInfo(v[1]), fold=v[2]) if isinstance(v, list)
        else dt.datetime.fromisoformat(v)
    ),
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "$bytes": base64.b64decode,
    "$uuid": uuid.UUID,
    "$float": float,
}


def decode_cursor_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        (tag, payload), = value.items()
        if tag in _DECODERS:
            return _DECODERS[tag](payload)
    return value


