"""The dashboard's session cookie: an expiry time signed with a key derived from ``RELAY_API_KEY``.

``{expires}.{hmac}``: the key itself never sits in a cookie, the cookie stops working at ``expires``
(``RELAY_SESSION_HOURS`` after sign-in) or when the key changes, and it cannot be forged or
prolonged without the key. Signing out clears it in that browser.
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "relay_session"


def _signature(api_key: str, expires: int) -> str:
    key = hashlib.sha256(b"runway-relay dashboard session\x00" + api_key.encode()).digest()
    return hmac.new(key, str(expires).encode(), hashlib.sha256).hexdigest()


def issue(api_key: str, hours: float, now: float | None = None) -> str:
    """A session value valid for ``hours`` from ``now``."""
    expires = int((time.time() if now is None else now) + hours * 3600)
    return f"{expires}.{_signature(api_key, expires)}"


def valid(api_key: str, value: str, now: float | None = None) -> bool:
    """True when ``value`` was issued with ``api_key`` and has not expired."""
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    good = hmac.compare_digest(signature.encode(), _signature(api_key, int(expires)).encode())
    return good and int(expires) > (time.time() if now is None else now)


def from_header(cookie_header: str | None) -> str | None:
    """The session cookie's value in a ``Cookie`` header, if there is one."""
    for part in (cookie_header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None
