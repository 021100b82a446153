"""Runs handler runs from the outbox: durable, retried with backoff, ``dead`` after the limit.

The outbox rows are written in the same transaction as the transition; signals only wake this loop.
Every relay sharing the database runs one: each run is claimed by exactly one relay under a lease that
this loop renews while the run goes on. A relay that dies mid-run stops renewing, and once the lease
ends its runs are claimed again, by any relay (on SQLite, where one relay owns the file, runs a crash
left ``running`` are taken back at start).

Retry policy, per handler: ``max_attempts`` tries, then ``dead`` (replayable); between tries an
exponential backoff with jitter (:func:`~runway_relay.backoff.exponential`, base ``retry_base`` seconds
if the handler sets it, else 2 s, so the first retry comes within 2 s), or at least the wait a
:class:`~runway_relay.handlers.RetryAfter` asks for (HTTP 429). The next try time is stored in the
run's ``next_at`` column, so the schedule survives a restart. A try that failed because this process
ran out of file descriptors (a load spike, not the handler's fault) is retried soon and not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from typing import Any

from .backoff import exponential
from .handlers import Handler, HandlerEvent, PermanentError, RetryAfter
from .logs import redact
from .metrics import Metrics
from .states import RunStatus, Signal
from .storage import Store

log = logging.getLogger("runway_relay.dispatcher")

RUN_TIMEOUT = 30 * 60.0
LEASE = 30.0  # seconds a claimed run stays ours without renewal
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})


def retry_delay(handler: Handler, attempts: int, exc: Exception) -> float:
    """Seconds until the next try of a run that failed its ``attempts``-th try with ``exc``."""
    delay = exponential(attempts, base=float(getattr(handler, "retry_base", 2.0)))
    if isinstance(exc, RetryAfter):
        delay = max(delay, exc.seconds)
    return delay


def out_of_descriptors(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is "too many open files"."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in EXHAUSTED:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Dispatcher:
    """Claims due handler runs and executes them, a few at a time, under renewed leases."""

    def __init__(
        self,
        store: Store,
        handlers: dict[str, Handler],
        owner: str,
        concurrency: int = 8,
        lease: float = LEASE,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.metrics = metrics or Metrics()
        self.owner = owner  # this relay's id: the lease holder of the runs it claims
        self.concurrency = concurrency
        self.lease = lease
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task[None]] = {}

    def wake(self, *_: Any, **__: Any) -> None:
        """Look for due runs now (connected to every job signal)."""
        self._wake.set()

    async def run(self) -> None:
        """The loop; cancel it to stop (runs in progress are left to finish, or to another relay)."""
        recovered = await self.store.recover_runs()
        if recovered:
            log.info("resuming %d handler run(s) interrupted by a restart", recovered)
        heartbeat = asyncio.create_task(self._heartbeat(), name="relay-run-leases")
        try:
            while True:
                self._wake.clear()
                free = self.concurrency - len(self._running)
                if free > 0:
                    claimed = await self.store.claim_runs(
                        self.owner, time.time(), free, self.lease, list(self.handlers)
                    )
                    for run in claimed:
                        task = asyncio.create_task(self._execute(run))
                        self._running[int(run["id"])] = task
                        task.add_done_callback(self._finished)
                await self._sleep()
        finally:
            heartbeat.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        for run_id, running in list(self._running.items()):
            if running is task:
                del self._running[run_id]
        self._wake.set()

    async def _sleep(self) -> None:
        due = await self.store.next_run_due(list(self.handlers))
        timeout = 2.0 if due is None else max(0.0, min(2.0, due - time.time()))
        if due is not None and timeout == 0.0 and len(self._running) < self.concurrency:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.01))

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs in progress; a run whose lease was lost is stopped."""
        while True:
            await asyncio.sleep(self.lease / 4)
            ids = list(self._running)
            if not ids:
                continue
            try:
                held = await self.store.renew_runs(self.owner, ids, self.lease)
            except Exception as exc:  # the database is away: keep trying, the lease has time left
                log.warning("could not renew handler run leases: %s", exc)
                continue
            for run_id in set(ids) - held:
                task = self._running.get(run_id)
                if task is not None:
                    log.warning(
                        "handler run=%s: its lease was taken over by another relay; stopping it", run_id
                    )
                    task.cancel()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for runs in progress (used at shutdown)."""
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=timeout)

    async def _execute(self, run: dict[str, Any]) -> None:
        name, attempts = run["handler"], int(run["attempts"])
        handler = self.handlers.get(name)
        if handler is None:
            await self._finish(run, RunStatus.DEAD, error=f"handler {name!r} is not enabled here")
            return
        event = HandlerEvent(Signal(run["signal"]), run["id"], attempts, run["transition_id"])
        started = time.perf_counter()
        try:
            job = await self.store.get_job(run["job_id"])
            output = await asyncio.wait_for(handler.run(job, event), RUN_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = await self._failed(run, handler, exc)
            self.metrics.handler_run(name, outcome, time.perf_counter() - started)
            return
        await self._finish(run, RunStatus.DONE, output=redact((output or "")[:4000]))
        self.metrics.handler_run(name, "done", time.perf_counter() - started)
        log.info("handler done handler=%s job=%s run=%s", name, run["job_id"], run["id"])

    async def _finish(self, run: dict[str, Any], status: RunStatus, **changes: Any) -> None:
        if not await self.store.finish_run(run["id"], self.owner, status, **changes):
            log.warning(
                "handler run=%s job=%s ended here after another relay took it over; its result is dropped",
                run["id"],
                run["job_id"],
            )

    async def _failed(self, run: dict[str, Any], handler: Handler, exc: Exception) -> str:
        """Record a failed try: ``dead`` after the limit or a permanent error, else ``retry`` later."""
        attempts = int(run["attempts"])
        error = redact(f"{type(exc).__name__}: {exc}")[:2000]  # redact, then cut: no half secrets
        if out_of_descriptors(exc):
            await self._finish(run, RunStatus.PENDING, error=error, next_at=time.time() + 5.0, refund=True)
            log.warning(
                "handler retry handler=%s job=%s run=%s: out of file descriptors, not counted",
                handler.name,
                run["job_id"],
                run["id"],
            )
            return "retry"
        if isinstance(exc, PermanentError) or attempts >= handler.max_attempts:
            await self._finish(run, RunStatus.DEAD, error=error)
            log.warning(
                "handler dead handler=%s job=%s run=%s attempts=%d error=%s",
                handler.name,
                run["job_id"],
                run["id"],
                attempts,
                error,
            )
            return "dead"
        delay = retry_delay(handler, attempts, exc)
        await self._finish(run, RunStatus.PENDING, error=error, next_at=time.time() + delay)
        log.info(
            "handler retry handler=%s job=%s run=%s attempt=%d in=%.1fs error=%s",
            handler.name,
            run["job_id"],
            run["id"],
            attempts,
            delay,
            error,
        )
        return "retry"
