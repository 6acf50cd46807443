"""`adf ui`: the monitoring page on a threaded stdlib WSGI server."""

from __future__ import annotations

import logging
import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ..store import Store, open_store
from .actions import KubeActions
from .app import make_app

__all__ = ["UIServer", "make_ui_server", "serve"]

log = logging.getLogger("activedataflow.ui")


class UIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per request; the threads do not keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def make_ui_server(store: Store, *, host: str = "127.0.0.1", port: int = 8080, actions: bool = False,
                   kube: KubeActions | None = None) -> UIServer:
    """A bound, not yet serving, server (``port=0``: any free port, see ``server_port``); ``kube``: the
    actions go to the cluster's DataFlows (see :mod:`.actions`), else to the store."""
    server = make_server(host, port, make_app(store, actions=actions, kube=kube), server_class=UIServer,
                         handler_class=_Handler)
    assert isinstance(server, UIServer)
    return server


def serve(store_url: str | None, *, host: str, port: int, actions: bool, kube: KubeActions | None = None) -> None:
    """Serve the monitoring page for the store at ``store_url`` until interrupted (Ctrl-C / SIGTERM as
    KeyboardInterrupt or SystemExit), its actions on ``kube`` if given (closed at the end), else the store.
    Raises StoreUnavailable / ConfigError for a bad store URL."""
    try:
        store = open_store(store_url)
    except BaseException:
        if kube is not None:
            kube.close()
        raise
    try:
        server = make_ui_server(store, host=host, port=port, actions=actions, kube=kube)
        with server:
            shown = f"[{host}]" if ":" in host else host
            mode = "read-only" if not actions else f"actions on the DataFlows at {kube.server}" if kube else \
                "actions on the store"
            log.info("ui: http://%s:%d/ (%s, store %s)", shown, server.server_port, mode, store.url_for_display)
            server.serve_forever()  # until KeyboardInterrupt/SystemExit; `with` closes the socket
    finally:
        store.close()
        if kube is not None:
            kube.close()
