"""The monitoring page as a WSGI application: a tiny router over the store.

==================================  ====================================================
``GET /``                           the flows (``?namespace=NS`` for one namespace)
``GET /flow?namespace=NS&name=N``   a flow: facts, actions, its runs (``&page=P``), spec
``POST /actions/run-now|suspend|resume``  form fields ``namespace``, ``name``, ``csrf``
``GET|POST /login``, ``POST /logout``  sign in with a Kubernetes token (callers' credentials only)
``GET /static/...``                 the CSS and icon shipped in the package
``GET /healthz``                    200 when the store answers
==================================  ====================================================

Actions are refused (403) unless the app was made with ``actions=True``, and every POST
without a valid CSRF token: a signed double-submit cookie (the cookie holds a random
value, the form an HMAC of it under a per-server secret), plus a same-origin check of
``Origin`` when a browser sends one. Where they go is :mod:`.actions`: the store outside
a cluster; in one, the DataFlows, with the kubeconfig's credentials (``adf ui --kube``) or
with the bearer token each request carries (the operator Pod): the ``Authorization:
Bearer`` header an authenticating proxy sets, else the token a user signed in with, kept
in an HttpOnly, SameSite=Strict cookie. Without one an action answers 401 with the
sign-in form; there is no other credential to fall back on.
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

from ..errors import UserError, redact
from ..schedule import utcnow
from ..store import Store
from . import views
from .actions import ACTIONS, KubeActions, Refused, StoreActions, valid_token
from .html import Safe

__all__ = ["ACTIONS", "UIApp", "make_app"]

log = logging.getLogger("activedataflow.ui")

CSRF_COOKIE = "adf_csrf"
TOKEN_COOKIE = "adf_token"  # the Kubernetes token a user signed in with (callers' credentials only)
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


Source = Literal["header", "cookie"]


def caller_token(environ: WSGIEnvironment) -> tuple[str, Source] | None:
    """The bearer token the request carries: ``Authorization: Bearer`` (an authenticating proxy's), else
    the sign-in cookie; None without one (or one that is not a bearer token)."""
    scheme, _, value = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    if scheme.lower() == "bearer" and valid_token(value.strip()):
        return value.strip(), "header"
    cookie = _cookies(environ).get(TOKEN_COOKIE)
    if cookie and valid_token(cookie):
        return cookie, "cookie"
    return None


def _token_cookie(environ: WSGIEnvironment, value: str, *, forget: bool = False) -> tuple[str, str]:
    https = environ.get("wsgi.url_scheme") == "https" or environ.get("HTTP_X_FORWARDED_PROTO") == "https"
    attrs = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if https else "") + ("; Max-Age=0" if forget else "")
    return "Set-Cookie", f"{TOKEN_COOKIE}={value}{attrs}"


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
        self, store: Store, *, actions: bool = False, kube: KubeActions | None = None, secret: bytes | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.actions = actions
        self.backend: KubeActions | StoreActions = kube if kube is not None else StoreActions(store, now=now)
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
        except Refused as err:
            log.info("ui: refused (%d): %s", err.status, err.message)
            response = self._refused(environ, err, cookie, root)
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
            return self._action(environ, path.removeprefix("/actions/"))
        if path in ("/login", "/logout") and method == "POST":
            return self._sign_in(environ) if path == "/login" else self._sign_out(environ)
        if method not in ("GET", "HEAD"):
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed here")
        if path == "/":
            return self._flows(query)
        if path == "/flow":
            return self._flow(environ, query, cookie)
        if path == "/login":
            if not (self.actions and self.backend.callers_tokens):
                raise HTTPError(HTTPStatus.NOT_FOUND, "this server does not sign in: its actions are not made with "
                                "its callers' credentials")
            return self._sign_in_page(HTTPStatus.OK, "", cookie, "", query)
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

    def _sign_in_page(self, status: int, message: str, cookie: str, root: str, flow: dict[str, str]) -> Response:
        page = views.sign_in_page(
            f"{status} {HTTPStatus(status).phrase}" if status != HTTPStatus.OK else "Sign in", message,
            csrf=self.csrf_token(cookie), server=self.backend.server, namespace=flow.get("namespace", ""),
            name=flow.get("name", ""), store=self.store.url_for_display, root=root,
        )
        response = self._page(page, status)
        if status == HTTPStatus.UNAUTHORIZED:
            response.headers.append(("WWW-Authenticate", 'Bearer realm="activedataflow"'))
        return response

    def _refused(self, environ: WSGIEnvironment, err: Refused, cookie: str, root: str) -> Response:
        flow = {k: v for k, v in _form_or_empty(environ).items() if k in ("namespace", "name")}
        if err.sign_in:
            response = self._sign_in_page(err.status, err.message, cookie, root, flow)
        else:
            response = self._error(err.status, err.message, root)
        held = caller_token(environ)
        if err.forget_token and held is not None and held[1] == "cookie":
            response.headers.append(_token_cookie(environ, "", forget=True))
        return response

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

    def _flow(self, environ: WSGIEnvironment, query: dict[str, str], cookie: str) -> Response:
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
            notice=views.notice(query.get("done"), kube=self.backend.kube), auth=self._auth(environ),
            store=self.store.url_for_display,
        ))

    def _auth(self, environ: WSGIEnvironment) -> views.Auth:
        """Whose credentials the page's actions use, as the flow page tells it."""
        if not self.actions or not self.backend.kube:
            return None
        if not self.backend.callers_tokens:
            return "kubeconfig"
        held = caller_token(environ)
        return held[1] if held else "none"

    # ----------------------------------------------------------------- actions
    def _action(self, environ: WSGIEnvironment, action: str) -> Response:
        if action not in ACTIONS:
            raise HTTPError(HTTPStatus.NOT_FOUND, "no such action")
        if not self.actions:
            raise HTTPError(HTTPStatus.FORBIDDEN, "this server is read-only (start it with --actions)")
        form = self._checked_form(environ, action)
        namespace, name = self._find(form.get("namespace", ""), form.get("name", ""))
        flow = self.store.get_flow(name, namespace)
        if flow is None:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no flow {name} in namespace {namespace}")
        held = caller_token(environ)
        self.backend.perform(action, flow, held[0] if held else None)
        log.info("ui: %s %s/%s", action, namespace, name)
        return _redirect("../" + views.flow_url((namespace, name), done=action))  # relative to /actions/...

    def _checked_form(self, environ: WSGIEnvironment, what: str) -> dict[str, str]:
        """The POSTed form, once its CSRF token matches the cookie the request carried (not one this
        response would set)."""
        form = _form(environ)
        environ["activedataflow.ui.form"] = form  # read once: a refusal's page reads the flow from it
        if not self._csrf_ok(environ, _cookies(environ).get(CSRF_COOKIE), form):
            log.warning("ui: %s refused: missing or invalid CSRF token", what)
            raise HTTPError(HTTPStatus.FORBIDDEN, "missing or invalid CSRF token: reload the page and try again")
        return form

    # ----------------------------------------------------------------- signing in
    def _sign_in(self, environ: WSGIEnvironment) -> Response:
        if not (self.actions and self.backend.callers_tokens):
            raise HTTPError(HTTPStatus.NOT_FOUND, "this server does not sign in")
        form = self._checked_form(environ, "sign-in")
        assert isinstance(self.backend, KubeActions)
        token = form.get("token", "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        user = self.backend.sign_in(token)
        log.info("ui: signed in as %s", user)
        return _redirect(self._back(form, "signed-in"), [_token_cookie(environ, token)])

    def _sign_out(self, environ: WSGIEnvironment) -> Response:
        form = self._checked_form(environ, "sign-out")
        return _redirect(self._back(form, "signed-out"), [_token_cookie(environ, "", forget=True)])

    @staticmethod
    def _back(form: dict[str, str], done: str) -> str:
        """The flow page the sign-in (or -out) form was on, else the flows (relative to /login)."""
        if form.get("name"):
            return views.flow_url((form.get("namespace") or "default", form["name"]), done=done)
        return "./"


def _redirect(location: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", [("Location", location), *(headers or [])])


def _form_or_empty(environ: WSGIEnvironment) -> dict[str, str]:
    form = environ.get("activedataflow.ui.form")
    return form if isinstance(form, dict) else {}

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
    store: Store, *, actions: bool = False, kube: KubeActions | None = None, secret: bytes | None = None,
    now: Callable[[], datetime] = utcnow,
) -> WSGIApplication:
    """The monitoring page over ``store`` as a WSGI application.

    ``actions``: allow run now / suspend / resume (POST with the CSRF token); otherwise
    they answer 403. ``kube``: make them on the cluster's DataFlows (see :mod:`.actions`),
    else on the store. ``secret`` signs the CSRF tokens (random per server by default).
    """
    return UIApp(store, actions=actions, kube=kube, secret=secret, now=now)
