"""Small helpers for the pure ASGI middleware: read a header, answer with JSON."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Receive, Scope, Send

from .bodies import discard_rest


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of request header ``name`` (lower-case bytes), decoded, or ``None``."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def has_body(scope: Scope) -> bool:
    """Whether the request says a body follows (``Content-Length`` above 0, or chunked)."""
    length = header(scope, b"content-length")
    return bool(header(scope, b"transfer-encoding")) or (
        length is not None and length.strip() not in ("", "0")
    )


async def refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer ``status`` with a JSON ``body`` before the app runs.

    A request body that follows is read and dropped first (see :mod:`.bodies`: answering over unread
    bytes can reset the connection), unless the client waits for ``100 Continue``; then the answer
    closes the connection.
    """
    extra = list(headers or [])
    waiting = (header(scope, b"expect") or "").lower() == "100-continue"
    if has_body(scope) and (waiting or not await discard_rest(receive)):
        extra.append((b"connection", b"close"))
    content = json.dumps(body).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(content)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": content})
