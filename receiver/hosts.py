"""Which ``Host`` the relay answers to, checked by Starlette's ``TrustedHostMiddleware``.

A DNS-rebinding page makes a browser send ``Host: attacker.example`` to a relay on 127.0.0.1; only the
names the relay is really reached by are served: ``RELAY_PUBLIC_URL``'s host (callbacks come that
way), the bind address, and for a loopback bind ``localhost``, ``127.0.0.1`` and ``[::1]``. A relay
bound to every address (``0.0.0.0``, which needs ``RELAY_API_KEY``) without ``RELAY_PUBLIC_URL`` does
not know its names and answers to any. ``GET /healthz`` and ``GET /readyz`` answer to any name:
probes address a relay by its own name (``relay1:8000``), and neither answer holds data worth a
rebinding attack (``/readyz`` says ready or why not, and needs the key when one is set). Refusals
are JSON like every other error.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..settings import Settings
from .asgi import refuse

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
_ADMITTED = "runway_relay.trusted_host"
PROBES = ("/healthz", "/readyz")  # liveness and readiness: any Host


def _host(netloc_or_host: str) -> str:
    """A host as it appears in a ``Host`` header, without the port (IPv6 in brackets)."""
    if ":" in netloc_or_host and not netloc_or_host.startswith("["):
        return f"[{netloc_or_host}]"  # a bare IPv6 address
    return netloc_or_host.lower()


def allowed_hosts(settings: Settings) -> list[str]:
    """The ``Host`` names this relay answers to (``["*"]``: any); see the module docstring."""
    if settings.host in WILDCARDS and not settings.public_url:
        return ["*"]
    hosts = {_host(urlsplit(settings.own_url).netloc.rsplit(":", 1)[0])}
    if settings.public_url:
        hosts.add(_host(urlsplit(settings.public_url).hostname or ""))
    if settings.host not in WILDCARDS:
        hosts.add(_host(settings.host))
    if settings.is_loopback or settings.host in WILDCARDS:
        hosts.update(LOOPBACK_NAMES)
    return sorted(h for h in hosts if h)


def _health_check(scope: Scope) -> bool:
    """``GET /healthz`` and ``/readyz`` answer whatever the Host: a balancer's or an orchestrator's
    probe addresses the relay by its own name (``relay1:8000``); the anonymous ``/healthz`` says only
    "ok", and ``/readyz`` (keyed when a key is set) only ready or why not."""
    return scope["path"] in PROBES and scope["method"] in ("GET", "HEAD")


class TrustedHosts:
    """Starlette's ``TrustedHostMiddleware``, its refusal answered as JSON."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = allowed
        self.check = TrustedHostMiddleware(self._admit, allowed_hosts=allowed, www_redirect=False)

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_ADMITTED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.check.allow_any or _health_check(scope):
            await self.app(scope, receive, send)
            return

        async def answer(message: Message) -> None:
            if scope.get(_ADMITTED):
                await send(message)
            elif message["type"] == "http.response.start":  # Starlette refused: say why, in JSON
                error = (
                    "this relay does not answer to that Host header; it answers to "
                    f"{', '.join(self.allowed)} (RELAY_PUBLIC_URL sets the public name)"
                )
                await refuse(scope, receive, send, 400, {"error": error})

        await self.check(scope, receive, answer)
