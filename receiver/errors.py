"""Errors become JSON answers here, and only here."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import Busy, PayloadTooLarge, RelayError, StorageUnavailable

log = logging.getLogger("runway_relay.receiver")


async def relay_error(request: Request, exc: Exception) -> Response:
    """A :class:`RelayError` → its status and ``{"error": ...}`` (plus ``field`` for 422)."""
    assert isinstance(exc, RelayError)
    if isinstance(exc, StorageUnavailable):
        log.error("database unavailable, answering 503 so the sender retries: %s", exc.message)
    headers = {"Retry-After": "5"} if isinstance(exc, (StorageUnavailable, Busy)) else None
    if isinstance(exc, PayloadTooLarge) and not exc.drained:
        headers = {"Connection": "close"}  # the rest of the body is still coming (or never will)
    return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 as JSON too."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def server_error(request: Request, exc: Exception) -> Response:
    """Anything unexpected: logged with its traceback, answered without internals."""
    log.exception("unexpected error on %s %s", request.method, request.url.path.split("/")[1])
    return JSONResponse({"error": "internal error; see the relay's log"}, status_code=500)


EXCEPTION_HANDLERS = {RelayError: relay_error, HTTPException: http_error, Exception: server_error}
