"""``POST /callbacks/{token}``: where useapi.net reports a task's progress.

route → parse (tolerant) → match by token and replyRef → state machine → ONE transaction → 200 → signal.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from ..service import MAX_CALLBACK_BYTES, Relay
from .bodies import read_limited

# The answers are few and fixed: encode them once, not per callback.
_ANSWERS = {
    outcome: json.dumps({"ok": True, "outcome": outcome}).encode()
    for outcome in ("applied", "duplicate", "stale", "ignored")
}


async def receive_callback(request: Request) -> Response:
    """200 once the callback and its effects are committed; 404/400/413 store nothing."""
    relay: Relay = request.app.state.relay
    raw = await read_limited(request, MAX_CALLBACK_BYTES)
    result = await relay.ingest_callback(request.path_params["token"], raw)
    body = _ANSWERS.get(result.outcome) or json.dumps({"ok": True, "outcome": result.outcome}).encode()
    return Response(body, media_type="application/json")
