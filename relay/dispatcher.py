"""Runs handler runs from the outbox: durable, retried with backoff, ``dead`` after the limit.

The outbox rows are written in the same transaction as the transition; signals only wake this loop.
At start, runs left ``running`` by a crash become ``pending`` again, so no run is lost.

Retry policy, per handler: ``max_attempts`` tries, then ``dead`` (replayable); between tries an
exponential backoff with jitter (:func:`~runway_relay.backoff.exponential`, base ``retry_base`` seconds
if the handler sets it, else 2 s, so the first retry comes within 2 s), or at least the wait a
:class:`~runway_relay.handlers.RetryAfter` asks for (HTTP 429). The next try time is stored in the
run's ``next_at`` column: an in-process retry loop (stamina, tenacity) would lose its schedule, and the
run, on a restart; this one survives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from .backoff import exponential
from .handlers import Handler, HandlerEvent, PermanentError, RetryAfter
from .logs import redact
from .states import Signal
from .storage import SQLiteStore

log = logging.getLogger("runway_relay.dispatcher")

RUN_TIMEOUT = 30 * 60.0


def retry_delay(handler: Handler, attempts: int, exc: Exception) -> float:
    """Seconds until the next try of a run that failed its ``attempts``-th try with ``exc``."""
    delay = exponential(attempts, base=float(getattr(handler, "retry_base", 2.0)))
    if isinstance(exc, RetryAfter):
        delay = max(delay, exc.seconds)
    return delay


class Dispatcher:
    """Claims due handler runs and executes them, a few at a time."""

    def __init__(self, store: SQLiteStore, handlers: dict[str, Handler], concurrency: int = 8) -> None:
        self.store = store
        self.handlers = handlers
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake(self, *_: Any, **__: Any) -> None:
        """Look for due runs now (connected to every job signal)."""
        self._wake.set()

    async def run(self) -> None:
        """The loop; cancel it to stop (runs in progress are left to finish or resume at start)."""
        reset = await self.store.reset_running_runs()
        if reset:
            log.info("resuming %d handler run(s) interrupted by a restart", reset)
        while True:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            if free > 0:
                for run in await self.store.claim_runs(time.time(), free):
                    task = asyncio.create_task(self._execute(run))
                    self._running.add(task)
                    task.add_done_callback(self._finished)
            await self._sleep()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    async def _sleep(self) -> None:
        due = await self.store.next_run_due()
        timeout = 5.0 if due is None else max(0.0, min(5.0, due - time.time()))
        if due is not None and timeout == 0.0 and len(self._running) < self.concurrency:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.01))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for runs in progress (used at shutdown)."""
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)

    async def _execute(self, run: dict[str, Any]) -> None:
        name, attempts = run["handler"], int(run["attempts"])
        handler = self.handlers.get(name)
        if handler is None:
            await self.store.finish_run(run["id"], "dead", error=f"handler {name!r} is not enabled")
            return
        event = HandlerEvent(Signal(run["signal"]), run["id"], attempts, run["transition_id"])
        try:
            job = await self.store.get_job(run["job_id"])
            output = await asyncio.wait_for(handler.run(job, event), RUN_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(run, handler, exc)
            return
        await self.store.finish_run(run["id"], "done", output=(output or "")[:4000])
        log.info("handler done handler=%s job=%s run=%s", name, run["job_id"], run["id"])

    async def _failed(self, run: dict[str, Any], handler: Handler, exc: Exception) -> None:
        attempts = int(run["attempts"])
        error = redact(f"{type(exc).__name__}: {exc}")[:2000]  # redact, then cut: no half secrets
        if isinstance(exc, PermanentError) or attempts >= handler.max_attempts:
            await self.store.finish_run(run["id"], "dead", error=error)
            log.warning(
                "handler dead handler=%s job=%s run=%s attempts=%d error=%s",
                handler.name,
                run["job_id"],
                run["id"],
                attempts,
                error,
            )
            return
        delay = retry_delay(handler, attempts, exc)
        await self.store.finish_run(run["id"], "pending", error=error, next_at=time.time() + delay)
        log.info(
            "handler retry handler=%s job=%s run=%s attempt=%d in=%.1fs error=%s",
            handler.name,
            run["job_id"],
            run["id"],
            attempts,
            delay,
            error,
        )
