"""Limits at the ASGI level: a request body that stops arriving, and how many event streams are open.

- ``RELAY_BODY_TIMEOUT``: while a request's body is still coming, each wait for its next piece may
  last this many seconds; then the request is answered 408 and the connection closed. Once the body
  is complete, waiting on ``receive`` (a stream listening for the client to leave) is not timed.
- ``RELAY_SSE_MAX``: at most this many Server-Sent Events streams at once; more get 503 JSON with
  ``Retry-After`` until one closes.

(A request whose *headers* stop arriving never reaches the app: see :mod:`runway_relay.serving`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Busy, RequestTimeout


class BodyTimeoutMiddleware:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body stopped arriving (nothing for {self.timeout:g} seconds)"
                ) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, timed, send)


class StreamSlots:
    """Counts open event streams; :meth:`response` refuses past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def response(self, events: AsyncIterable[str]) -> StreamingResponse:
        """A ``text/event-stream`` response holding one slot until it ends, or :class:`Busy`."""
        if self.open >= self.limit:
            raise Busy(
                f"{self.open} event streams are open, the most allowed (RELAY_SSE_MAX); try again soon"
            )
        self.open += 1
        return _SlotStream(events, self)

    def release(self) -> None:
        """A stream ended."""
        self.open -= 1


class _SlotStream(StreamingResponse):
    def __init__(self, events: AsyncIterable[str], slots: StreamSlots) -> None:
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.release()
