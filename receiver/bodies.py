"""Reading request bodies with a size limit, and JSON with clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from ..errors import BadRequest, PayloadTooLarge


async def read_limited(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int = 1024 * 1024) -> Any:
    """Decode a JSON body or raise :class:`BadRequest` saying what is wrong."""
    raw = await read_limited(request, limit)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON (or nested too deeply)") from None
