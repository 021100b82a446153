"""The handler outbox: claim, renew, finish, retry, replay.

Outbox rows are written in the transaction of the transition they belong to. Any relay sharing the
database may run them: :meth:`OutboxMixin.claim_runs` takes due rows nobody holds (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL) and gives the claimer a lease that it renews while the run goes on
(:meth:`~OutboxMixin.renew_runs`). A relay that dies mid-run stops renewing; once the lease ends its
runs are claimed again by whichever relay looks first — never merely because a relay started up. A
run waits for the runs of the same transition named in its ``wait_for`` (``exec`` after ``download``).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import Conflict, NotFound
from ..states import RunStatus
from . import runs
from .connector import Tx
from .core import StoreCore, marks, reads, writes
from .records import iso_now

# A run may start once none of the handlers it waits for has a pending or running run for its transition.
_UNBLOCKED = (
    "(r.wait_for is null or not exists (select 1 from handler_runs d where d.transition_id = r.transition_id "
    "and d.id <> r.id and d.status in ('pending', 'running') "
    "and (',' || r.wait_for || ',') like ('%,' || d.handler || ',%')))"
)


# What a finished try is called in its run's history, by the run's new status.
_ATTEMPT_OUTCOME = {
    RunStatus.DONE: "done",
    RunStatus.PENDING: "failed",  # a retry follows
    RunStatus.DEAD: "dead",
    RunStatus.RUNNING: "running",
}


class OutboxMixin(StoreCore):
    """The handler outbox: claim, renew, finish, retry, replay."""

    @writes
    async def recover_runs(self, tx: Tx) -> int:
        """At start: runs a crash left ``running`` become ``pending`` — only where this process owns
        the database (SQLite), so that no other relay can be running them. Shared databases rely on
        leases running out instead. Returns how many were recovered."""
        if not self.connector.exclusive:
            return 0
        return await runs.recover(tx, "handler_runs")

    @writes
    async def claim_runs(
        self,
        tx: Tx,
        owner: str,
        now: float,
        limit: int,
        lease: float,
        handlers: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` runs that are due (or whose lease ran out) for ``owner``, for ``lease`` s.

        ``handlers``: only runs of these (the ones this relay has enabled; a relay never claims a run
        it cannot execute, which another relay configured differently may). Each claim counts as an
        attempt, a taken-over one included: a run that kills its relay every time still ends ``dead``.
        """
        return await runs.claim(tx, "handler_runs", owner, now, limit, lease, handlers, f" and {_UNBLOCKED}")

    @writes
    async def renew_runs(self, tx: Tx, owner: str, run_ids: list[int], lease: float) -> set[int]:
        """Extend ``owner``'s leases on ``run_ids``; returns the ids it still holds."""
        return await runs.renew(tx, "handler_runs", owner, run_ids, lease)

    @writes
    async def release_runs(self, tx: Tx, owner: str) -> int:
        """At shutdown: the runs ``owner`` still runs become ``pending`` again, due now, their lease
        cleared and the interrupted try not counted, so another relay (or the next start) runs them
        at once. Only ``owner``'s rows. Returns how many were handed back."""
        return await runs.release(tx, "handler_runs", owner)

    @reads
    async def next_run_due(self, tx: Tx, handlers: list[str] | None = None) -> float | None:
        """When the earliest pending run that may start (of ``handlers``, when given) is due, or ``None``."""
        return await runs.next_due(tx, "handler_runs", handlers, f" and {_UNBLOCKED}")

    @writes
    async def finish_run(
        self,
        tx: Tx,
        run_id: int,
        owner: str,
        status: RunStatus,
        *,
        error: str | None = None,
        output: str | None = None,
        next_at: float | None = None,
        refund: bool = False,
    ) -> bool:
        """Record a run's end: ``done``, ``pending`` (retry at ``next_at``) or ``dead``.

        ``refund``: the try does not count towards the handler's attempts. False when ``owner`` no
        longer holds the run (its lease ran out and another relay took it): nothing is written then.
        """
        changes = runs.ending(status, error, output, next_at)
        # The try that ended, kept in its run's history (replays do not erase it); only while ours.
        # The run's updated_at still holds when it was claimed, i.e. when this try started.
        await tx.run(
            "insert into handler_attempts (run_id, job_id, handler, round, attempt, outcome, output, "
            "error, started_at, finished_at) select id, job_id, handler, coalesce(replays, 0), attempts, "
            "?, ?, ?, updated_at, ? from handler_runs "
            "where id = ? and lease_owner = ? and status = 'running'",
            [_ATTEMPT_OUTCOME[status], output, error, changes["updated_at"], run_id, owner],
        )
        return await runs.end(tx, "handler_runs", run_id, owner, changes, refund=refund)

    @writes
    async def replay(self, tx: Tx, job_id: str, handler: str | None = None) -> list[dict[str, Any]]:
        """Queue the handler runs of the job's last transition again (one handler, or all).

        A run that is running right now is left to finish (replaying it would run it twice at once);
        if that leaves nothing to replay, the answer is :class:`Conflict`.
        """
        job = await self._job_row(tx, job_id, lock=True)
        # Locked: a relay claiming one of these runs meanwhile either committed first (it reads as
        # running here) or skips it (its claim skips locked rows), never both.
        rows = await tx.rows(
            "select * from handler_runs where transition_id = (select max(transition_id) "
            f"from handler_runs where job_id = ?){tx.for_update}",
            [job_id],
        )
        if handler is not None:
            rows = [r for r in rows if r["handler"] == handler]
        if not rows:
            what = f"handler {handler!r}" if handler else "handlers"
            raise NotFound(f"job {job_id} has no {what} runs to replay")
        idle = [r for r in rows if r["status"] != RunStatus.RUNNING.value]
        if not idle:
            names = ", ".join(sorted(r["handler"] for r in rows))
            raise Conflict(f"{names} of job {job_id} is running now; replay it once it has finished")
        ids = [r["id"] for r in idle]
        await tx.run(
            "update handler_runs set status = 'pending', attempts = 0, next_at = ?, last_error = null, "
            "lease_owner = null, lease_until = null, updated_at = ?, replays = coalesce(replays, 0) + 1 "
            f"where id in ({marks(ids)})",
            [time.time(), iso_now(), *ids],
        )
        detail = ",".join(sorted(r["handler"] for r in idle))
        await self._event(tx, job, "api", "replay", "applied", detail=detail)
        return await tx.rows(f"select * from handler_runs where id in ({marks(ids)}) order by id", ids)
