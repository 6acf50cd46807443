"""Toxiproxy, the TCP fault injector, between the runner and each real service.

The server is built from the Go module proxy (``scripts/build-control-plane.sh toxiproxy``) into
``${ADF_CACHE:-~/.cache/activedataflow}/bin/toxiproxy-server-<version>``, keyed by version so a
version bump builds anew; :func:`toxiproxy_server` builds it when it is missing and starts it on a
free loopback port. A :class:`Proxy` listens on its own port and forwards to one service; the tests
point the runner at the proxy's address and cut it:

* :meth:`Proxy.cut` closes every connection through the proxy and refuses new ones (an outage);
  :meth:`Proxy.restore` lets connections through again;
* :meth:`Proxy.reset` is a blip: every open connection dies, new ones get through;
* :meth:`Proxy.ack_lost` (a context manager): what the client sends arrives and is executed,
  the answer is dropped and the connection closed (the ``limit_data`` toxic on the downstream).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.services import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("ADF_CACHE", Path.home() / ".cache" / "activedataflow"))


def _version() -> str:
    """TOXIPROXY_VERSION as scripts/build-control-plane.sh sets it (the one place it is written)."""
    for line in (ROOT / "scripts" / "build-control-plane.sh").read_text().splitlines():
        if line.startswith("TOXIPROXY_VERSION="):
            return os.environ.get("ADF_TOXIPROXY_VERSION") or line.split(":-", 1)[1].rstrip('}"')
    raise RuntimeError("scripts/build-control-plane.sh sets no TOXIPROXY_VERSION")


def binary() -> Path:
    """The toxiproxy server, built by scripts/build-control-plane.sh if it is not cached yet."""
    exe = CACHE / "bin" / f"toxiproxy-server-{_version()}"
    if not exe.is_file():
        subprocess.run([str(ROOT / "scripts" / "build-control-plane.sh"), "toxiproxy"], check=True)
    return exe


class Toxiproxy:
    """The HTTP API of one toxiproxy server."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            text = resp.read()
        return json.loads(text) if text.strip() else None

    def proxy(self, name: str, upstream: str) -> Proxy:
        """A new proxy to ``upstream`` (host:port) on a free loopback port."""
        port = free_port()
        self.request("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}", "upstream": upstream,
                                          "enabled": True})
        return Proxy(self, name, port, upstream)


@dataclass
class Proxy:
    api: Toxiproxy
    name: str
    port: int
    upstream: str

    def _enabled(self, enabled: bool) -> None:
        self.api.request("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def cut(self) -> None:
        self._enabled(False)

    def restore(self) -> None:
        self._enabled(True)

    def reset(self) -> None:
        self.cut()
        self.restore()

    def lose_answers(self) -> None:
        """From now on the first byte a server answers closes the connection (until :meth:`answer_again`)."""
        self.api.request("POST", f"/proxies/{self.name}/toxics", {
            "name": "ack_lost", "type": "limit_data", "stream": "downstream", "toxicity": 1.0,
            "attributes": {"bytes": 0}})

    def answer_again(self) -> None:
        self.api.request("DELETE", f"/proxies/{self.name}/toxics/ack_lost")

    @contextlib.contextmanager
    def ack_lost(self) -> Iterator[None]:
        self.lose_answers()
        try:
            yield
        finally:
            self.answer_again()

    def delete(self) -> None:
        self.api.request("DELETE", f"/proxies/{self.name}")


@contextlib.contextmanager
def toxiproxy_server() -> Iterator[Toxiproxy]:
    exe = binary()
    port = free_port()
    proc = subprocess.Popen([str(exe), "-host", "127.0.0.1", "-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield Toxiproxy(port)
    finally:
        proc.terminate()
        proc.wait(10)
