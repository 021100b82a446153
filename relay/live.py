"""In-process fan-out of job updates to Server-Sent Events listeners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class Broadcaster:
    """Each listener gets its own bounded queue; a slow listener loses old updates, never blocks."""

    def __init__(self, queue_size: int = 256) -> None:
        self._listeners: set[asyncio.Queue[dict[str, Any]]] = set()
        self._size = queue_size

    @property
    def listening(self) -> bool:
        """Whether any listener is connected (an update nobody reads need not be built)."""
        return bool(self._listeners)

    def publish(self, job: dict[str, Any]) -> None:
        """Send a job update to every listener."""
        for queue in self._listeners:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(job)

    @contextlib.asynccontextmanager
    async def listen(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of updates for as long as the context is open."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._size)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)
