"""The HTTP client artifact downloads use: the SSRF guard runs on every connection as it is made.

DNS rebinding: checking a URL's host and then letting httpx resolve it again leaves a gap (the second
answer may be ``127.0.0.1``). Instead, the connection pool gets a network backend that resolves the
name itself, refuses unless every address is public (or the origin is trusted, or private addresses are
allowed: :func:`.netguard.vetted_addresses`) and connects to the address it vetted. The host name
stays the connection's identity, so TLS certificates are still checked against it and keep-alive
connections are reused only for the same host. Redirect targets pass the same check, since each needs
a connection of its own, and so does a retry that reconnects.

Its streams also read up to 1 MiB at a time: httpcore asks for 64 KiB, which anyio serves by slicing
(and copying) each larger socket read; asking for more roughly halves the CPU time per byte.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from . import netguard
from .netguard import BlockedURL

READ_BYTES = 1024 * 1024


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream that reads in larger pieces."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to vetted addresses; see the module docstring."""

    def __init__(self, *, allow_private: bool, trusted: frozenset[str] = frozenset()) -> None:
        """``trusted`` holds origins (``scheme://host:port``) whose hosts are connected to unchecked."""
        self.allow_private = allow_private
        self.trusted = frozenset(netguard.host_port(origin) for origin in trusted)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and vet ``host``, then connect to the first vetted address that answers."""
        try:
            async with asyncio.timeout(timeout):
                addresses = await netguard.vetted_addresses(
                    host, port, allow_private=self.allow_private, trusted=self.trusted
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        error: Exception = httpcore.ConnectError(f"no address to connect to for {host}")
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _Stream(stream)
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        """Never: downloads go over TCP only."""
        raise BlockedURL("downloads do not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, on a connection pool that uses :class:`GuardedBackend`."""

    def __init__(self, backend: GuardedBackend, limits: httpx.Limits) -> None:
        context = _ssl_context()
        super().__init__(verify=context, trust_env=False, limits=limits)
        # httpx takes no network backend, so its pool is replaced by an equal one that has ours.
        # Fail closed if httpx ever stops keeping its pool there.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version keeps no connection pool where expected")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )


def guarded_client(
    *, allow_private: bool, trusted: frozenset[str] = frozenset(), timeout: httpx.Timeout
) -> httpx.AsyncClient:
    """An AsyncClient for downloads: guarded connections, no proxies from the environment (a proxy
    would connect to the unvetted name), no compression (sizes and ranges are of the bytes on disk)."""
    backend = GuardedBackend(allow_private=allow_private, trusted=trusted)
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=4)
    return httpx.AsyncClient(
        transport=GuardedTransport(backend, limits),
        timeout=timeout,
        trust_env=False,
        headers={"accept-encoding": "identity", "user-agent": "runway-relay"},
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` honoured), made once."""
    return httpx.create_ssl_context()
