"""SSRF guard for URLs the relay fetches on someone else's say-so (artifact URLs in callbacks).

A host is refused when it resolves to a loopback, private, link-local, multicast, reserved or
cloud-metadata address, unless private addresses are allowed (``RELAY_DOWNLOAD_ALLOW_PRIVATE=1``) or its
origin is one the relay trusts (the built-in simulator). :mod:`.transport` applies this check to every
connection as it is made, to the very addresses it connects to (see there for DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class BlockedURL(ValueError):
    """The URL points somewhere the relay must not fetch from."""


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL, lower-cased, with the default port filled in."""
    host, port = host_port(url)
    return f"{urlsplit(url).scheme.lower()}://{host}:{port}"


def is_public(address: str) -> bool:
    """True for an address a public server may fetch from."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _METADATA
    )


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a seam for tests)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def public_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to; :class:`BlockedURL` unless all of them are public."""
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise BlockedURL(f"cannot resolve {host}: {exc}") from None
    if not addresses or not all(is_public(address) for address in addresses):
        raise BlockedURL(
            f"{host} resolves to a private or loopback address; set "
            "RELAY_DOWNLOAD_ALLOW_PRIVATE=1 to allow it"
        )
    return addresses


def check_scheme(url: str) -> None:
    """Raise :class:`BlockedURL` unless ``url`` is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedURL(f"only http(s) URLs are fetched, not {parts.scheme or 'this'!r}")


async def vetted_addresses(
    host: str, port: int, *, allow_private: bool, trusted: frozenset[tuple[str, int]] = frozenset()
) -> list[str]:
    """The addresses a download may connect to for ``host:port``; :class:`BlockedURL` if none.

    The host itself, unchecked, when private addresses are allowed or ``(host, port)`` is trusted;
    otherwise every address it resolves to, provided all of them are public.
    """
    if allow_private or (host.lower(), port) in trusted:
        return [host]
    return await public_addresses(host, port)


def host_port(origin_url: str) -> tuple[str, int]:
    """``(host, port)`` of an origin or URL, the host lower-cased, the default port filled in."""
    parts = urlsplit(origin_url)
    return (parts.hostname or "").lower(), parts.port or (443 if parts.scheme == "https" else 80)
