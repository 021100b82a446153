"""In-process fan-out of job updates to Server-Sent Events listeners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

END = None  # what a listener's queue receives when the relay is stopping: the stream should end


class Broadcaster:
    """Each listener gets its own bounded queue; a slow listener loses old updates, never blocks."""

    def __init__(self, queue_size: int = 256) -> None:
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @property
    def listening(self) -> bool:
        """Whether any listener is connected (an update nobody reads need not be built)."""
        return bool(self._listeners)

    def publish(self, job: dict[str, Any]) -> None:
        """Send a job update to every listener."""
        for queue in self._listeners:
            self._put(queue, job)

    def _put(self, queue: asyncio.Queue[dict[str, Any] | None], item: dict[str, Any] | None) -> None:
        if queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
        queue.put_nowait(item)

    def close_soon(self) -> None:
        """End every stream, now and to come (safe from a signal handler or another thread).

        A server stopping waits for open requests, and an event stream never ends by itself: this lets
        ``serve`` stop at once however many dashboards are open.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close)
        else:
            self.closed = True

    def _close(self) -> None:
        self.closed = True
        for queue in self._listeners:
            self._put(queue, END)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[dict[str, Any] | None]]:
        """A queue of updates (then :data:`END` when the relay stops) for as long as the context is open."""
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(self._size)
        if self.closed:
            queue.put_nowait(END)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
