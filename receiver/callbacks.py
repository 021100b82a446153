"""``POST /callbacks/{token}``: where useapi.net reports a task's progress.

route → parse (tolerant) → match by token and replyRef → state machine → ONE transaction → 200 → signal.
"""

from __future__ import annotations

import json
import time

from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from ..errors import RelayError
from ..service import MAX_CALLBACK_BYTES, Relay
from .bodies import receive_limited


def _answer(outcome: str) -> bytes:
    return json.dumps({"ok": True, "outcome": outcome}).encode()


# The answers are few and fixed: encode them once, not per callback.
_ANSWERS = {outcome: _answer(outcome) for outcome in ("applied", "duplicate", "stale", "ignored")}
# What a refused callback counts as in ``relay_callbacks_total{outcome}``.
_REFUSED = {404: "not_found", 400: "bad_request", 413: "too_large", 503: "unavailable"}


class CallbackEndpoint:
    """The endpoint as a plain ASGI app, which Starlette routes like any other.

    Every progress tick of every job lands here, so it skips building Request and Response objects.
    Errors still reach the app's exception handlers (ExceptionMiddleware): 404/400/413 store nothing.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay: Relay = scope["app"].state.relay
        started, outcome = time.perf_counter(), "error"
        try:
            raw = await receive_limited(scope, receive, MAX_CALLBACK_BYTES)
            result = await relay.ingest_callback(scope["path_params"]["token"], raw)
            outcome = result.outcome
        except RelayError as exc:
            outcome = _REFUSED.get(exc.status_code, "error")
            raise
        except ClientDisconnect:
            outcome = "disconnected"
            raise
        finally:
            relay.metrics.callback(outcome, time.perf_counter() - started)
        body = _ANSWERS.get(result.outcome) or _answer(result.outcome)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
