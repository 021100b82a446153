"""SSRF guard for URLs the relay fetches on someone else's say-so (artifact URLs in callbacks).

A URL is refused when its host resolves to a loopback, private, link-local, multicast, reserved or
cloud-metadata address, unless private addresses are allowed (``RELAY_DOWNLOAD_ALLOW_PRIVATE=1``) or the
URL is on an origin the relay trusts (the built-in simulator).
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
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


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


async def check_url(url: str, *, allow_private: bool, trusted: frozenset[str] = frozenset()) -> None:
    """Raise :class:`BlockedURL` unless ``url`` is http(s) and safe to fetch."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BlockedURL(f"only http(s) URLs are fetched, not {parts.scheme or 'this'!r}")
    if allow_private or origin(url) in trusted:
        return
    host = parts.hostname
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BlockedURL(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        if not is_public(str(info[4][0])):
            raise BlockedURL(
                f"{host} resolves to a private or loopback address; set "
                "RELAY_DOWNLOAD_ALLOW_PRIVATE=1 to allow it"
            )
