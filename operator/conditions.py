"""The Ready condition a pass reports, and failures turned into kopf retries with backoff.

Each function takes the DataFlow body (a plain dict), the mutable ``status`` patch of the pass
and the :class:`~.config.Context`; kopf applies ``status`` even when a handler raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import kopf

from ..errors import StoreUnavailable, redact
from ..kube import status as st
from ..kube.client import KubeError
from .config import Context

__all__ = ["backoff", "not_ready", "only_changes", "ready", "reconciled_at_this_generation", "reported"]


def backoff(retry: int) -> float:
    """Seconds before retry number ``retry`` (5, 10, 20 ... at most 5 minutes)."""
    return float(min(300, 5 * 2 ** min(retry, 10)))


def ready(
    obj: Mapping[str, Any], status: MutableMapping[str, Any], ctx: Context, ok: bool, reason: str, message: str
) -> bool:
    """Write the Ready condition; True if its status or reason changed (worth an Event)."""
    previous = (obj.get("status") or {}).get("conditions")
    before = st.condition(previous)
    generation = obj["metadata"].get("generation")
    cond = st.Condition(type=st.READY, status="True" if ok else "False", reason=reason, message=message)
    status["conditions"] = st.set_condition(previous, cond, generation=generation, now=ctx.clock())
    status["observedGeneration"] = generation
    return before is None or before.get("status") != cond.status or before.get("reason") != reason


def not_ready(
    obj: Mapping[str, Any],
    status: MutableMapping[str, Any],
    ctx: Context,
    reason: str,
    message: str,
    *,
    always_event: bool = False,
) -> None:
    if ready(obj, status, ctx, False, reason, message) or always_event:
        ctx.kube.post_event(obj, type="Warning", reason=reason, message=message)


@contextmanager
def reported(obj: Mapping[str, Any], status: MutableMapping[str, Any], ctx: Context, retry: int) -> Iterator[None]:
    """Store and API failures -> Ready=False with the reason, then a retry with backoff."""
    try:
        yield
    except StoreUnavailable as err:
        message = redact(str(err))
        not_ready(obj, status, ctx, st.STORAGE_UNAVAILABLE, message)
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None
    except (KubeError, OSError) as err:
        message = f"Kubernetes API: {redact(str(err))}"
        not_ready(obj, status, ctx, st.KUBERNETES_ERROR, message)
        raise kopf.TemporaryError(message, delay=backoff(retry)) from None


def reconciled_at_this_generation(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the current generation: a whole pass for this spec completed (a pass sets it
    last), so whatever that pass did (such as taking the flow out of the heartbeat CronJob) is done."""
    status = obj.get("status") or {}
    generation = obj["metadata"].get("generation")
    cond = st.condition(status.get("conditions"))
    return (generation is not None and status.get("observedGeneration") == generation and cond is not None
            and cond.get("status") == "True")


@contextmanager
def only_changes(obj: Mapping[str, Any], status: MutableMapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Collect the status fields a pass computes; only those that differ from the body's status go into
    ``status`` (also when the pass raises). An unchanged flow then costs kopf no status patch: a restart
    or a resync of an idle operator writes nothing."""
    current = obj.get("status") or {}
    out: dict[str, Any] = {}
    try:
        yield out
    finally:
        status.update({key: value for key, value in out.items() if current.get(key) != value})

