"""Reading request bodies with a size limit, and JSON with clear errors.

A body over its limit is refused with 413, but first what is left of it is read and dropped (for at
most ``LINGER_SECONDS``, like nginx's lingering close): answering with unread bytes in the kernel's
receive buffer and then closing makes the kernel reset the connection, which can destroy the answer
before the client reads it. A client that asked ``Expect: 100-continue`` has sent nothing yet and is
answered at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import Message, Receive, Scope

from ..errors import BadRequest, PayloadTooLarge

LINGER_SECONDS = 30.0  # longest time spent reading a refused body (nginx: lingering_time)
LINGER_IDLE = 5.0  # longest wait for its next piece (nginx: lingering_timeout)


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, if it sent a valid one."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


def _expects_continue(scope: Scope) -> bool:
    return any(n == b"expect" and v.lower() == b"100-continue" for n, v in scope["headers"])


async def discard_rest(receive: Receive, last: Message | None = None) -> bool:
    """Read and drop the rest of a body; True if it ended (False: timed out or the client left)."""
    if last is not None and not last.get("more_body", False):
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LINGER_SECONDS
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), min(LINGER_IDLE, left))
        except TimeoutError:
            return False
        if message["type"] == "http.disconnect":
            return False
        if not message.get("more_body", False):
            return True
    return False


async def refuse_too_large(scope: Scope, receive: Receive, limit: int, last: Message | None = None) -> None:
    """Raise :class:`PayloadTooLarge` after reading what is left of the body (see the module docstring)."""
    if last is None and _expects_continue(scope):
        drained = False  # reading would send "100 Continue" and invite the body we refuse
    else:
        drained = await discard_rest(receive, last)
    raise PayloadTooLarge(f"the body is over {limit} bytes", drained=drained)


async def receive_limited(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body of an ASGI request, refusing (413) as soon as it exceeds ``limit`` bytes."""
    length = declared_length(scope)
    if length is not None and length > limit:
        await refuse_too_large(scope, receive, limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            chunks.clear()
            await refuse_too_large(scope, receive, limit, message)
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
