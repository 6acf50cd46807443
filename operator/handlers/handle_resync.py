"""The periodic resync: the reconcile pass again, which repairs drift (a CronJob deleted by hand) and
refreshes ``nextRunAt``, repeating no Event for an unchanged invalid spec."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ..config import Context
from .handle_reconcile import reconcile_flow

__all__ = ["resync_flow"]


def resync_flow(body: Mapping[str, Any], *, status: MutableMapping[str, Any], ctx: Context, retry: int = 0) -> None:
    reconcile_flow(body, status=status, ctx=ctx, retry=retry, resync=True)
