"""The DataFlows of the tests, built in one place: the manifest around a spec, the SQL source and sink the
tests read and write, and the flow of the executor's properties and of the fault matrix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from activedataflow.model import GROUP_VERSION, DataFlow, parse_dataflow

# The orders table and the transform of the README's flow: what the transform tests and bench/transforms.py run.
ORDERS = ("id", "customer_id", "amount", "status", "updated_at")
CONTRACT_STEPS = [
    {"rename": {"customer_id": "customer"}},
    {"filter": "row.amount > 0"},
    {"set": {"amount_cents": "int(row.amount * 100.0)"}},
    {"drop": ["amount"]},
]


def manifest_of(spec: dict[str, Any], *, name: str = "f", namespace: str | None = None) -> dict[str, Any]:
    """A DataFlow manifest (a dict, as YAML or the API server has it) holding ``spec``."""
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {"apiVersion": GROUP_VERSION, "kind": "DataFlow", "metadata": metadata, "spec": spec}


def manifest_of_flow(flow: DataFlow) -> dict[str, Any]:
    """``flow`` as a manifest again (to apply to the API server, or to write for ``adf run``)."""
    return manifest_of(flow.spec_dict(), name=flow.name, namespace=flow.namespace)


def dataflow_of(spec: dict[str, Any], *, name: str = "f", namespace: str | None = None) -> DataFlow:
    """The validated DataFlow of a manifest holding ``spec``."""
    return parse_dataflow(manifest_of(spec, name=name, namespace=namespace))


def dataflow(
    *, source: dict[str, Any], sink: dict[str, Any], name: str = "f", namespace: str | None = None,
    transform: list[dict[str, Any]] | None = None, interval: str = "5m", **spec: Any,
) -> DataFlow:
    """A flow from ``source`` to ``sink`` every ``interval``; ``spec``: its other fields (``runtime``...)."""
    body = {"interval": interval, **spec, "source": source, "sink": sink}
    if transform is not None:
        body["transform"] = transform
    return dataflow_of(body, name=name, namespace=namespace)


def sql_source(url: str, table: str = "src", **fields: Any) -> dict[str, Any]:
    return {"type": "sql", "connection": {"url": url}, "table": table, **fields}


def sql_sink(url: str, table: str = "dst", *, mode: str = "insert", **fields: Any) -> dict[str, Any]:
    """A SQL sink; an upsert keys on ``id`` unless ``uniqueBy`` is given."""
    sink = {"type": "sql", "connection": {"url": url}, "table": table, "mode": mode, **fields}
    if mode == "upsert":
        sink.setdefault("uniqueBy", ["id"])
    return sink


# src (id, amount, status, updated_at) -> dst (id, status, updated_at, cents): the paid rows, cents = amount * 2
PAID_CENTS: list[dict[str, Any]] = [
    {"filter": "row.status == 'paid'"},
    {"set": {"cents": "row.amount * 2"}},
    {"drop": ["amount"]},
]


def paid_cents_rows(src_rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What PAID_CENTS makes of ``src_rows``: the dst rows (id, status, updated_at, cents), sorted."""
    return sorted((r["id"], r["status"], r["updated_at"], r["amount"] * 2) for r in src_rows if r["status"] == "paid")


def paid_cents(
    src_url: str, sink_url: str, *, name: str, namespace: str, mode: str = "upsert", transaction: str = "batch",
    src_batch: int = 7, sink_batch: int = 5, incremental: bool = True, retries: int = 0,
) -> DataFlow:
    """The flow of the executor's properties and of the fault matrix: PAID_CENTS from src to dst, the cursor
    on ``updated_at`` when ``incremental``, ``retries`` attempts more without backoff."""
    cursor = {"incremental": {"cursorColumn": "updated_at"}} if incremental else {}
    return dataflow(
        name=name, namespace=namespace, runtime={"retries": {"limit": retries, "backoffSeconds": 0}},
        source=sql_source(src_url, batchSize=src_batch, **cursor), transform=PAID_CENTS,
        sink=sql_sink(sink_url, mode=mode, batchSize=sink_batch, transaction=transaction),
    )
