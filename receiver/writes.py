"""Writes that a browser could be tricked into sending are refused before they reach an endpoint.

- **Content type.** A cross-site ``<form>`` can POST ``text/plain``, urlencoded or multipart bodies
  without the browser asking first; ``fetch`` with JSON cannot. So a write (POST, PUT, PATCH,
  DELETE) to ``/api/*`` must send JSON, or multipart to ``POST /api/assets``, else 415. A write
  with no body at all (``cancel``, ``replay``) needs no content type.
- **Origin.** A write to ``/api/*``, ``/login`` or ``/logout`` that a browser marks as coming from
  another site (``Sec-Fetch-Site`` other than ``same-origin`` / ``none``, or an ``Origin`` that is
  neither this request's host nor ``RELAY_PUBLIC_URL``) gets 403, so a sibling origin cannot ride on
  the session cookie. Scripts and the CLI send neither header and are not affected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import has_body, header, refuse

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOADS = "/api/assets"


def _media_type(scope: Scope) -> str:
    return (header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()


def wrong_content(scope: Scope) -> str | None:
    """Why a write to ``/api/*`` is refused with 415, or ``None`` if its body is acceptable."""
    media = _media_type(scope)
    if not media and not has_body(scope):
        return None
    if scope["path"] == UPLOADS:
        if media == "multipart/form-data":
            return None
        return f"send the file as multipart/form-data, not {media or 'a body without Content-Type'}"
    if media == "application/json" or media.endswith("+json"):
        return None
    return f"send the body as JSON with 'Content-Type: application/json', not {media or 'no Content-Type'}"


def cross_site(scope: Scope, public_origin: str | None) -> bool:
    """True when the browser says this request comes from another site."""
    site = header(scope, b"sec-fetch-site")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return True
    origin = header(scope, b"origin")
    if origin is None:
        return False
    origin = origin.strip().lower().rstrip("/")
    if public_origin and origin == public_origin:
        return False
    host = (header(scope, b"host") or "").lower()
    return origin == "null" or urlsplit(origin).netloc != host


class WriteGuardMiddleware:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, public_url: str | None = None) -> None:
        self.app = app
        parts = urlsplit(public_url) if public_url else None
        self.public_origin = f"{parts.scheme}://{parts.netloc}".lower() if parts else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITES:
            path = scope["path"]
            api = path.startswith("/api/")
            if (api or path in ("/login", "/logout")) and cross_site(scope, self.public_origin):
                error = "refused: a write from another site (check Origin / Sec-Fetch-Site)"
                await refuse(scope, receive, send, 403, {"error": error})
                return
            problem = wrong_content(scope) if api else None
            if problem is not None:
                await refuse(scope, receive, send, 415, {"error": problem})
                return
        await self.app(scope, receive, send)
