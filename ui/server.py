"""The dashboard's own HTTP layer, installed by ``serve.py`` through Streamlit's ``st.App``.

Streamlit 1.67 serves apps with Starlette (uvicorn); ``st.App(script, routes=..., middleware=...)``
adds routes and middleware to that server. This module provides:

- :class:`HostAllowList`: every HTTP request and WebSocket whose ``Host`` header is not in
  ``server.allowedHosts`` (``.streamlit/config.toml``; default 127.0.0.1, localhost, ::1) is refused
  with 400 before Streamlit sees it: a DNS-rebinding page (evil.example resolving to 127.0.0.1)
  gets nothing. Streamlit itself checks the same option for its WebSocket only.
- ``POST /_alliance/session``: trades the one-time ticket of a sign-in
  (:meth:`core.store.ClinicStore.start_session`) for the signed session token, set as the cookie
  ``alliance_session`` (HttpOnly, SameSite=Strict, Path=/, Secure over HTTPS, expiring with the
  session). Streamlit cannot set cookies from Python; the page posts the ticket from a tiny
  same-origin script (:func:`ui.auth.session_cookie_script`).
- ``POST /_alliance/sign-out``: ends the cookie's session on the server and deletes the cookie.

Both routes refuse requests whose ``Origin`` is not this server (no cross-site sign-in or sign-out).
The browser never gets the token in a script-readable form; Python reads it on each WebSocket
connection from ``st.context.cookies`` and checks it against the database.
"""
from __future__ import annotations

import functools
from urllib.parse import urlparse

from core.store import ClinicStore, dashboard_url, demo_url

COOKIE = "alliance_session"
SESSION_ROUTE = "/_alliance/session"
SIGN_OUT_ROUTE = "/_alliance/sign-out"
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "::1")

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


class HostAllowList:
    """ASGI middleware: 400 for any request or WebSocket whose Host is not allowed."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), None)
            if not host_allowed(host):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                from starlette.responses import PlainTextResponse

                response = PlainTextResponse(
                    "This dashboard answers only to the host names in server.allowedHosts "
                    "(.streamlit/config.toml).\n", status_code=400)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _same_origin(request) -> bool:
    origin = request.headers.get("origin")
    if not origin:
        return False
    return urlparse(origin).netloc.lower() == request.headers.get("host", "").lower()


async def _session(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    if not _same_origin(request):
        return Response(status_code=403)
    try:
        body = await request.json()
        ticket = str(body.get("ticket", ""))
    except Exception:  # noqa: BLE001 - not JSON: refused like a wrong ticket
        return Response(status_code=400)
    redeemed = await run_in_threadpool(lambda: dashboard_store().redeem_ticket(ticket))
    if redeemed is None:
        return Response(status_code=400)
    token, seconds = redeemed
    response = Response(status_code=204)
    response.set_cookie(COOKIE, token, max_age=seconds, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
    return response


async def _sign_out(request):
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    if not _same_origin(request):
        return Response(status_code=403)
    token = request.cookies.get(COOKIE)
    if token:
        def end() -> None:
            store = dashboard_store()
            store.end_session(store.session_id_of(token))

        await run_in_threadpool(end)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")
    return response


def routes() -> list:
    from starlette.routing import Route

    return [Route(SESSION_ROUTE, _session, methods=["POST"]),
            Route(SIGN_OUT_ROUTE, _sign_out, methods=["POST"])]


def middleware() -> list:
    from starlette.middleware import Middleware

    global installed
    installed = True
    return [Middleware(HostAllowList)]
