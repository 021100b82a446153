"""``POST /callbacks/{token}``: where useapi.net reports a task's progress.

route → parse (tolerant) → match by token and replyRef → state machine → ONE transaction → 200 → signal.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..service import MAX_CALLBACK_BYTES, Relay
from .bodies import read_limited


async def receive_callback(request: Request) -> JSONResponse:
    """200 once the callback and its effects are committed; 404/400/413 store nothing."""
    relay: Relay = request.app.state.relay
    raw = await read_limited(request, MAX_CALLBACK_BYTES)
    result = await relay.ingest_callback(request.path_params["token"], raw)
    return JSONResponse({"ok": True, "outcome": result.outcome})
