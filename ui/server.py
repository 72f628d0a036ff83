"""The dashboard's own HTTP layer, installed by ``serve.py`` through Streamlit's ``st.App``.

Streamlit 1.67 serves apps with Starlette (uvicorn); ``st.App(script, routes=..., middleware=...)``
adds routes and middleware to that server, in front of Streamlit's own. This module provides:

- :class:`DashboardGuard`, the middleware every request and WebSocket passes first:

  - **Host allow-list** (DNS rebinding): a ``Host`` header not in ``server.allowedHosts``
    (``.streamlit/config.toml``; default 127.0.0.1, localhost, ::1) gets 400.
  - **Exact origin**: the WebSocket (``/_stcore/stream``) is accepted only when its ``Origin`` is
    exactly the origin the dashboard is served at (scheme, host and port: :func:`expected_origin`);
    a missing or other ``Origin`` is refused (403 at the handshake). Streamlit alone accepts an
    ``Origin`` of localhost / 127.0.0.1 on *any* port, and browsers send a host's cookies to all of
    its ports, so a page on another port could drive a signed-in session. Every request that can
    change state (any method but GET, HEAD, OPTIONS: the session routes below, Streamlit's upload
    endpoint) needs the same exact ``Origin``; and a browser's request for a sub-resource from
    another site or port (``Sec-Fetch-Site: same-site`` or ``cross-site`` outside a top-level
    navigation) is refused, so no other page can load the dashboard's files or media.
  - **Messages a browser may send**: Streamlit's ``clear_cache`` message (which would empty every
    user's cached models), ``set_run_on_save`` and the other developer messages are dropped; the
    browser's reruns, stops, heartbeats, upload-URL requests and data-frame/file requests pass.
  - **Upload budget**: Streamlit's upload endpoint accepts a file only within the budgets of
    :mod:`ui.budget` (signed-out visitors' files are small; the whole server keeps a bound).
  - **Anti-framing**: ``Content-Security-Policy: frame-ancestors 'none'``, ``X-Frame-Options: DENY``
    and ``Cross-Origin-Resource-Policy: same-origin`` on every response.

- ``POST /_alliance/session``: trades the one-time ticket of a sign-in
  (:meth:`core.store.ClinicStore.start_session`) and the browser's key (a random value the page keeps
  in the dashboard origin's own storage) for the signed session token, set as the cookie
  :func:`cookie_name` (``__Host-alliance_session`` over HTTPS, ``alliance_session`` over plain
  HTTP; HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS, expiring with the session).
  Streamlit cannot set cookies from Python; the page posts the ticket from a tiny script
  (:func:`ui.auth.session_cookie_script`).
- ``POST /_alliance/sign-out``: ends the cookie's session on the server and deletes the cookie.

**Behind a reverse proxy** the origin the browser sees may differ from the request the dashboard
gets: set ``ALLIANCE_PUBLIC_ORIGIN`` (e.g. ``https://alliance.clinic.example``) and only that origin
is accepted. Without it the expected origin is the request's own scheme and ``Host`` header (what
uvicorn gives after ``X-Forwarded-Proto`` from a proxy it trusts, ``FORWARDED_ALLOW_IPS``).
"""
from __future__ import annotations

import functools
import logging
import os
from urllib.parse import urlparse

from core.store import ClinicStore, dashboard_url, demo_url
from ui import budget
from ui.asgi import header, refuse
from ui.budget import UPLOAD_PREFIX

LOG = logging.getLogger(__name__)
COOKIE = "alliance_session"
SECURE_COOKIE = "__Host-" + COOKIE
SESSION_ROUTE = "/_alliance/session"
SIGN_OUT_ROUTE = "/_alliance/sign-out"
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")
PUBLIC_ORIGIN_ENV = "ALLIANCE_PUBLIC_ORIGIN"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The Streamlit messages (``BackMsg``) a browser may send; every other kind is dropped.
ALLOWED_BACK_MESSAGES = frozenset({"rerun_script", "stop_script", "app_heartbeat", "file_urls_request",
                                   "backend_operation_request"})
#: Of ``backend_operation_request``, the payloads a browser may ask for (a deferred download, a data
#: frame's rows); ``install_skills`` and ``dismiss_skills_nudge`` are developer tools.
ALLOWED_BACKEND_OPERATIONS = frozenset({"deferred_file", "dataframe_chunk"})
FRAME_HEADERS = ((b"content-security-policy", b"frame-ancestors 'none'"), (b"x-frame-options", b"DENY"),
                 (b"cross-origin-resource-policy", b"same-origin"))

#: Set when serve.py built the server (app.py warns when it runs without it).
installed = False


@functools.lru_cache(maxsize=8)
def open_store(url: str) -> ClinicStore:
    """The clinic database at ``url`` (one per process and URL); the demo database gets the demo
    accounts and the demo clinic on first use, no other database ever does."""
    store = ClinicStore(url)
    if url == demo_url():
        store.seed_demo()
    return store


def dashboard_store() -> ClinicStore:
    """The database the dashboard uses now (:func:`core.store.dashboard_url`)."""
    return open_store(dashboard_url())


def allowed_hosts() -> tuple[str, ...]:
    from streamlit import config

    configured = [str(h).strip() for h in (config.get_option("server.allowedHosts") or []) if str(h).strip()]
    return tuple(configured) or DEFAULT_ALLOWED_HOSTS


def host_allowed(host: str | None, allowed: tuple[str, ...] | None = None) -> bool:
    """Whether a ``Host`` header (port ignored) is in the allow-list (``*.example.org`` matches its
    subdomains; ``*`` matches any host).

    >>> host_allowed("127.0.0.1:8501", ("localhost", "127.0.0.1"))
    True
    >>> host_allowed("evil.example", ("localhost", "127.0.0.1"))
    False
    >>> host_allowed("[::1]:8501", ("::1",))
    True
    """
    allowed = allowed if allowed is not None else allowed_hosts()
    if not host:
        return False
    try:
        parsed = urlparse(f"//{host}")
        name = parsed.hostname
        _ = parsed.port
    except ValueError:
        return False
    if not name or parsed.username or parsed.password or parsed.path or parsed.query or parsed.fragment:
        return False
    name = name.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().strip().strip("[]").rstrip(".")
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


def normalise_origin(text: str | None) -> str | None:
    """An origin as browsers write it — ``scheme://host[:port]``, lower case, the scheme's default
    port left out — or ``None`` for anything that is not an http(s) origin.

    >>> normalise_origin("HTTP://127.0.0.1:80"), normalise_origin("https://Clinic.example:8443/")
    ('http://127.0.0.1', 'https://clinic.example:8443')
    >>> normalise_origin("null"), normalise_origin("http://a.example/path"), normalise_origin("http://[::1]:8501")
    (None, None, 'http://[::1]:8501')
    """
    if not text:
        return None
    try:
        parsed = urlparse(str(text).strip())
        port = parsed.port
    except ValueError:
        return None
    scheme = parsed.scheme.lower()
    host = (parsed.hostname or "").lower().rstrip(".")
    if scheme not in ("http", "https") or not host or parsed.username or parsed.password \
            or parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.params:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == (443 if scheme == "https" else 80):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def configured_origin() -> str | None:
    """``ALLIANCE_PUBLIC_ORIGIN`` (the origin browsers reach the dashboard at behind a proxy), or
    ``None``. A value that is not an origin stops the server with a sentence saying so."""
    raw = os.environ.get(PUBLIC_ORIGIN_ENV, "").strip()
    if not raw:
        return None
    origin = normalise_origin(raw)
    if origin is None:
        raise ValueError(f"{PUBLIC_ORIGIN_ENV} must be an origin such as https://alliance.clinic.example "
                         f"(scheme, host and port, no path); it is {raw!r}.")
    return origin


def expected_origin(scope) -> str | None:
    """The one origin this request may come from: ``ALLIANCE_PUBLIC_ORIGIN`` when set, else the
    request's own scheme and ``Host`` header (``ws``/``wss`` count as ``http``/``https``)."""
    configured = configured_origin()
    if configured is not None:
        return configured
    scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
    host = header(scope, b"host")
    return normalise_origin(f"{scheme}://{host}") if host else None


def origin_matches(scope) -> bool:
    """Whether the request's ``Origin`` header is exactly :func:`expected_origin` (a missing one is not)."""
    expected = expected_origin(scope)
    return expected is not None and normalise_origin(header(scope, b"origin")) == expected


def is_https(scope) -> bool:
    """Whether the dashboard is served over HTTPS (its expected origin's scheme)."""
    expected = expected_origin(scope)
    return bool(expected and expected.startswith("https://"))


def cookie_name(secure: bool) -> str:
    """The session cookie's name: ``__Host-alliance_session`` over HTTPS (the browser then keeps it
    only if it is Secure, for Path=/ and this host alone, never set by a subdomain), else
    ``alliance_session`` (plain HTTP on this machine, where ``__Host-`` cookies cannot be set)."""
    return SECURE_COOKIE if secure else COOKIE


def back_message_allowed(data: bytes) -> bool:
    """Whether a browser's WebSocket frame may reach Streamlit: a ``BackMsg`` of an allowed kind
    (:data:`ALLOWED_BACK_MESSAGES`). A frame that is not a ``BackMsg`` passes (Streamlit closes
    the connection on it)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    message = BackMsg()
    try:
        message.ParseFromString(data)
    except Exception:  # noqa: BLE001 - Streamlit refuses it itself, with a protocol error
        return True
    kind = message.WhichOneof("type")
    if kind == "backend_operation_request":
        return message.backend_operation_request.WhichOneof("payload") in ALLOWED_BACKEND_OPERATIONS
    return kind in ALLOWED_BACK_MESSAGES


class DashboardGuard:
    """ASGI middleware in front of Streamlit's server: Host allow-list, exact origin, the messages
    a browser may send, the upload budget and anti-framing headers (see the module's docstring)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        budget.start_reaper()  # once: closed sessions' uploads are released after the reconnect window
        if not host_allowed(header(scope, b"host")):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await refuse(scope, receive, send, 400, "This dashboard answers only to the host names in "
                          "server.allowedHosts (.streamlit/config.toml).")
            return
        if kind == "websocket":
            if not origin_matches(scope):
                LOG.warning("Refused a WebSocket from origin %r (expected %r)", header(scope, b"origin"),
                            expected_origin(scope))
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, _filtered(receive), send)
            return
        send = _with_frame_headers(send)
        method = scope.get("method", "GET").upper()
        if method not in SAFE_METHODS and not origin_matches(scope):
            await refuse(scope, receive, send, 403, "Refused: this request did not come from the dashboard's "
                          "own page.")
            return
        site = (header(scope, b"sec-fetch-site") or "").lower()
        mode = (header(scope, b"sec-fetch-mode") or "").lower()
        if site in ("same-site", "cross-site") and mode != "navigate":
            await refuse(scope, receive, send, 403, "Refused: another site or port asked for this.")
            return
        path = scope.get("path", "")
        if method == "PUT" and path.startswith(UPLOAD_PREFIX):
            await budget.guard_upload(self.app, scope, receive, send)
            return
        await self.app(scope, receive, send)


def _filtered(receive):
    """The WebSocket's receive channel without the messages a browser may not send."""
    async def receive_allowed():
        while True:
            message = await receive()
            data = message.get("bytes") if message.get("type") == "websocket.receive" else None
            if data and not back_message_allowed(data):
                LOG.warning("Dropped a message a browser may not send (%d bytes)", len(data))
                continue
            return message

    return receive_allowed


def _with_frame_headers(send):
    async def send_with_headers(message):
        if message.get("type") == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in FRAME_HEADERS if k not in present]
            message = {**message, "headers": headers}
        await send(message)

    return send_with_headers


def _secure(request) -> bool:
    return is_https(request.scope)


async def _session(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    if not origin_matches(request.scope):
        return Response(status_code=403)
    try:
        body = await request.json()
        ticket, browser = str(body.get("ticket", "")), str(body.get("browser", ""))
    except Exception:  # noqa: BLE001 - not JSON: refused like a wrong ticket
        return Response(status_code=400)
    redeemed = await run_in_threadpool(lambda: dashboard_store().redeem_ticket(ticket, browser))
    if redeemed is None:
        return Response(status_code=400)
    token, seconds = redeemed
    response = Response(status_code=204)
    secure = _secure(request)
    response.set_cookie(cookie_name(secure), token, max_age=seconds, path="/", httponly=True,
                        samesite="strict", secure=secure)
    return response


async def _sign_out(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    if not origin_matches(request.scope):
        return Response(status_code=403)
    secure = _secure(request)
    token = request.cookies.get(cookie_name(secure))
    if token:
        def end() -> None:
            store = dashboard_store()
            store.end_session(store.session_id_of(token))

        await run_in_threadpool(end)
    response = Response(status_code=204)
    response.delete_cookie(cookie_name(secure), path="/", httponly=True, samesite="strict", secure=secure)
    return response


def routes() -> list:
    from starlette.routing import Route

    return [Route(SESSION_ROUTE, _session, methods=["POST"]),
            Route(SIGN_OUT_ROUTE, _sign_out, methods=["POST"])]


def middleware() -> list:
    from starlette.middleware import Middleware

    global installed
    configured_origin()  # a wrong ALLIANCE_PUBLIC_ORIGIN stops the start with its sentence
    installed = True
    return [Middleware(DashboardGuard)]


def requested_path(url: str | None) -> str:
    """The page part of the address the browser asked for (``"overview"`` for
    ``http://host:8501/overview?patient=D001``; ``""`` for the root), from ``st.context.url``.

    >>> requested_path("http://127.0.0.1:8501/overview?lang=es"), requested_path("https://clinic.example/")
    ('overview', '')
    """
    from urllib.parse import urlsplit

    return urlsplit(url or "").path.strip("/").split("/")[-1]
