"""The monitoring page (``adf ui``): flows, runs, errors; run now / suspend / resume with actions enabled.

Server-rendered HTML and inline SVG, no JavaScript; every asset ships in the package. The actions go to
the store, or in a cluster to the DataFlows with the caller's own credentials (:mod:`.actions`).
"""

from __future__ import annotations

from .actions import KubeActions
from .app import make_app
from .server import make_ui_server, serve

__all__ = ["KubeActions", "make_app", "make_ui_server", "serve"]
