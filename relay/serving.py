"""How ``runway-relay serve`` runs uvicorn, with limits a slow or greedy client cannot get around.

uvicorn (0.54) has no timeout for a request that arrives slowly: ``timeout_keep_alive`` covers only
the idle time between requests and is reset by every byte received, and ``limit_concurrency``
counts a connection only once its headers are complete, so a client that connects and never
finishes its headers (slowloris) holds a connection and a file descriptor for ever. So the HTTP
protocol class is wrapped here (:func:`guarded_protocol`):

- ``RELAY_HEADER_TIMEOUT``: a connection must complete its request headers within this many
  seconds of connecting, or of the first byte of its next request; otherwise it gets 408 and is
  closed.
- ``RELAY_MAX_CONNECTIONS``: connections past this many are answered 503 and closed at once.

A stalled request *body* is cut off at the ASGI level (:mod:`runway_relay.receiver.limits`). At start
the open-file soft limit is raised to the hard limit (:func:`raise_fd_limit`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from typing import Any

import uvicorn

from .settings import Settings

log = logging.getLogger("runway_relay")

FD_RESERVE = 64  # descriptors kept for the database, downloads, the relay's own HTTP clients


def _raw_answer(status: bytes, error: str, *extra: bytes) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error, written straight to a transport."""
    body = json.dumps({"error": error}).encode()
    head = [status, b"content-type: application/json", b"connection: close", *extra]
    return b"\r\n".join([*head, b"content-length: %d" % len(body), b"", body])


_TIMED_OUT = _raw_answer(b"HTTP/1.1 408 Request Timeout", "the request headers did not arrive in time")
_BUSY = _raw_answer(b"HTTP/1.1 503 Service Unavailable", "too many connections; try again", b"retry-after: 5")


def raise_fd_limit() -> int:
    """Raise the open-file soft limit to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1024 * 1024)
    if soft != target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
    return soft


def _http_base() -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol: httptools when installed (``uvicorn[standard]``), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - the relay depends on uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol


def guarded_protocol(header_timeout: float, max_connections: int) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a header deadline and a connection cap (module docstring)."""
    base: Any = _http_base()

    class GuardedHTTP(base):  # type: ignore[misc, valid-type]
        """One connection; uses only ``connections``, ``cycle`` and ``transport`` of uvicorn's class."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._header_timer: asyncio.TimerHandle | None = None
            self._seen_cycle: object = None
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(_BUSY)
                transport.close()
                return
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self._seen_cycle:  # a request's headers are complete
                self._seen_cycle = self.cycle
                self._disarm()
            elif self._awaiting_headers() and self._header_timer is None:
                self._arm()  # the first bytes of the next request on a kept-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _awaiting_headers(self) -> bool:
            return self.cycle is None or bool(self.cycle.response_complete)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = asyncio.get_running_loop().call_later(header_timeout, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self._awaiting_headers() and not self.transport.is_closing():
                self.transport.write(_TIMED_OUT)
                self.transport.close()

    return GuardedHTTP


def run(app: Any, settings: Settings, *, access_log: bool) -> None:
    """Serve ``app`` on ``settings.host:port`` until stopped."""
    soft = raise_fd_limit()
    connections = settings.max_connections
    if connections > soft - FD_RESERVE:
        connections = max(1, soft - FD_RESERVE)
        log.warning(
            "RELAY_MAX_CONNECTIONS=%d is more than the open-file limit (%d) allows; using %d",
            settings.max_connections,
            soft,
            connections,
        )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        access_log=access_log,
        http=guarded_protocol(settings.header_timeout, connections),  # type: ignore[arg-type]
        timeout_keep_alive=5,
    )
