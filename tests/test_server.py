"""`adf serve`: the HTTP heartbeat endpoint with token and IP allowlist (v4 and v6)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from activedataflow.runner.server import client_allowed, make_app, parse_allowlist

from tests.cli_helpers import ORDERS, adf, manifest, sqlite_fact, sqlite_orders
from tests.services import free_port, wait_port

TOKEN = "hb-token-123"


def post(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method="POST", headers=headers or {}, data=b"")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def start_server(tmp_path: Path, *, host: str, allow: str = "") -> Iterator[str]:
    sqlite_orders(tmp_path / "shop.db", ORDERS)
    sqlite_fact(tmp_path / "wh.db")
    store = f"sqlite:///{tmp_path / 'adf.db'}"
    path = manifest(
        tmp_path, source_url=f"sqlite:///{tmp_path / 'shop.db'}", sink_url=f"sqlite:///{tmp_path / 'wh.db'}"
    )
    assert adf("--store", store, "apply", str(path)).returncode == 0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ADF_")}
    env.update(ADF_STORE_URL=store, ADF_HEARTBEAT_TOKEN=TOKEN, ADF_HEARTBEAT_ALLOW=allow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "activedataflow.cli", "serve", "--host", host, "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        if host == "::1":
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("::1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
        else:
            wait_port(port)
        yield f"http://{'[::1]' if host == '::1' else host}:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    yield from start_server(tmp_path, host="127.0.0.1", allow="127.0.0.0/8, ::1")


def test_heartbeat_without_token_is_401(server: str) -> None:
    status, _ = post(f"{server}/heartbeat")
    assert status == 401


def test_heartbeat_with_wrong_token_is_401(server: str) -> None:
    status, _ = post(f"{server}/heartbeat", {"Authorization": "Bearer nope"})
    assert status == 401


def test_heartbeat_with_bearer_token_runs_due_flows(server: str) -> None:
    status, body = post(f"{server}/heartbeat", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert (body["flows_due"], body["flows_triggered"]) == (1, 1)
    assert "timestamp" in body
    status, body = post(f"{server}/heartbeat", {"Authorization": f"Bearer {TOKEN}"})
    assert (status, body["flows_due"], body["flows_triggered"]) == (200, 0, 0)


def test_heartbeat_accepts_the_rails_token_header(server: str) -> None:
    status, body = post(f"{server}/heartbeat", {"X-Heartbeat-Token": TOKEN})
    assert status == 200 and body["flows_triggered"] == 1


def test_client_outside_the_allowlist_is_403(tmp_path: Path) -> None:
    for base in start_server(tmp_path, host="127.0.0.1", allow="192.0.2.0/24"):
        status, _ = post(f"{base}/heartbeat", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 403


def test_ipv6_client_in_the_allowlist_is_served(tmp_path: Path) -> None:
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    for base in start_server(tmp_path, host="::1", allow="::1/128"):
        status, body = post(f"{base}/heartbeat", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body["flows_due"] == 1


def test_serve_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    result = adf("--store", f"sqlite:///{tmp_path / 'adf.db'}", "serve", "--port", str(free_port()))
    assert result.returncode == 2
    assert "ADF_HEARTBEAT_TOKEN" in result.stderr


@pytest.mark.parametrize(
    ("remote", "allow", "expected"),
    [
        ("10.1.2.3", "10.0.0.0/8", True),
        ("10.1.2.3", "192.168.0.0/16", False),
        ("::ffff:10.1.2.3", "10.0.0.0/8", True),
        ("2001:db8::5", "2001:db8::/32", True),
        ("2001:db8::5", "10.0.0.0/8", False),
        ("127.0.0.1", "", True),
        (None, "127.0.0.1", False),
    ],
)
def test_allowlist_matches_ipv4_ipv6_and_mapped_addresses(remote: str | None, allow: str, expected: bool) -> None:
    assert client_allowed(remote, parse_allowlist(allow)) is expected


def test_bad_allowlist_entry_names_it() -> None:
    from activedataflow.errors import ConfigError

    with pytest.raises(ConfigError, match="ADF_HEARTBEAT_ALLOW: 'not-an-ip'"):
        parse_allowlist("10.0.0.0/8, not-an-ip")


def test_heartbeat_failure_is_500_with_a_redacted_reason() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    class BrokenStore:
        url_for_display = "postgresql+psycopg://adf:***@db:5432/adf"

        def reap_expired(self, now: Any) -> list[Any]:
            raise RuntimeError("connection to postgresql://adf:hunter2@db:5432/adf lost")

    class Executor:
        store = BrokenStore()

    async def scenario() -> tuple[int, dict[str, Any]]:
        app = make_app(Executor(), token=TOKEN, allow=[])
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/heartbeat", headers={"Authorization": f"Bearer {TOKEN}"})
            return resp.status, await resp.json()

    status, body = asyncio.run(scenario())
    assert status == 500
    assert "lost" in body["error"] and "hunter2" not in body["error"]
