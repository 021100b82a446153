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

Two outboxes feed it, run the same way: job runs (``handler_runs``, one per handler and job
transition; the handler gets the job JSON) and account notice runs (``notice_runs``, one per handler and
account notice such as ``account-paused``; the handler gets the notice JSON). Notices are rare, so
their table is read only when an account signal wakes the loop, when a run of theirs is due or ends,
and at least every :data:`NOTICE_CHECK` seconds (a run another relay left behind), not on every job's
transition.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .backoff import exponential
from .handlers import Handler, HandlerEvent, PermanentError, RetryAfter
from .logs import redact
from .metrics import Metrics
from .states import AccountSignal, RunStatus, Signal
from .storage import Store

log = logging.getLogger("runway_relay.dispatcher")

RUN_TIMEOUT = 30 * 60.0
LEASE = 30.0  # seconds a claimed run stays ours without renewal
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})
NOTICE_CHECK = 30.0


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


@dataclass(frozen=True)
class Outbox:
    """One table of runs, as the dispatcher sees it: how to claim, renew and finish its runs."""

    kind: str  # "job" or "notice": what a run's payload is
    handlers: list[str]  # enabled handlers that have runs here
    claim: Callable[..., Awaitable[list[dict[str, Any]]]]
    renew: Callable[[str, list[int], float], Awaitable[set[int]]]
    finish: Callable[..., Awaitable[bool]]
    next_due: Callable[[list[str] | None], Awaitable[float | None]]
    recover: Callable[[], Awaitable[int]]
    release: Callable[[str], Awaitable[int]]


Key = tuple[str, int]  # (outbox kind, run id)


def _about(kind: str, run: dict[str, Any]) -> str:
    """``job=…`` or ``account=…``: what a run is about, for log lines."""
    if kind == "job":
        return f"job={run['job_id']}"
    return f"account={run['notice'].get('email')} notice={run['notice_id']}"


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
        self._running: dict[Key, asyncio.Task[None]] = {}
        account_signals = set(AccountSignal)
        noticed = [name for name, h in handlers.items() if account_signals & set(h.events)]
        self.outboxes = [
            Outbox(
                "job",
                list(handlers),
                store.claim_runs,
                store.renew_runs,
                store.finish_run,
                store.next_run_due,
                store.recover_runs,
                store.release_runs,
            )
        ]
        if noticed:  # no handler wants account signals: never look at their table
            self.outboxes.append(
                Outbox(
                    "notice",
                    noticed,
                    store.claim_notice_runs,
                    store.renew_notice_runs,
                    store.finish_notice_run,
                    store.next_notice_due,
                    store.recover_notice_runs,
                    store.release_notice_runs,
                )
            )
        self._outbox = {outbox.kind: outbox for outbox in self.outboxes}
        self._notices_at = 0.0  # when to look at the notice outbox next
        self._heartbeat_task: asyncio.Task[None] | None = None

    def wake(self, *_: Any, **signalled: Any) -> None:
        """Look for due runs now (connected to every job signal)."""
        if "notice" in signalled:  # an account signal (or another relay's notice): look at its table
            self._notices_at = 0.0
        self._wake.set()

    async def run(self) -> None:
        """The loop; cancel it to stop (runs in progress are left to finish, or to another relay)."""
        recovered = sum([await outbox.recover() for outbox in self.outboxes])
        if recovered:
            log.info("resuming %d handler run(s) interrupted by a restart", recovered)
        heartbeat = asyncio.create_task(self._heartbeat(), name="relay-run-leases")
        self._heartbeat_task = heartbeat
        try:
            while True:
                self._wake.clear()
                for outbox in self.outboxes:
                    free = self.concurrency - len(self._running)
                    if free <= 0:
                        break
                    if outbox.kind == "notice" and time.time() < self._notices_at:
                        continue
                    claimed = await outbox.claim(self.owner, time.time(), free, self.lease, outbox.handlers)
                    if outbox.kind == "notice":
                        due = await outbox.next_due(outbox.handlers)
                        self._notices_at = min(
                            time.time() + NOTICE_CHECK, due if due is not None else math.inf
                        )
                    for run in claimed:
                        task = asyncio.create_task(self._execute(run, outbox.kind))
                        self._running[(outbox.kind, int(run["id"]))] = task
                        task.add_done_callback(self._finished)
                await self._sleep()
        finally:
            heartbeat.cancel()

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # its end could not be recorded
            log.error(
                "a handler run ended but could not be recorded (%s); it runs again once its lease ends",
                redact(str(task.exception())),
            )
        for key, running in list(self._running.items()):
            if running is task:
                del self._running[key]
                if key[0] == "notice":
                    self._notices_at = 0.0  # it may have left a retry behind
        self._wake.set()

    async def _sleep(self) -> None:
        jobs = self._outbox["job"]
        due = await jobs.next_due(jobs.handlers)
        if "notice" in self._outbox:
            due = min(self._notices_at, due if due is not None else math.inf)
            due = None if due == math.inf else due
        timeout = 2.0 if due is None else max(0.0, min(2.0, due - time.time()))
        if due is not None and timeout == 0.0 and len(self._running) < self.concurrency:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.01))

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs in progress; a run whose lease was lost is stopped."""
        while True:
            await asyncio.sleep(self.lease / 4)
            for outbox in self.outboxes:
                ids = [run_id for kind, run_id in self._running if kind == outbox.kind]
                if not ids:
                    continue
                try:
                    held = await outbox.renew(self.owner, ids, self.lease)
                except Exception as exc:  # the database is away: keep trying, the lease has time left
                    log.warning("could not renew handler run leases: %s", exc)
                    continue
                for run_id in set(ids) - held:
                    task = self._running.get((outbox.kind, run_id))
                    if task is not None:
                        log.warning(
                            "handler run=%s: its lease was taken over by another relay; stopping it", run_id
                        )
                        task.cancel()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for runs in progress (used at shutdown)."""
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=timeout)

    @property
    def alive(self) -> bool:
        """Whether the run-lease heartbeat is going (it runs as long as the loop does)."""
        return self._heartbeat_task is not None and not self._heartbeat_task.done()

    async def shutdown(self, grace: float) -> int:
        """After the loop was cancelled: give the runs in progress ``grace`` seconds to end (their
        leases still renewed), then stop the rest and hand them back to the outbox — ``pending``,
        due now, the try not counted — so another relay or the next start runs them at once.
        Returns how many were handed back."""
        if not self._running:
            return 0
        heartbeat = asyncio.create_task(self._heartbeat(), name="relay-run-leases-drain")
        try:
            await self.drain(grace)
        finally:
            heartbeat.cancel()
        left = list(self._running.values())
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        handed = 0
        for outbox in self.outboxes:
            try:
                handed += await outbox.release(self.owner)
            except Exception as exc:  # the database is away: the leases run out instead
                log.warning("could not hand back the %s runs still running: %s", outbox.kind, exc)
        if handed:
            log.info("handed %d handler run(s) back to the outbox at shutdown", handed)
        return handed

    async def _execute(self, run: dict[str, Any], kind: str = "job") -> None:
        name, attempts = run["handler"], int(run["attempts"])
        handler = self.handlers.get(name)
        if handler is None:
            await self._finish(kind, run, RunStatus.DEAD, error=f"handler {name!r} is not enabled here")
            return
        started = time.perf_counter()
        try:
            if kind == "job":
                event = HandlerEvent(Signal(run["signal"]), run["id"], attempts, run["transition_id"])
                payload = await self.store.get_job(run["job_id"])
            else:  # an account notice: the handler gets the notice JSON
                event = HandlerEvent(AccountSignal(run["signal"]), run["id"], attempts, None)
                payload = run["notice"]
            output = await asyncio.wait_for(handler.run(payload, event), RUN_TIMEOUT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outcome = await self._failed(kind, run, handler, exc)
            self.metrics.handler_run(name, outcome, time.perf_counter() - started)
            return
        await self._finish(kind, run, RunStatus.DONE, output=redact(output or "")[:4000])
        self.metrics.handler_run(name, "done", time.perf_counter() - started)
        log.info("handler done handler=%s %s run=%s", name, _about(kind, run), run["id"])

    async def _finish(self, kind: str, run: dict[str, Any], status: RunStatus, **changes: Any) -> None:
        if not await self._outbox[kind].finish(run["id"], self.owner, status, **changes):
            log.warning(
                "handler run=%s %s ended here after another relay took it over; its result is dropped",
                run["id"],
                _about(kind, run),
            )

    async def _failed(self, kind: str, run: dict[str, Any], handler: Handler, exc: Exception) -> str:
        """Record a failed try: ``dead`` after the limit or a permanent error, else ``retry`` later."""
        attempts = int(run["attempts"])
        error = redact(f"{type(exc).__name__}: {exc}")[:2000]  # redact, then cut: no half secrets
        if out_of_descriptors(exc):
            await self._finish(
                kind, run, RunStatus.PENDING, error=error, next_at=time.time() + 5.0, refund=True
            )
            log.warning(
                "handler retry handler=%s %s run=%s: out of file descriptors, not counted",
                handler.name,
                _about(kind, run),
                run["id"],
            )
            return "retry"
        if isinstance(exc, PermanentError) or attempts >= handler.max_attempts:
            await self._finish(kind, run, RunStatus.DEAD, error=error)
            log.warning(
                "handler dead handler=%s %s run=%s attempts=%d error=%s",
                handler.name,
                _about(kind, run),
                run["id"],
                attempts,
                error,
            )
            return "dead"
        delay = retry_delay(handler, attempts, exc)
        await self._finish(kind, run, RunStatus.PENDING, error=error, next_at=time.time() + delay)
        log.info(
            "handler retry handler=%s %s run=%s attempt=%d in=%.1fs error=%s",
            handler.name,
            _about(kind, run),
            run["id"],
            attempts,
            delay,
            error,
        )
        return "retry"
