"""An in-memory KubeApi for unit tests: objects, resourceVersions, preconditions, merge patches, events.

Semantics kept from the API server where the code under test relies on them:
create refuses an existing name (AlreadyExists); apply creates or replaces the
manifest's fields; a ``metadata.resourceVersion`` in an apply or patch is a
precondition (Conflict); the status of DataFlow/DataFlowRun is a subresource
(ignored on create and on a main-resource patch); delete cascades to dependents
whose owners are all gone (the garbage collector).
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from activedataflow.kube.client import LIST_PAGE, AlreadyExists, Conflict, Kind, event_body

from tests.secrets_scan import watch

STATUS_SUBRESOURCE = {"dataflows", "dataflowruns", "cronjobs", "jobs"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class MemoryKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        watch(self)  # the secret scan reads its events and statuses after the test
        self.requests: list[tuple[str, str, str]] = []  # (verb, plural, name)
        self._rv = itertools.count(1)

    # ----------------------------------------------------------------- helpers for tests
    def add(self, kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.create(kind, body["metadata"].get("namespace", "default"), body)

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.events]

    def names(self, kind: Kind, namespace: str) -> list[str]:
        return sorted(n for (p, ns, n) in self.objects if p == kind.plural and ns == namespace)

    # ----------------------------------------------------------------- KubeApi
    def _stamp(self, obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return obj

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        self.requests.append(("get", kind.plural, name))
        obj = self.objects.get((kind.plural, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        self.requests.append(("list", kind.plural, "" if limit is None else f"limit={limit}"))
        out = []
        for (plural, ns, _), obj in sorted(self.objects.items()):
            have = obj["metadata"].get("labels") or {}
            wanted = all(have.get(k) == v for k, v in (labels or {}).items())
            if plural == kind.plural and namespace in (ns, None) and wanted:
                out.append(copy.deepcopy(obj))
        return out[:limit]

    def pages(
        self, kind: Kind, namespace: str | None, *, labels: Mapping[str, str] | None = None, size: int = LIST_PAGE
    ) -> Iterator[list[dict[str, Any]]]:
        items = self.list(kind, namespace, labels=labels)
        chunks = [items[i:i + size] for i in range(0, len(items), size)] or [[]]
        self.requests.extend([("list", kind.plural, "")] * (len(chunks) - 1))  # a request per page
        yield from chunks

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.requests.append(("create", kind.plural, name))
        key = (kind.plural, namespace, name)
        if key in self.objects:
            raise AlreadyExists(409, f'{kind.plural} "{name}" already exists')
        obj = copy.deepcopy(dict(body))
        if kind.plural in STATUS_SUBRESOURCE:
            obj.pop("status", None)
        meta = obj["metadata"]
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            generation=1,
            creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        self.objects[key] = self._stamp(obj, kind)
        return copy.deepcopy(obj)

    def _precondition(self, current: Mapping[str, Any] | None, body: Mapping[str, Any]) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and (current is None or current["metadata"]["resourceVersion"] != wanted):
            raise Conflict(409, "the object has been modified; please apply your changes to the latest version")

    def apply(self, kind: Kind, namespace: str, body: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.requests.append(("apply", kind.plural, name))
        current = self.objects.get((kind.plural, namespace, name))
        self._precondition(current, body)
        if current is None:
            clean = copy.deepcopy(dict(body))
            clean["metadata"].pop("resourceVersion", None)
            return self.create(kind, namespace, clean)
        obj = copy.deepcopy(current)
        for key, value in body.items():
            if key == "metadata":
                for mkey in ("labels", "annotations", "ownerReferences"):
                    if mkey in value:
                        obj["metadata"][mkey] = copy.deepcopy(value[mkey])
            elif key != "status":
                obj[key] = copy.deepcopy(value)
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] += 1
        self.objects[(kind.plural, namespace, name)] = self._stamp(obj, kind)
        return copy.deepcopy(obj)

    def patch(
        self,
        kind: Kind,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any] | None:
        self.requests.append(("patch-status" if status else "patch", kind.plural, name))
        current = self.objects.get((kind.plural, namespace, name))
        if current is None:
            return None
        self._precondition(current, patch)
        body = copy.deepcopy(dict(patch))
        (body.get("metadata") or {}).pop("resourceVersion", None)
        if kind.plural in STATUS_SUBRESOURCE:
            body = {"status": body.get("status")} if status else {k: v for k, v in body.items() if k != "status"}
        obj = merge_patch(current, body)
        if obj.get("spec") != current.get("spec"):
            obj["metadata"]["generation"] += 1
        self.objects[(kind.plural, namespace, name)] = self._stamp(obj, kind)
        return copy.deepcopy(obj)

    def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        self.requests.append(("delete", kind.plural, name))
        obj = self.objects.pop((kind.plural, namespace, name), None)
        if obj is None:
            return False
        self._collect_garbage()
        return True

    def _collect_garbage(self) -> None:
        while True:
            uids = {o["metadata"]["uid"] for o in self.objects.values()}
            orphans = [
                key
                for key, o in self.objects.items()
                if (refs := o["metadata"].get("ownerReferences")) and not any(r["uid"] in uids for r in refs)
            ]
            if not orphans:
                return
            for key in orphans:
                del self.objects[key]

    def post_event(self, obj: Mapping[str, Any], *, type: str, reason: str, message: str) -> None:
        self.events.append(event_body(obj, type=type, reason=reason, message=message, now=datetime.now(UTC)))
