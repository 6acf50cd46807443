"""The monitoring page as a WSGI application: a tiny router over the store.

==================================  ====================================================
``GET /``                           the flows (``?namespace=NS`` for one namespace)
``GET /flow?namespace=NS&name=N``   a flow: facts, actions, its runs (``&page=P``), spec
``POST /actions/run-now|suspend|resume``  form fields ``namespace``, ``name``, ``csrf``
``GET /static/...``                 the CSS and icon shipped in the package
``GET /healthz``                    200 when the store answers
==================================  ====================================================

Actions are refused (403) unless the app was made with ``actions=True``, and always
without a valid CSRF token: a signed double-submit cookie (the cookie holds a random
value, the form an HMAC of it under a per-server secret), plus a same-origin check of
``Origin`` when a browser sends one. Outside a cluster they act on the store: run now
makes the flow due (the next heartbeat runs it), suspend and resume flip its enabled flag.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from importlib import resources
from typing import Literal
from urllib.parse import parse_qs, urlsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from ..errors import UnknownFlow, UserError, redact
from ..schedule import utcnow
from ..store import Store
from . import views
from .html import Safe

__all__ = ["ACTIONS", "UIApp", "make_app"]

log = logging.getLogger("activedataflow.ui")

Action = Literal["run-now", "suspend", "resume"]
ACTIONS: tuple[Action, ...] = ("run-now", "suspend", "resume")
CSRF_COOKIE = "adf_csrf"
PER_PAGE = 25
MAX_PAGE = 400  # list_runs has no offset: page P reads P * PER_PAGE runs
MAX_BODY = 16 * 1024
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
SECURITY_HEADERS = [
    # No script at all; styles and images only from the package (inline SVG is part of the document).
    ("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; "
     "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
]


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _static(name: str) -> tuple[bytes, str] | None:
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in STATIC_TYPES or "/" in name or name.startswith("."):
        return None
    ref = resources.files(__package__).joinpath("static", name)
    if not ref.is_file():
        return None
    return ref.read_bytes(), STATIC_TYPES[suffix]


class UIApp:
    """The WSGI callable. Thread-safe (the store is; the app keeps no per-request state)."""

    def __init__(
        self, store: Store, *, actions: bool = False, secret: bytes | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.actions = actions
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._now = now

    # ----------------------------------------------------------------- CSRF
    def csrf_token(self, cookie_value: str) -> str:
        return hmac.new(self._secret, b"adf-ui-csrf:" + cookie_value.encode(), hashlib.sha256).hexdigest()

    def _csrf_ok(self, environ: WSGIEnvironment, cookie: str | None, form: dict[str, str]) -> bool:
        presented = form.get("csrf", "")
        if not cookie or not presented:
            return False
        if not hmac.compare_digest(presented.encode(), self.csrf_token(cookie).encode()):
            return False
        origin = environ.get("HTTP_ORIGIN")  # browsers send it with a form POST; other clients may not
        return origin is None or urlsplit(str(origin)).netloc == environ.get("HTTP_HOST")

    # ----------------------------------------------------------------- WSGI
    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        cookie = _cookies(environ).get(CSRF_COOKIE)
        new_cookie = None
        if not cookie or len(cookie) != 43:  # token_urlsafe(32)
            cookie = new_cookie = secrets.token_urlsafe(32)
        root = "../" * max(str(environ.get("PATH_INFO") or "/").count("/") - 1, 0)
        try:
            response = self._dispatch(environ, cookie)
        except HTTPError as err:
            response = self._error(err.status, err.message, root)
        except UserError as err:  # the store is unreachable, or refused
            log.warning("ui: %s", redact(str(err)))
            response = self._error(HTTPStatus.SERVICE_UNAVAILABLE, redact(str(err)), root)
        except Exception:
            log.exception("ui: internal error")
            response = self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error (see the server's log)", root)
        headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
                   *SECURITY_HEADERS, *response.headers]
        if response.content_type.startswith("text/html"):
            headers.append(("Cache-Control", "no-store"))
        if new_cookie:
            headers.append(("Set-Cookie", f"{CSRF_COOKIE}={new_cookie}; Path=/; HttpOnly; SameSite=Strict"))
        status = HTTPStatus(response.status)
        start_response(f"{status.value} {status.phrase}", headers)
        return [b"" if environ.get("REQUEST_METHOD") == "HEAD" else response.body]

    def _dispatch(self, environ: WSGIEnvironment, cookie: str) -> Response:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        if path.startswith("/actions/"):
            if method != "POST":
                raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, "actions are POST requests")
            return self._action(environ, path.removeprefix("/actions/"), cookie)
        if method not in ("GET", "HEAD"):
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
        if path == "/":
            return self._flows(query)
        if path == "/flow":
            return self._flow(query, cookie)
        if path == "/healthz":
            self.store.ping()
            return Response(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
        if path.startswith("/static/"):
            found = _static(path.removeprefix("/static/"))
            if found:
                return Response(HTTPStatus.OK, found[0], found[1], [("Cache-Control", "max-age=3600")])
        raise HTTPError(HTTPStatus.NOT_FOUND, "no such page")

    def _page(self, html: Safe, status: int = HTTPStatus.OK) -> Response:
        return Response(status, html.encode())

    def _error(self, status: int, message: str, root: str) -> Response:
        phrase = f"{status} {HTTPStatus(status).phrase}"
        return self._page(views.error_page(phrase, message, read_only=not self.actions,
                                           store=self.store.url_for_display, root=root), status)

    # ----------------------------------------------------------------- pages
    def _flows(self, query: dict[str, str]) -> Response:
        namespace = query.get("namespace") or None
        every = self.store.list_flows()
        flows = [f for f in every if namespace is None or f.namespace == namespace]
        recent = {f.key: self.store.list_runs(f.name, f.namespace, limit=views.CHART_RUNS) for f in flows}
        namespaces = sorted({f.namespace for f in every})
        return self._page(views.flows_page(
            flows, recent, now=self._now(), namespace=namespace, namespaces=namespaces,
            read_only=not self.actions, store=self.store.url_for_display,
        ))

    def _find(self, namespace: str, name: str) -> tuple[str, str]:
        if not name:
            raise HTTPError(HTTPStatus.BAD_REQUEST, "which flow? (name and namespace)")
        return namespace or "default", name

    def _flow(self, query: dict[str, str], cookie: str) -> Response:
        namespace, name = self._find(query.get("namespace", ""), query.get("name", ""))
        flow = self.store.get_flow(name, namespace)
        if flow is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no flow {name} in namespace {namespace}")
        try:
            page = min(max(int(query.get("page", "1")), 1), MAX_PAGE)
        except ValueError:
            page = 1
        runs = self.store.list_runs(name, namespace, limit=page * PER_PAGE + 1)
        shown = runs[(page - 1) * PER_PAGE: page * PER_PAGE]
        return self._page(views.flow_page(
            flow, shown, page=page, has_next=len(runs) > page * PER_PAGE and page < MAX_PAGE, per_page=PER_PAGE,
            now=self._now(), read_only=not self.actions, csrf=self.csrf_token(cookie),
            notice=query.get("done"), store=self.store.url_for_display,
        ))

    # ----------------------------------------------------------------- actions
    def _action(self, environ: WSGIEnvironment, action: str, cookie: str) -> Response:
        if action not in ACTIONS:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such action")
        if not self.actions:
            raise HTTPError(HTTPStatus.FORBIDDEN, "this server is read-only (start it with --actions)")
        form = _form(environ)
        # the cookie the request carried, not one this response would set
        if not self._csrf_ok(environ, _cookies(environ).get(CSRF_COOKIE), form):
            log.warning("ui: %s refused: missing or invalid CSRF token", action)
            raise HTTPError(HTTPStatus.FORBIDDEN, "missing or invalid CSRF token: reload the page and try again")
        namespace, name = self._find(form.get("namespace", ""), form.get("name", ""))
        flow = self.store.get_flow(name, namespace)
        if flow is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no flow {name} in namespace {namespace}")
        try:
            if action == "run-now":
                if not flow.enabled:
                    raise HTTPError(HTTPStatus.CONFLICT, f"{name} is suspended: resume it first")
                self.store.set_next_run(name, namespace, self._now())
            else:
                self.store.set_enabled(name, namespace, action == "resume")
        except UnknownFlow as err:
            raise HTTPError(HTTPStatus.NOT_FOUND, str(err)) from None
        log.info("ui: %s %s/%s", action, namespace, name)
        location = "../" + views.flow_url((namespace, name), done=action)  # relative to /actions/...
        return Response(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", [("Location", location)])


def _cookies(environ: WSGIEnvironment) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key not in out:
            out[key] = value
    return out


def _form(environ: WSGIEnvironment) -> dict[str, str]:
    ctype = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the action as an HTML form")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY:
        raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "form too large")
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "form is not UTF-8") from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def make_app(
    store: Store, *, actions: bool = False, secret: bytes | None = None, now: Callable[[], datetime] = utcnow
) -> WSGIApplication:
    """The monitoring page over ``store`` as a WSGI application.

    ``actions``: allow run now / suspend / resume (POST with the CSRF token); otherwise
    they answer 403. ``secret`` signs the CSRF tokens (random per server by default).
    """
    return UIApp(store, actions=actions, secret=secret, now=now)
