"""``RELAY_SSE_MAX``: at most this many Server-Sent Events streams at once; more get 503 JSON with
``Retry-After`` until one closes."""

from __future__ import annotations

from collections.abc import AsyncIterable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import Busy


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
