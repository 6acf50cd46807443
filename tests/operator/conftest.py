"""Unit-test fixtures for the operator: DataFlow bodies as the API server hands them over."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from activedataflow.model import parse_dataflow
from activedataflow.operator.cronjob import RunnerSettings

EXAMPLE: dict[str, Any] = {
    "apiVersion": "activedataflow.io/v1alpha1",
    "kind": "DataFlow",
    "metadata": {"name": "paid-orders", "namespace": "shop"},
    "spec": {
        "schedule": "*/15 * * * *",
        "timeZone": "Europe/Berlin",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 300,
        "successfulRunsHistoryLimit": 3,
        "failedRunsHistoryLimit": 1,
        "runtime": {"type": "cronjob", "timeoutSeconds": 3600, "retries": {"limit": 3, "backoffSeconds": 30}},
        "source": {
            "type": "sql",
            "connection": {"secretRef": {"name": "shop-db", "key": "url"}},
            "table": "orders",
        },
        "sink": {
            "type": "sql",
            "connection": {"secretRef": {"name": "warehouse-db", "key": "dsn"}},
            "table": "fact_orders",
            "mode": "upsert",
            "uniqueBy": ["id"],
        },
    },
}


def dataflow_body(name: str = "paid-orders", namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    """A DataFlow as the API server returns it (uid, generation), with spec fields overridden."""
    body = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1}
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def dataflow(**spec: Any):
    return parse_dataflow(dataflow_body(**spec))


@pytest.fixture
def runner() -> RunnerSettings:
    return RunnerSettings(image="registry.example/adf:1.2", service_account="adf-runner")
