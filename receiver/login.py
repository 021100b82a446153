"""``/login`` and ``/logout``: the dashboard's sign-in with ``RELAY_API_KEY``.

``POST /login`` checks the key (wrong keys count towards the client's lockout, :mod:`.throttle`) and
sets the session cookie (:mod:`.sessions`, valid ``RELAY_SESSION_HOURS``); ``POST /logout`` clears
it and sends the browser back to ``/login``. The page carries its own small style, allowed by its
hash in the page's Content-Security-Policy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from html import escape
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from . import sessions
from .auth import client_of
from .bodies import read_limited
from .headers import PAGE_CSP

_STYLE = (
    "body{font:14px system-ui,sans-serif;display:grid;place-items:center;height:90vh}"
    "form{display:grid;gap:8px;width:280px}.error{color:#b91c1c}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
_CSP = PAGE_CSP.replace("style-src 'self'", f"style-src 'self' 'sha256-{_STYLE_HASH}'")
_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>runway-relay: sign in</title>'
    f'<style>{_STYLE}</style></head><body><form method="post" action="/login">'
    '<h3>runway-relay</h3><label for="key">API key (RELAY_API_KEY)</label>'
    '<input id="key" name="key" type="password" autofocus>{error}<button type="submit">Sign in</button>'
    "</form></body></html>"
)
FORM_MAX = 4096


def _page(error: str = "", status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    shown = f'<p class="error">{escape(error)}</p>' if error else ""
    page = _PAGE.replace("{error}", shown)
    return HTMLResponse(page, status, headers={"Content-Security-Policy": _CSP, **(headers or {})})


def _secure(request: Request) -> bool:
    """Mark the cookie Secure when the browser reached the relay over https (directly or the proxy)."""
    public = request.app.state.relay.settings.public_url
    behind_tls = bool(public) and urlsplit(public).scheme == "https"
    return request.url.scheme == "https" or (behind_tls and urlsplit(public).netloc == request.url.netloc)


async def login(request: Request) -> Response:
    """``GET /login`` shows the form; ``POST /login`` checks the key and sets the session cookie."""
    settings = request.app.state.relay.settings
    api_key = settings.api_key
    if api_key is None:
        return RedirectResponse("/", 303)
    if request.method == "GET":
        return _page()
    throttle = request.app.state.throttle
    client = client_of(request.scope)
    wait = throttle.retry_after(client)
    if wait is not None:
        return _page(f"Too many wrong keys. Try again in {wait} s.", 429, {"Retry-After": str(wait)})
    fields = parse_qs((await read_limited(request, FORM_MAX)).decode("utf-8", "replace"))
    given = (fields.get("key") or [""])[0]
    if not given or not hmac.compare_digest(given.encode(), api_key.encode()):
        throttle.failed(client)
        return _page("Wrong key.", 401)
    throttle.succeeded(client)
    response = RedirectResponse("/", 303)
    response.set_cookie(
        sessions.COOKIE,
        sessions.issue(api_key, settings.session_hours),
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def logout(request: Request) -> Response:
    """``POST /logout``: clear the session cookie and go to ``/login``."""
    response = RedirectResponse("/login", 303)
    response.delete_cookie(sessions.COOKIE, httponly=True, samesite="strict", secure=_secure(request))
    return response
