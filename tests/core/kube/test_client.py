"""RestKube against the real API server: LIST pages and their continue tokens."""

from __future__ import annotations

from activedataflow.kube.client import DATAFLOW, ApiClientTransport, RestKube

from tests.k8s.cluster import Cluster
from tests.k8s.test_operator_e2e import dataflow


def test_pages_follow_the_continue_token_until_every_object_is_listed_once(kube_crds: Cluster, namespace: str) -> None:
    names = [f"flow-{i}" for i in range(5)]
    kube_crds.apply([dataflow(name, namespace) for name in names])
    api = RestKube(ApiClientTransport(kube_crds.api_client()))
    try:
        pages = [[o["metadata"]["name"] for o in page] for page in api.pages(DATAFLOW, namespace, size=2)]
        first = api.list(DATAFLOW, namespace, limit=1)
        every = api.list(DATAFLOW, namespace)
    finally:
        api.close()
    assert [len(p) for p in pages] == [2, 2, 1] and sorted(n for p in pages for n in p) == names
    assert len(first) == 1 and first[0]["kind"] == "DataFlow"  # items carry their kind, as a GET's do
    assert sorted(o["metadata"]["name"] for o in every) == names


def test_an_empty_namespace_is_one_empty_page(kube_crds: Cluster, namespace: str) -> None:
    api = RestKube(ApiClientTransport(kube_crds.api_client()))
    try:
        assert list(api.pages(DATAFLOW, namespace)) == [[]]
    finally:
        api.close()
