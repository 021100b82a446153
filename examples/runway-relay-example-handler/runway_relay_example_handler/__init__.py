"""An example runway-relay plugin: append one JSON line per job event to ``events.jsonl``.

The file lives in ``RELAY_DOWNLOAD_DIR`` (read from the relay's settings, the only configuration a
handler gets); enable the handler with ``RELAY_HANDLERS=download,example``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from runway_relay.handlers import HandlerContext, HandlerEvent
from runway_relay.states import Signal

__all__ = ["EventLogHandler"]


class EventLogHandler:
    """Writes ``{"event", "job", "status", "progress", "run", "attempt"}`` lines, one per event."""

    name = "example"
    events = frozenset(Signal)
    max_attempts = 3

    def __init__(self, ctx: HandlerContext) -> None:
        self.path = Path(ctx.settings.download_dir) / "events.jsonl"

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Append the line (in a thread: handlers must not block the event loop)."""
        line = {
            "event": event.signal.value,
            "job": job["id"],
            "status": job["status"],
            "progress": job["progress"],
            "run": event.run_id,
            "attempt": event.attempt,
        }
        await asyncio.to_thread(self._append, json.dumps(line))
        return f"logged {event.signal.value} to {self.path.name}"

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
