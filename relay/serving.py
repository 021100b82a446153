"""How ``runway-relay serve`` runs uvicorn, with limits a slow or greedy client cannot get around.

uvicorn (0.54) has no timeout for a request that arrives slowly: ``timeout_keep_alive`` covers only
the idle time between requests and is reset by every byte received, and ``limit_concurrency``
counts a connection only once its headers are complete, so a client that connects and never
finishes its headers (slowloris) holds a connection and a file descriptor for ever. So the HTTP
protocol class is wrapped here (:func:`guarded_protocol`):

- ``RELAY_HEADER_TIMEOUT``: a connection must complete its request headers within this many
  seconds of connecting, or of the first byte of its next request; otherwise it gets 408 and is
  closed.
- ``RELAY_BODY_TIMEOUT``: a request body may stall this long between two pieces (unless the relay
  itself stopped reading, as flow control does when the app is busy); then 408 and close.
- ``RELAY_MAX_CONNECTIONS``: connections past this many are answered 503 and closed at once.

At start the open-file soft limit is raised to the hard limit (:func:`raise_fd_limit`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn

from .settings import Settings

log = logging.getLogger("runway_relay")

FD_RESERVE = 64  # descriptors kept for the database, downloads, the relay's own HTTP clients


def _raw_answer(status: bytes, error: str, *extra: bytes) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error, written straight to a transport."""
    body = json.dumps({"error": error}).encode()
    head = [status, b"content-type: application/json", b"connection: close", *extra]
    return b"\r\n".join([*head, b"content-length: %d" % len(body), b"", body])


_HEADERS_LATE = _raw_answer(b"HTTP/1.1 408 Request Timeout", "the request headers did not arrive in time")
_BODY_LATE = _raw_answer(b"HTTP/1.1 408 Request Timeout", "the request body stopped arriving")
_BUSY = _raw_answer(b"HTTP/1.1 503 Service Unavailable", "too many connections; try again", b"retry-after: 5")


def listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (in use, not this machine's address), or ``None``.

    Checked before uvicorn starts, which would log the error and exit 3 ("server unreachable").
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):
            return None
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


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


HEADERS, BODY = "headers", "body"


def guarded_protocol(
    header_timeout: float, body_timeout: float, max_connections: int
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with read deadlines and a connection cap (see the module docstring).

    No timer per request: each connection notes when its current wait began (a clock read per
    ``data_received``), and one sweep per loop closes the connections whose wait ran out.
    """
    base: Any = _http_base()

    class GuardedHTTP(base):  # type: ignore[misc, valid-type]
        """One connection; uses ``connections``, ``cycle``, ``flow`` and ``transport`` of uvicorn's class."""

        sweep_every: ClassVar[float] = max(0.05, min(1.0, header_timeout / 4, body_timeout / 4))
        watched: ClassVar[set[GuardedHTTP]] = set()
        sweeper: ClassVar[asyncio.Task[None] | None] = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._seen_cycle: object = None
            self._waiting: str | None = HEADERS
            self._since = asyncio.get_running_loop().time()
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(_BUSY)
                transport.close()
                return
            self.watched.add(self)
            if GuardedHTTP.sweeper is None or GuardedHTTP.sweeper.done():
                GuardedHTTP.sweeper = asyncio.get_running_loop().create_task(_sweep(GuardedHTTP))

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            now = asyncio.get_running_loop().time()
            cycle = self.cycle
            if cycle is not self._seen_cycle:  # a request's headers are complete
                self._seen_cycle = cycle
                self._waiting, self._since = (BODY if cycle.more_body else None), now
            elif self._waiting == BODY:
                self._waiting, self._since = (BODY if cycle.more_body else None), now
            elif self._waiting is None and (cycle is None or cycle.response_complete):
                self._waiting, self._since = HEADERS, now  # the first bytes of the next request

        def connection_lost(self, exc: Exception | None) -> None:
            self.watched.discard(self)
            super().connection_lost(exc)

        def check(self, now: float) -> None:
            """Close this connection if the wait it is in has run out (called by the sweep)."""
            if self.transport.is_closing() or self._waiting is None:
                return
            if self._waiting == HEADERS and now - self._since > header_timeout:
                self.transport.write(_HEADERS_LATE)
                self.transport.close()
            elif self._waiting == BODY and now - self._since > body_timeout:
                cycle = self.cycle
                if not cycle.more_body:
                    self._waiting = None
                elif self.flow.read_paused:  # the app is not reading: not the client's fault
                    self._since = now
                else:
                    if not cycle.response_started:
                        self.transport.write(_BODY_LATE)
                    self.transport.close()

    return GuardedHTTP


async def _sweep(protocol: Any) -> None:
    """Once in a while, let every watched connection of ``protocol`` check its deadline."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(protocol.sweep_every)
        now = loop.time()
        for connection in list(protocol.watched):
            connection.check(now)


class _Server(uvicorn.Server):
    """Calls ``on_exit`` first when asked to stop: a stop waits for the requests in flight, and an
    event stream (a dashboard, ``curl -N``) never ends by itself, so the relay ends its streams."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.on_exit is not None:
            self.on_exit()
        super().handle_exit(sig, frame)
        # uvicorn raises the signal again once it has stopped, so SIGTERM would end the process
        # "killed by signal 15". A SIGTERM that led to a clean stop is a success: exit 0.
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def run(app: Any, settings: Settings, *, access_log: bool, on_exit: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``settings.host:port`` until stopped (``on_exit``: called at SIGTERM/SIGINT)."""
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
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        proxy_headers=False,
        access_log=access_log,
        http=guarded_protocol(settings.header_timeout, settings.body_timeout, connections),  # type: ignore[arg-type]
        timeout_keep_alive=5,
        # requests in flight (callbacks among them) get this long to finish; then the relay stops
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
    )
    _Server(config, on_exit).run()
