"""kopf's diff base kept in the DataFlow status (``operator/app.py``), read from an older operator's annotation."""

from __future__ import annotations

import json
from typing import Any

import kopf
from activedataflow.kube.status import DataFlowStatus
from activedataflow.operator.app import DIFFBASE_FIELD, LEGACY_DIFFBASE_KEY, PREFIX, StatusDiffBaseStorage

SPEC = {"schedule": "*/15 * * * *"}
LEGACY = f"{PREFIX}/{LEGACY_DIFFBASE_KEY}"


def body(*, annotations: dict[str, str] | None = None, status: dict[str, Any] | None = None) -> kopf.Body:
    meta: dict[str, Any] = {"name": "paid-orders", "namespace": "shop", "annotations": annotations or {}}
    return kopf.Body({"apiVersion": "activedataflow.io/v1alpha1", "kind": "DataFlow", "metadata": meta,
                      "spec": SPEC, "status": status or {}})


def test_the_diff_base_goes_into_a_status_field_the_crd_declares() -> None:
    storage = StatusDiffBaseStorage()
    patch = kopf.Patch()
    storage.store(body=body(), patch=patch, essence=storage.build(body=body()))
    assert DIFFBASE_FIELD[0] == "status" and DIFFBASE_FIELD[1] in DataFlowStatus.model_fields
    assert json.loads(patch["status"][DIFFBASE_FIELD[1]]) == {"spec": SPEC}
    assert "metadata" not in patch  # no write of the object itself


def test_the_diff_base_in_the_status_is_read_back() -> None:
    storage = StatusDiffBaseStorage()
    stored = body(status={DIFFBASE_FIELD[1]: json.dumps({"spec": {"interval": "5m"}})})
    assert storage.fetch(body=stored) == {"spec": {"interval": "5m"}}


def test_a_flow_an_older_operator_handled_is_read_from_its_annotation_and_shows_no_change() -> None:
    storage = StatusDiffBaseStorage()
    legacy = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=LEGACY_DIFFBASE_KEY)
    old = body()
    patch = kopf.Patch()
    legacy.store(body=old, patch=patch, essence=legacy.build(body=old))
    upgraded = body(annotations=dict(patch["metadata"]["annotations"]))
    assert storage.fetch(body=upgraded) == storage.build(body=upgraded)  # a resume, not a create or an update
