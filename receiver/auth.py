"""``RELAY_API_KEY``: when set, nothing answers without the key but what must stay open.

Open: ``POST /callbacks/{token}`` (a callback carries its own secret), ``/login`` and ``/logout``,
and ``GET /healthz``. Everything else, the built-in simulator and routes added later included, needs
``Authorization: Bearer <key>`` or the dashboard's session cookie (:mod:`.sessions`). The relay
reaches its own mounted simulator with a per-process token instead (``Settings.internal_token``),
accepted only under the simulator's paths. Wrong keys are slowed down per client (:mod:`.throttle`).

Refused: a page (``GET /``, or any ``GET`` asking for HTML) is sent to ``/login`` (303); anything
else gets 401 JSON, or 429 with ``Retry-After`` while the client is locked out.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from . import sessions
from .asgi import header, refuse
from .throttle import FailureThrottle

INTERNAL_PATHS = ("/v1/runwayml/", "/sim/")
AUTHENTICATED = "runway_relay.authenticated"  # set in the scope when the request holds the key


SESSION_COOKIE = sessions.COOKIE  # the names this module had before sessions.py, kept for callers


def session_value(api_key: str, hours: float = 12.0) -> str:
    """A valid session cookie value for ``api_key``, good for ``hours`` (see :mod:`.sessions`)."""
    return sessions.issue(api_key, hours)


def authenticated(scope: Scope) -> bool:
    """Whether this request holds ``RELAY_API_KEY`` (bearer or session), as the middleware found.

    For open routes that show more to the operator (say ``/healthz``): the check, and the slowdown
    of wrong keys, happen once, in the middleware. True when no key is set.
    """
    return bool(scope.get(AUTHENTICATED, False))


def is_open(method: str, path: str) -> bool:
    """The routes that answer without the key (contract §8)."""
    if path.startswith("/callbacks/"):
        return method == "POST"
    if path in ("/login", "/logout"):
        return True
    return path == "/healthz" and method in ("GET", "HEAD")


def client_of(scope: Scope) -> str:
    """The client's address, the key the throttle counts by."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ApiKeyMiddleware:
    """Pure ASGI middleware, default deny; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        internal_token: str | None = None,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.internal = f"Bearer {internal_token}".encode() if internal_token else None
        self.throttle = throttle or FailureThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key is None:
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        given = header(scope, b"authorization") or ""
        if self._internal(scope, given) or self._session(scope):
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        client = client_of(scope)
        wait = self.throttle.retry_after(client)
        if is_open(scope["method"], scope["path"]):  # answers anyway; the key only shows more
            scope[AUTHENTICATED] = wait is None and self._bearer(client, given)
            await self.app(scope, receive, send)
            return
        if wait is not None:
            message = f"too many wrong keys from this address; try again in {wait} s"
            await refuse(scope, receive, send, 429, {"error": message}, [(b"retry-after", b"%d" % wait)])
            return
        if self._bearer(client, given):
            scope[AUTHENTICATED] = True
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, receive, send)

    def _bearer(self, client: str, given: str) -> bool:
        """Check a bearer key, counting a wrong one against ``client``."""
        if not given.startswith("Bearer "):
            return False
        if self._right(given.removeprefix("Bearer ").strip()):
            self.throttle.succeeded(client)
            return True
        self.throttle.failed(client)
        return False

    def _internal(self, scope: Scope, given: str) -> bool:
        if self.internal is None or not scope["path"].startswith(INTERNAL_PATHS):
            return False
        return hmac.compare_digest(given.encode("latin-1", "replace"), self.internal)

    def _session(self, scope: Scope) -> bool:
        assert self.api_key is not None
        value = sessions.from_header(header(scope, b"cookie"))
        return value is not None and sessions.valid(self.api_key, value)

    def _right(self, key: str) -> bool:
        assert self.api_key is not None
        return bool(key) and hmac.compare_digest(key.encode(), self.api_key.encode())

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = scope["method"] in ("GET", "HEAD") and (
            scope["path"] == "/" or "text/html" in (header(scope, b"accept") or "")
        )
        if page and not scope["path"].startswith("/api/"):
            await send({"type": "http.response.start", "status": 303, "headers": [(b"location", b"/login")]})
            await send({"type": "http.response.body", "body": b""})
            return
        message = "missing or wrong API key: send 'Authorization: Bearer <RELAY_API_KEY>'"
        await refuse(scope, receive, send, 401, {"error": message}, [(b"www-authenticate", b"Bearer")])
