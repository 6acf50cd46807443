"""Errors shared by the runner, the operator and the command line.

Two families matter to a user:

* :class:`UserError` — something the user can fix (a bad manifest, an unknown
  table, an unreachable database). The CLI exits 2 with its one-line message;
  the operator reports it as ``Ready=False`` with the message. Messages name the
  field path or the address, never a secret.
* :class:`RunFailed` — a flow ran and failed; the CLI exits 1.
"""

from __future__ import annotations

import re

__all__ = [
    "ConfigError",
    "ConnectorError",
    "IllegalTransition",
    "RunFailed",
    "StoreUnavailable",
    "UnknownFlow",
    "UserError",
    "redact",
]


class UserError(Exception):
    """An error the user caused and can fix; exit status 2."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(UserError):
    """A manifest or option does not validate. ``field`` is the dotted path."""


class UnknownFlow(UserError):
    """No flow record of that name exists in the store."""


class StoreUnavailable(UserError):
    """The storage backend cannot be reached. The message names the address."""


class ConnectorError(UserError):
    """A source or sink is misconfigured or unreachable (unknown table/column...)."""


class IllegalTransition(Exception):
    """A run status change that the lifecycle does not allow."""


class RunFailed(Exception):
    """A flow run failed; exit status 1."""

    exit_code = 1


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|token|secret)=([^&\s]+)")


def redact(text: str) -> str:
    """Remove credentials from URLs and ``password=`` style parameters in ``text``.

    Every message that may carry a connection URL (errors, logs, status) goes
    through this, so a secret never reaches a resource, a log line or stderr.
    """
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}=***", text)
