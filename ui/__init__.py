"""The monitoring page (``adf ui``): flows, runs, errors; run now / suspend / resume with actions enabled.

Server-rendered HTML and inline SVG, no JavaScript; every asset ships in the package.
"""

from __future__ import annotations

from .app import make_app
from .server import make_ui_server, serve

__all__ = ["make_app", "make_ui_server", "serve"]
