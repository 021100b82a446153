"""The scheduler's side: marking creates in flight and recording their answers.

A job is *submitting* (``jobs.submitting_since`` set) from just before its ``videos/create`` call until
the answer is recorded; its replyRef and callback token hash are on its attempt row by then. A job left
submitting by a crash — of this relay or of another one sharing the database — is what
:meth:`SubmitMixin.submitting_jobs` returns to whichever relay schedules next.

Only the relay holding the scheduler's lease may mark a job submitting (:meth:`begin_submit` checks it
in the same transaction), so two relays never create the same job, nor overfill an account, even
while leadership changes hands.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..states import TERMINAL, Status, TransitionError, on_rejected, on_submitted
from .connector import Tx
from .core import StoreCore, marks, reads, token_hash, writes
from .records import ACTIVE_STATUSES, Moved, SubmitTicket, iso_now, new_token

SCHEDULER_LEASE = "scheduler"


class SubmitMixin(StoreCore):
    """The scheduler's side: marking creates in flight and recording their answers."""

    # -- submitting -----------------------------------------------------------------------------

    @writes
    async def begin_submit(
        self, tx: Tx, job_id: str, account: str | None, holder: str
    ) -> SubmitTicket | None:
        """Mark a queued job as being created upstream, before the call.

        ``None`` when the job is not queued any more, or when ``holder`` no longer holds the
        scheduler's lease (another relay schedules now).
        """
        if not await self._holds_lease(tx, holder):
            return None
        job = await self._job_row(tx, job_id, lock=True)
        if job["status"] != Status.QUEUED.value or job["submitting_since"]:
            return None
        token = new_token()
        await self._update_job(
            tx,
            job_id,
            {
                "submitting_since": time.time(),
                "account": account,
                "submit_tries": (job["submit_tries"] or 0) + 1,
            },
        )
        attempt = await tx.one(
            "select reply_ref from attempts where job_id = ? and attempt = ?", [job_id, job["attempt"]]
        )
        await tx.run(
            "update attempts set token_hash = ?, account = ? where job_id = ? and attempt = ?",
            [token_hash(token), account, job_id, job["attempt"]],
        )
        assert attempt is not None
        params = json.loads(job["params"])
        return SubmitTicket(
            job_id,
            int(job["attempt"]),
            attempt["reply_ref"],
            token,
            params,
            account,
            token_hash(token),
            holder,
        )

    async def _owned(self, tx: Tx, ticket: SubmitTicket) -> bool:
        """Whether the ticket's create is still the job's current one: no relay that took the job over
        (after this one lost the scheduler's lease) has written a new token since."""
        row = await tx.one(
            "select token_hash from attempts where job_id = ? and attempt = ?",
            [ticket.job_id, ticket.attempt],
        )
        return row is not None and row["token_hash"] == ticket.owner_hash

    @writes
    async def record_submitted(
        self, tx: Tx, ticket: SubmitTicket, task_id: str, account: str | None, body: str | None, how: str = ""
    ) -> Moved:
        """The create was accepted: keep the task id and move ``queued`` → ``submitted``.

        If the job was cancelled meanwhile, the task id is still kept (so its slot can be freed), the
        create is recorded ``stale``, and the answer carries no transition.
        """
        detail = f"{task_id} {how}".strip()
        job = await self._job_row(tx, ticket.job_id, lock=True)
        if not await self._owned(tx, ticket):  # another relay created it again meanwhile: keep ours out
            detail += " (this create was superseded by another relay's; its task is not the job's)"
            await self._event(tx, job, "upstream", "create", "orphan", detail=detail, body=body)
            return Moved(job, job["status"])
        await tx.run(
            "update attempts set task_id = ?, account = ?, submitted_at = ? where job_id = ? and attempt = ?",
            [task_id, account, iso_now(), ticket.job_id, ticket.attempt],
        )
        if job["attempt"] != ticket.attempt or Status(job["status"]) in TERMINAL:
            changes = {"task_id": task_id, "account": account, "submitting_since": None}
            await self._update_job(tx, ticket.job_id, changes)
            await self._event(tx, job, "upstream", "create", "stale", detail=detail, body=body)
            return Moved({**job, **changes}, job["status"])
        extra = {
            "task_id": task_id,
            "account": account,
            "submitting_since": None,
            "submitted_at": time.time(),
            "last_update_at": time.time(),
            "next_poll_at": None,
            "poll_tries": 0,
        }
        decision = on_submitted(self._state(job))
        status = decision.state.status.value
        await self._event(
            tx, job, "upstream", "create", decision.outcome.value, status=status, detail=detail, body=body
        )
        return await self._apply(tx, job, decision, extra)

    @writes
    async def record_deferred(
        self,
        tx: Tx,
        ticket: SubmitTicket,
        retry_at: float,
        reason: str,
        body: str | None = None,
        *,
        avoid: str | None = None,
    ) -> None:
        """The create was not accepted now (429, or not found upstream): the job stays queued.

        ``avoid``: an account that refused the job for want of credits; the job tries the others.
        """
        job = await self._job_row(tx, ticket.job_id, lock=True)
        if not await self._owned(tx, ticket):
            await self._event(tx, job, "upstream", "create", "superseded", detail=reason, body=body)
            return
        changes: dict[str, Any] = {"submitting_since": None, "next_submit_at": retry_at}
        if avoid:
            avoided = set(json.loads(job.get("avoid_accounts") or "[]")) | {avoid}
            changes["avoid_accounts"] = json.dumps(sorted(avoided))
        await self._update_job(tx, ticket.job_id, changes)
        await self._event(tx, job, "upstream", "create", "deferred", detail=reason, body=body)

    @writes
    async def record_create_retry(
        self, tx: Tx, ticket: SubmitTicket, reason: str, body: str | None = None
    ) -> None:
        """A create failed in a way that may hide an acceptance (5xx, timeout): it stays in flight.

        ``submitting_since`` moves to now, so a restart treats the next try as freshly sent.
        """
        job = await self._job_row(tx, ticket.job_id, lock=True)
        if job["attempt"] == ticket.attempt and job["submitting_since"] and await self._owned(tx, ticket):
            await self._update_job(tx, ticket.job_id, {"submitting_since": time.time()})
        await self._event(tx, job, "upstream", "create", "transient", detail=reason, body=body)

    @writes
    async def still_submitting(self, tx: Tx, ticket: SubmitTicket) -> bool:
        """True while the ticket's create is still wanted and still this relay's to send: the job is
        not cancelled, no relay took it over, and the ticket's holder still holds the scheduler's lease.

        Then ``submitting_since`` moves to now: a create about to be sent again is fresh, so a relay
        that takes the lease over right after waits its grace before it would queue the job again.
        """
        job = await self._job_row(tx, ticket.job_id, lock=True)
        wanted = (
            job["attempt"] == ticket.attempt
            and bool(job["submitting_since"])
            and job["status"] == Status.QUEUED.value
            and await self._owned(tx, ticket)
        )
        if wanted and ticket.holder:
            wanted = await self._holds_lease(tx, ticket.holder)
        if wanted:
            await self._update_job(tx, ticket.job_id, {"submitting_since": time.time()})
        return wanted

    async def _holds_lease(self, tx: Tx, holder: str) -> bool:
        lease = await tx.one(
            f"select holder from leases where name = ? and holder = ? and expires_at > {tx.now}",
            [SCHEDULER_LEASE, holder],
        )
        return lease is not None

    @writes
    async def record_rejected(
        self, tx: Tx, ticket: SubmitTicket, message: str, body: str | None
    ) -> Moved | None:
        """The upstream refused the create (400/401/402): ``rejected``, message kept."""
        job = await self._job_row(tx, ticket.job_id, lock=True)
        if not await self._owned(tx, ticket):
            await self._event(tx, job, "upstream", "create", "superseded", detail=message, body=body)
            return None
        await self._event(tx, job, "upstream", "create", "rejected", detail=message, body=body)
        try:
            decision = on_rejected(self._state(job))
        except TransitionError:
            await self._update_job(tx, ticket.job_id, {"submitting_since": None})
            return None
        extra = {"error": message, "error_kind": "rejected", "submitting_since": None}
        return await self._apply(tx, job, decision, extra)

    @writes
    async def record_lookup(self, tx: Tx, job_id: str, outcome: str, detail: str) -> None:
        """Keep an upstream lookup made for this job (after a crash or a failed create)."""
        await self._event(
            tx, await self._job_row(tx, job_id), "upstream", "scheduler", outcome, detail=detail
        )

    # -- what the scheduler looks at -------------------------------------------------------------

    @reads
    async def queue_view(
        self, tx: Tx, now: float, limit: int = 200
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """In one read: queued jobs that may be created now (oldest first: id, params, avoid_accounts),
        and the jobs holding an upstream slot, running or with their create in flight (id, account,
        explore)."""
        queued = await tx.rows(
            "select id, params, avoid_accounts from jobs where status = 'queued' "
            "and submitting_since is null and coalesce(next_submit_at, 0) <= ? order by id limit ?",
            [now, limit],
        )
        if not queued:
            return [], []
        holding = await tx.rows(
            f"select id, account, params from jobs where status in ({marks(ACTIVE_STATUSES)}) "
            "union select id, account, params from jobs where submitting_since is not null",
            list(ACTIVE_STATUSES),
        )
        slots = [
            {
                "id": row["id"],
                "account": row["account"],
                "explore": json.loads(row["params"]).get("exploreMode") is True,
            }
            for row in holding
        ]
        return queued, slots

    @reads
    async def known_task_ids(self, tx: Tx, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` some job's attempt already owns."""
        if not task_ids:
            return set()
        rows = await tx.rows(f"select task_id from attempts where task_id in ({marks(task_ids)})", task_ids)
        return {str(row["task_id"]) for row in rows}

    @reads
    async def submitting_jobs(self, tx: Tx) -> list[dict[str, Any]]:
        """Jobs whose create call was in flight when its relay stopped (with their replyRef)."""
        return await tx.rows(
            "select j.id, j.attempt, j.status, j.account, j.task_id, j.submitting_since, j.params, "
            "j.created_at, a.reply_ref, a.token_hash from jobs j "
            "join attempts a on a.job_id = j.id and a.attempt = j.attempt "
            "where j.submitting_since is not null order by j.id"
        )
