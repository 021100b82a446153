"""The fallback when callbacks stop: ``GET tasks/{taskId}`` for jobs silent too long.

A poll answer goes through exactly the same state machine as a callback. Failures back off
exponentially per job. With no public URL the upstream can reach, polling alone drives jobs. Only the
relay that schedules polls, so relays sharing a database do not ask twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from .backoff import exponential
from .errors import UpstreamError
from .logs import redact
from .storage import IngestResult, Store
from .taskparse import TaskParseError, parse_task
from .upstream import Upstream

log = logging.getLogger("runway_relay.poller")


LOST_AFTER = 3  # polls in a row answered 404 before a task counts as lost upstream


class Poller:
    """Polls silent active jobs every few seconds."""

    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        poll_after: float,
        on_result: Callable[[IngestResult], Awaitable[None]],
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.poll_after = poll_after
        self.on_result = on_result

    async def run(self) -> None:
        """Poll forever; the first pass reconciles every active job left from before a restart."""
        first = True
        while True:
            try:
                await self.round(everything=first)
                first = False
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad round must not stop polling for good
                log.exception("a polling round failed; trying again")
            await asyncio.sleep(min(5.0, max(0.05, self.poll_after / 4)))

    async def round(self, everything: bool = False) -> int:
        """Poll the jobs due (``everything``: every active job); returns how many were polled."""
        now = time.time()
        jobs = await (
            self.store.active_jobs() if everything else self.store.jobs_to_poll(now, self.poll_after)
        )
        polled = 0
        for job in jobs:
            if job["task_id"]:
                await self.poll(job["id"], int(job["attempt"]), job["task_id"], int(job["poll_tries"] or 0))
                polled += 1
        return polled

    async def poll(self, job_id: str, attempt: int, task_id: str, tries: int = 0) -> None:
        """Ask for one task and apply the answer."""
        try:
            body = await self.upstream.get_task(task_id)
            update = parse_task(body)
        except (UpstreamError, TaskParseError) as exc:
            if isinstance(exc, UpstreamError) and exc.status == 404 and tries + 1 >= LOST_AFTER:
                await self._lost(job_id, attempt, task_id, str(exc))
                return
            wait = exponential(tries + 1, base=self.poll_after, cap=3600.0)
            await self.store.record_poll_error(job_id, time.time() + wait, str(exc))
            log.warning("poll failed job=%s task=%s: %s; next in %.0fs", job_id, task_id, exc, wait)
            return
        result = await self.store.ingest_poll(job_id, attempt, update, redact(json.dumps(body))[:65536])
        if result.outcome == "applied":
            log.info("poll applied job=%s status=%s", job_id, update.status)
        await self.on_result(result)

    async def _lost(self, job_id: str, attempt: int, task_id: str, answer: str) -> None:
        """useapi.net no longer knows the task (its state was lost, or it is long gone): the job
        fails as a transient upstream failure, which frees its slot and lets ``resubmit`` send it
        again, instead of polling a task that will never answer."""
        error = f"useapi.net no longer knows the task ({LOST_AFTER} polls answered: {answer})"
        body = {"taskId": task_id, "status": "FAILED", "error": error}
        result = await self.store.ingest_poll(job_id, attempt, parse_task(body), json.dumps(body))
        log.warning("task lost upstream job=%s task=%s: the job failed", job_id, task_id)
        await self.on_result(result)
