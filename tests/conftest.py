"""Shared fixtures: real servers (session scope) and a fresh database/keyspace per test."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from tests import services

if TYPE_CHECKING:
    from activedataflow.store import Store
from tests.k8s.cluster import Cluster, control_plane
from tests.k8s.node import Node, real_node

# every test's output is scanned for the secrets the tests use; pytester runs that scan on purpose-made leaks
pytest_plugins = ["tests.secrets_scan", "pytester"]


# --------------------------------------------------------------------------- markers of the servers a test starts
# Each server fixture and the marker of what it starts. A test that uses one, directly or through other
# fixtures, is marked at collection, so `pytest -m "not postgres"` leaves out exactly the tests that start
# PostgreSQL. A fixture asked for at run time (request.getfixturevalue) is not known at collection: its test
# must carry the marker itself (a parameter's marks=), or it fails under CI.
SERVER_MARKERS = {"pg_server": "postgres", "redis_server": "redis", "mysql_server": "mysql", "kube": "k8s",
                  "node": "node"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())  # the closure: every fixture it needs, transitively
        for fixture, marker in SERVER_MARKERS.items():
            if fixture in used and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


def unmarked_servers(item: pytest.Item, fixtures: list[str]) -> list[str]:
    """The server fixtures among ``fixtures`` whose marker ``item`` lacks."""
    return [f"{fixture} (marker {marker})" for fixture, marker in SERVER_MARKERS.items()
            if fixture in fixtures and item.get_closest_marker(marker) is None]


@pytest.fixture(autouse=True)
def _servers_are_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the test: the servers it got through getfixturevalue carry their markers (under CI a failure)."""
    yield
    missing = unmarked_servers(request.node, request.fixturenames)
    if missing:
        why = (f"{request.node.nodeid} started {', '.join(missing)} through request.getfixturevalue without the "
               "marker: add it to the parameter (pytest.param(..., marks=...)) or to the test")
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        warnings.warn(why, pytest.PytestWarning, stacklevel=1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with services.postgres_server() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    with services.redis_server() as url:
        yield url


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """The real Redis, flushed before the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushdb()
    client.close()
    yield redis_server


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[str]:
    with services.mysql_server() as url:
        yield url


@pytest.fixture
def mysql_url(mysql_server: str) -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mysql_server)
    with admin.begin() as c:
        c.execute(sa.text(f"CREATE DATABASE `{name}`"))
    try:
        yield sa.make_url(mysql_server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.begin() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open store at the ``store_url`` the test's folder or module parametrizes, closed afterwards."""
    from activedataflow.store import open_store

    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def memory_url() -> Iterator[str]:
    """memory:// with the process-wide emulator emptied before and after the test."""
    from activedataflow.store import open_store
    from activedataflow.store.redis_store import RedisStore

    store = open_store("memory://", migrate=False)
    assert isinstance(store, RedisStore)
    store.r.flushall()
    yield "memory://"
    store.r.flushall()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'adf.db'}"


# --------------------------------------------------------------------------- Kubernetes
# Defined here (not in tests/k8s/) so every test folder shares ONE control plane per session.


@pytest.fixture(scope="session")
def kube() -> Iterator[Cluster]:
    """The real control plane (etcd + kube-apiserver + kube-controller-manager), once per session."""
    with control_plane() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kube_crds(kube: Cluster) -> Cluster:
    """The same cluster with ``crds/`` applied and Established."""
    kube.apply_crds()
    return kube


@pytest.fixture
def namespace(kube: Cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = kube.namespace()
    yield name
    kube.delete_namespace(name)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """A real single-node cluster (containerd, kubelet, scheduler, kube-proxy, CoreDNS), once per session.

    Started only by tests that ask for it (marked ``node``); ``pytest -m "not node"`` skips them.
    """
    with real_node() as cluster:
        yield cluster
