"""Reading request bodies with a size limit, and JSON with clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope

from ..errors import BadRequest, PayloadTooLarge


async def receive_limited(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body of an ASGI request, refusing (413) as soon as it exceeds ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def read_limited(request: Request, limit: int) -> bytes:
    """:func:`receive_limited` for a Starlette request."""
    return await receive_limited(request.scope, request.receive, limit)


async def read_json(request: Request, limit: int = 1024 * 1024) -> Any:
    """Decode a JSON body or raise :class:`BadRequest` saying what is wrong."""
    raw = await read_limited(request, limit)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON (or nested too deeply)") from None
