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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from activedataflow.runner.server import client_allowed, make_app, parse_allowlist

from tests.cli_helpers import ORDERS, adf, manifest, sqlite_fact, sqlite_orders
from tests.secrets_scan import register_secret, seen
from tests.services import free_port, unavailable, wait_port

TOKEN = "hb-token-123"
register_secret(TOKEN)


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
        out, err = proc.communicate(timeout=10)
        seen("adf serve stdout", out)
        seen("adf serve stderr", err)


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
        unavailable("no IPv6 loopback on this machine")
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


class IdleExecutor:
    """Enough of a FlowExecutor for the endpoint's own checks (no flow is ever due)."""

    class store:
        @staticmethod
        def ping() -> None:
            pass


async def _started(*, header_timeout: float = 30.0, body_timeout: float = 30.0) -> tuple[Any, int]:
    from activedataflow.runner.server import app_runner
    from aiohttp import web

    app = make_app(IdleExecutor(), token=TOKEN, allow=[], body_timeout=body_timeout)  # type: ignore[arg-type]
    runner = app_runner(app, header_timeout=header_timeout)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection (raises TimeoutError if it keeps it open)."""
    return await asyncio.wait_for(reader.read(), seconds)


async def _answer_to(request: bytes, **timeouts: float) -> bytes:
    """What a server started with ``timeouts`` sends back to the raw ``request`` before it closes the connection."""
    runner, port = await _started(**timeouts)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        sent = await _closed_within(reader, 20)
        writer.close()
        return sent
    finally:
        await runner.cleanup()


async def _healthz(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


def test_a_client_sending_headers_byte_by_byte_is_disconnected_while_others_are_served() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        runner, port = await _started(header_timeout=0.5)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            request = b"POST /heartbeat HTTP/1.1\r\nHost: x\r\n"

            async def dribble() -> None:
                for byte in request:  # never the blank line that ends the headers
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

            dribbling = asyncio.create_task(dribble())
            served = await _healthz(port)  # meanwhile, another client is answered
            sent = await _closed_within(reader, 20)
            dribbling.cancel()
            writer.close()
            return served, sent
        finally:
            await runner.cleanup()

    served, sent = asyncio.run(scenario())
    assert served.startswith(b"HTTP/1.1 200") and b'"ok"' in served
    assert b"200" not in sent  # closed without an answer


def test_a_client_that_never_sends_its_body_gets_408_and_is_disconnected() -> None:
    request = b"POST /heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"  # 99 bytes never come
    assert asyncio.run(_answer_to(request, body_timeout=0.5)).startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_request_body_over_the_limit_is_413(chunked: bool) -> None:
    from activedataflow.runner.server import MAX_BODY_BYTES

    body = b"x" * (MAX_BODY_BYTES + 1)
    if chunked:
        head = b"Transfer-Encoding: chunked\r\n\r\n"
        payload = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        head, payload = f"Content-Length: {len(body)}\r\n\r\n".encode(), body
    request = b"POST /heartbeat HTTP/1.1\r\nHost: x\r\n" + head + payload
    assert asyncio.run(_answer_to(request)).startswith(b"HTTP/1.1 413")


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from activedataflow.runner import server as server_module

    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(server_module.hmac, "compare_digest", spy)

    async def scenario() -> int:
        app = make_app(IdleExecutor(), token=TOKEN, allow=[])  # type: ignore[arg-type]
        from aiohttp.test_utils import TestClient, TestServer

        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/heartbeat", headers={"Authorization": "Bearer wrong-token"})
            return resp.status

    assert asyncio.run(scenario()) == 401
    assert compared == [(b"wrong-token", TOKEN.encode())]


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_healthz_is_200_ok_while_the_store_is_reachable(server: str) -> None:
    assert _get(f"{server}/healthz") == (200, {"status": "ok"})


@pytest.mark.postgres
def test_healthz_is_503_naming_the_store_once_the_store_is_gone(pg_server: str) -> None:
    """A real PostgreSQL store whose database is dropped under the running server: 503, password redacted."""
    import sqlalchemy as sa
    from activedataflow.runner.executor import FlowExecutor
    from activedataflow.runner.server import app_runner
    from activedataflow.store import open_store
    from aiohttp import web

    name = f"t_healthz_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(pg_server).set(database=name)
    store = open_store(url.render_as_string(hide_password=False))

    async def scenario() -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
        runner = app_runner(make_app(FlowExecutor(store), token=TOKEN, allow=[]))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            before = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))  # ends the store's connections too
            after = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")
            return before, after
        finally:
            await runner.cleanup()

    try:
        before, after = asyncio.run(scenario())
    finally:
        store.close()
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert before == (200, {"status": "ok"})
    status, body = after
    assert (status, body["status"]) == (503, "unavailable")
    assert name in body["error"]
    assert url.password is not None and url.password not in body["error"]
