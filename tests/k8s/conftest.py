"""Fixtures for tests against the real control plane (etcd + kube-apiserver + kube-controller-manager).

``kube``         session-scoped :class:`tests.k8s.cluster.Cluster`, started once per test session
``kube_crds``    the same cluster with ``crds/`` applied and Established
``namespace``    a fresh namespace for one test, deleted afterwards
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.k8s.cluster import Cluster, control_plane


@pytest.fixture(scope="session")
def kube() -> Iterator[Cluster]:
    with control_plane() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kube_crds(kube: Cluster) -> Cluster:
    kube.apply_crds()
    return kube


@pytest.fixture
def namespace(kube: Cluster) -> Iterator[str]:
    name = kube.namespace()
    yield name
    kube.delete_namespace(name)
