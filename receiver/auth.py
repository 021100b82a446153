"""``RELAY_API_KEY``: when set, ``/api/*``, ``/metrics`` and the dashboard need ``Bearer <key>``."""

from __future__ import annotations

import hashlib
import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

_PROTECTED = ("/api/", "/metrics", "/files/")
SESSION_COOKIE = "relay_session"


def session_value(api_key: str) -> str:
    """The dashboard cookie: derived from the key, so the key itself never sits in a cookie."""
    return hmac.new(api_key.encode(), b"runway-relay dashboard session", hashlib.sha256).hexdigest()


class ApiKeyMiddleware:
    """Pure ASGI middleware; callbacks and ``/healthz`` stay open (callbacks carry their own token)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is None or scope["type"] != "http" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"").decode("latin-1")
        cookie = headers.get(b"cookie", b"").decode("latin-1")
        if self._ok(given.removeprefix("Bearer ").strip()) or self._cookie_ok(cookie):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/":
            await send({"type": "http.response.start", "status": 303, "headers": [(b"location", b"/login")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps(
            {"error": "missing or wrong API key: send 'Authorization: Bearer <RELAY_API_KEY>'"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _protected(self, path: str) -> bool:
        return path == "/" or path.startswith(_PROTECTED)

    def _ok(self, key: str) -> bool:
        assert self.api_key is not None
        return bool(key) and hmac.compare_digest(key.encode(), self.api_key.encode())

    def _cookie_ok(self, cookie: str) -> bool:
        assert self.api_key is not None
        expected = session_value(self.api_key).encode()
        for part in cookie.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and hmac.compare_digest(value.encode(), expected):
                return True
        return False
