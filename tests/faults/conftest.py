"""Fixtures of the fault matrix: one toxiproxy server per session, a proxy per service and test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.faults.inject import Hooks, watching
from tests.faults.toxiproxy import Proxy, Toxiproxy, toxiproxy_server

_names = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def toxiproxy() -> Iterator[Toxiproxy]:
    go = "/usr/local/go/bin"
    if os.path.isdir(go) and go not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + go  # for a build on a fresh machine
    with toxiproxy_server() as server:
        yield server


def make_proxy(toxiproxy: Toxiproxy, url: str) -> tuple[Proxy, str]:
    """A proxy in front of the server of ``url``, and ``url`` through it."""
    parsed = sa.make_url(url)
    proxy = toxiproxy.proxy(f"p{next(_names)}-{os.getpid()}", f"{parsed.host}:{parsed.port}")
    return proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def proxies(toxiproxy: Toxiproxy) -> Iterator[list[Proxy]]:
    """Proxies a test made with :func:`make_proxy` (append them), deleted afterwards."""
    made: list[Proxy] = []
    yield made
    for proxy in made:
        proxy.delete()


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Hooks:
    return watching(monkeypatch)
