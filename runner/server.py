"""`adf serve`: the HTTP heartbeat endpoint (the Rails engine's, kept compatible).

``POST /heartbeat`` runs every due flow and answers ``200 {flows_due,
flows_triggered, timestamp}``. The token comes from ``ADF_HEARTBEAT_TOKEN`` and
is sent as ``Authorization: Bearer <token>`` or ``X-Heartbeat-Token: <token>``
(401 otherwise); ``ADF_HEARTBEAT_ALLOW`` is a comma-separated list of IPs and
CIDRs, v4 and v6 (403 for other clients; empty allows all). A failure inside
the heartbeat answers 500 with the (redacted) reason. ``GET /healthz`` answers
200 when the store is reachable.

A slow or hostile client cannot hold the server: a connection that has not sent a
request's headers within :data:`HEADER_TIMEOUT_SECONDS` (or stays idle that long
between requests) is closed; a body (the heartbeat needs none) larger than
:data:`MAX_BODY_BYTES` is refused with 413, one not received within
:data:`BODY_TIMEOUT_SECONDS` with 408. The event loop serves other clients
meanwhile; the token is compared in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import ConfigError, UserError, redact

if TYPE_CHECKING:
    from .executor import FlowExecutor

log = logging.getLogger("activedataflow.server")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["BODY_TIMEOUT_SECONDS", "HEADER_TIMEOUT_SECONDS", "MAX_BODY_BYTES", "app_runner", "make_app",
           "parse_allowlist", "serve"]

HEADER_TIMEOUT_SECONDS = 10.0  # for a request's line and headers from a new connection, and idle keep-alive
BODY_TIMEOUT_SECONDS = 10.0  # for the whole body once the headers are in
MAX_BODY_BYTES = 64 * 1024  # POST /heartbeat reads no body: anything bigger is refused (413)
LINGER_SECONDS = 1.0  # after an early answer (408, 413), how long the unread rest of a body is drained (aiohttp: 10)


def parse_allowlist(text: str | None) -> list[Network]:
    nets: list[Network] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(f"ADF_HEARTBEAT_ALLOW: '{part}' is not an IP address or CIDR") from None
    return nets


def client_allowed(remote: str | None, allow: Sequence[Network]) -> bool:
    if not allow:
        return True
    if not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in allow)


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("X-Heartbeat-Token")


def _closing(body: dict[str, str], status: int) -> web.Response:
    """An error answer after which the connection is closed (what is left of the body is not read)."""
    resp = web.json_response(body, status=status)
    resp.force_close()
    return resp


def make_app(
    executor: FlowExecutor, *, token: str, allow: Sequence[Network], body_timeout: float = BODY_TIMEOUT_SECONDS,
    max_body: int = MAX_BODY_BYTES,
) -> web.Application:
    from .heartbeat import heartbeat

    lock = asyncio.Lock()  # one heartbeat at a time per process; flows are claimed atomically anyway

    async def post_heartbeat(request: web.Request) -> web.Response:
        if not client_allowed(request.remote, allow):
            log.warning("heartbeat from %s refused: not in ADF_HEARTBEAT_ALLOW", request.remote)
            return _closing({"error": "forbidden"}, 403)
        if request.content_length is not None and request.content_length > max_body:
            return _closing({"error": f"request body larger than {max_body} bytes"}, 413)
        try:
            await asyncio.wait_for(request.read(), body_timeout)  # bounded by client_max_size too
        except TimeoutError:
            log.warning("heartbeat from %s: request body not received within %ss", request.remote, body_timeout)
            return _closing({"error": f"request body not received within {body_timeout:g} s"}, 408)
        except web.HTTPRequestEntityTooLarge:
            return _closing({"error": f"request body larger than {max_body} bytes"}, 413)
        presented = _presented_token(request)
        if not presented or not hmac.compare_digest(presented.encode(), token.encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            async with lock:
                result = await asyncio.to_thread(heartbeat, executor)
        except Exception as err:
            log.exception("heartbeat failed")
            return web.json_response({"error": redact(str(err))}, status=500)
        return web.json_response(result.as_json())

    async def healthz(request: web.Request) -> web.Response:
        try:
            await asyncio.to_thread(executor.store.ping)
        except Exception as err:
            return web.json_response({"status": "unavailable", "error": redact(str(err))}, status=503)
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/heartbeat", post_heartbeat)
    app.router.add_get("/healthz", healthz)
    return app


def app_runner(app: web.Application, *, header_timeout: float = HEADER_TIMEOUT_SECONDS) -> web.AppRunner:
    """The runner ``adf serve`` serves ``app`` with: aiohttp closes a connection that is idle (no complete
    request line and headers yet) for ``header_timeout`` seconds, from its start or between requests."""
    return web.AppRunner(app, keepalive_timeout=header_timeout, lingering_time=LINGER_SECONDS)


def serve(store_url: str | None, *, host: str, port: int) -> None:
    from ..store import open_store
    from .executor import FlowExecutor
    from .reflect import reflector_from_env

    token = os.environ.get("ADF_HEARTBEAT_TOKEN", "")
    if not token:
        raise UserError("ADF_HEARTBEAT_TOKEN: required (the token clients send as 'Authorization: Bearer ...')")
    allow = parse_allowlist(os.environ.get("ADF_HEARTBEAT_ALLOW"))
    store = open_store(store_url)
    store.ping()
    executor = FlowExecutor(store, reflector=reflector_from_env())
    log.warning("adf serve: POST http://%s:%d/heartbeat (store %s)", host, port, store.url_for_display)
    asyncio.run(_serve(app_runner(make_app(executor, token=token, allow=allow)), host=host, port=port))


async def _serve(runner: web.AppRunner, *, host: str, port: int) -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # as web.run_app: stop serving, close connections, exit
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await stop.wait()
    finally:
        await runner.cleanup()
