"""The handlers of DataFlow events, one module per event, called by kopf's decorators in ``main.py``.

Each takes the resource body (a mapping), a mutable ``status`` patch and a
:class:`~activedataflow.operator.config.Context` (configuration, a :class:`~activedataflow.kube.client.KubeApi`,
the store) and either returns or raises ``kopf.PermanentError`` / ``kopf.TemporaryError``;
``status`` is filled in either way (kopf applies it even when a handler fails).

Idempotence: every object has a deterministic name, every write is a
create-or-patch (server-side apply) or a create that treats AlreadyExists as
done, and the run-now acknowledgement is written only after its Job exists. The
operator can die at any line; the next pass converges to the same state.

* :mod:`.handle_reconcile`: create, update of the spec;
* :mod:`.handle_resync`: the pass that resumes every DataFlow at the operator's start and repairs drift
  every 600 s after (a thread of the operator, not a kopf timer or resume handler);
* :mod:`.handle_run_now`: the ``activedataflow.io/run-now`` annotation;
* :mod:`.handle_delete`: deletion (afterwards: no finalizer);
* :mod:`.handle_startup`: the operator's start (records of DataFlows deleted meanwhile).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = ["plain"]


def plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A deep, plain-dict copy of a resource body (kopf's Body is a read-only view)."""
    return copy.deepcopy(dict(body))
