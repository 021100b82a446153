"""What the scheduler does with each answer to a create: the half of :mod:`.scheduler` after the call.

Accepted: the job is ``submitted``. 429: it keeps its place and the account rests (and, for Runway's
own 429, its learned capacity drops). 402 or 401 from one account: the account's trouble, not the
job's, so the job tries the other accounts. Any other refusal: ``rejected``, with the upstream's words.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .accounts import AccountWatch
from .capacity import Candidate, Capacity, Email
from .errors import UpstreamError
from .states import Status
from .storage import Moved, Store, SubmitTicket
from .taskparse import account_of
from .upstream import CreateKind, CreateResult, Upstream, stored_body

log = logging.getLogger("runway_relay.scheduler")

Announce = Callable[[Moved], Awaitable[None]]
Adopted = Callable[[str, int, str], Awaitable[None]]  # job id, attempt, task id: look at it now


class CreateOutcomes:
    """The scheduler's handling of create answers (a mixin of :class:`~.scheduler.Scheduler`)."""

    store: Store
    upstream: Upstream
    capacity: Capacity
    accounts: AccountWatch | None
    announce: Announce
    adopted: Adopted | None
    degraded: str | None
    rest: Callable[[], float]
    _placing: dict[str, Candidate]

    def job_changed(self, job: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _changed(self, account: Email) -> None:
        raise NotImplementedError

    async def _candidate(self, job: Mapping[str, Any]) -> Candidate:
        raise NotImplementedError

    async def _handle(self, ticket: SubmitTicket, result: CreateResult) -> None:
        if result.kind is CreateKind.ACCEPTED and result.task:
            self.degraded = None
            await self._accepted(ticket, str(result.task["taskId"]), stored_body(result.body), "")
            if self.accounts is not None:
                await self.accounts.accepted(ticket.account)
        elif result.kind in (CreateKind.BUSY, CreateKind.THROTTLED):
            await self._busy(ticket, result)
        elif (result.no_credits or result.session_failed) and ticket.account and self.accounts is not None:
            await self._account_refused(ticket, result, ticket.account, self.accounts)
        else:
            await self._rejected(ticket, result)

    async def _account_refused(
        self, ticket: SubmitTicket, result: CreateResult, account: str, accounts: AccountWatch
    ) -> None:
        """402 or 401 from one account: its trouble, not the job's, so the job tries the other accounts
        (it avoids one without credits for it; a failed session rests the account, and repeated takes
        it out of rotation). Rejected only when no account it may use is left."""
        job = self._placing.get(ticket.job_id) or await self._candidate(
            {"id": ticket.job_id, "params": json.dumps(ticket.params)}
        )
        if result.session_failed:
            self.capacity.on_busy(account, time.time(), self.rest())
            self._changed(account)
        why, avoid = await accounts.refused(
            account, result, self.capacity.allowed(job), job.avoid, job.spends
        )
        if why is not None:
            await self._rejected(ticket, result, f"{result.message} (account {account}). {why}")
            return
        trouble = "has not enough credits for it" if result.no_credits else "failed its session"
        reason = f"{result.status}: {result.message} — account {account} {trouble}; the job tries another"
        await self.store.record_deferred(
            ticket, 0.0, reason, stored_body(result.body), avoid=account if account in avoid else None
        )
        log.warning("create refused job=%s replyRef=%s: %s", ticket.job_id, ticket.reply_ref, reason)

    async def _accepted(self, ticket: SubmitTicket, task_id: str, body: str | None, how: str) -> None:
        account = account_of(task_id) or ticket.account
        moved = await self.store.record_submitted(ticket, task_id, account, body, how)
        log.info("submitted job=%s replyRef=%s account=%s %s", ticket.job_id, ticket.reply_ref, account, how)
        if moved.row["status"] == Status.CANCELLED.value:
            await self._cancel_upstream(ticket.job_id, task_id)
            self.job_changed(moved.row)
        elif moved.transition_id is not None:
            await self.announce(moved)
        if how and self.adopted is not None and moved.transition_id is not None:
            await self.adopted(ticket.job_id, ticket.attempt, task_id)  # it may have ended already

    async def _cancel_upstream(self, job_id: str, task_id: str) -> None:
        """The job was cancelled while its create was in flight: free the slot the task took."""
        try:
            await self.upstream.cancel(task_id)
            detail = "DELETE scheduler ok (cancelled while its create was in flight)"
            await self.store.record_upstream_note(job_id, "cancel", "applied", detail)
        except UpstreamError as exc:
            await self.store.record_upstream_note(job_id, "cancel", "error", exc.message)

    async def _busy(self, ticket: SubmitTicket, result: CreateResult) -> None:
        """429: the job keeps its place in the queue; the account rests 10–30 s or until a job ends."""
        now, wait = time.time(), self.rest()
        if result.kind is CreateKind.BUSY:
            account = result.account or ticket.account
            self.capacity.on_busy(account, now, wait)
        else:
            account = ticket.account
            self.capacity.on_throttled(account, now, wait)
        self._changed(self.capacity.bucket(account))
        learned = self.capacity.account(self.capacity.bucket(account)).capacity
        reason = (
            f"429 ({result.kind}): {result.message} — account {account} rests {wait:.0f} s or until one "
            f"of its jobs ends (capacity {learned})"
        )
        await self.store.record_deferred(ticket, 0.0, reason, stored_body(result.body))
        log.info(
            "429 %s job=%s replyRef=%s account=%s rest=%.0fs capacity=%d",
            result.kind,
            ticket.job_id,
            ticket.reply_ref,
            account,
            wait,
            learned,
        )

    async def _rejected(self, ticket: SubmitTicket, result: CreateResult, message: str | None = None) -> None:
        if result.status == 401 and message is None:
            self.degraded = "useapi.net answered 401 Unauthorized: check USEAPI_TOKEN"
            log.error(
                "useapi.net refused the API token (401 Unauthorized): creates are rejected until "
                "USEAPI_TOKEN is fixed and the relay restarted"
            )
        message = message or result.message
        moved = await self.store.record_rejected(ticket, message, stored_body(result.body))
        log.warning(
            "rejected job=%s replyRef=%s status=%s: %s",
            ticket.job_id,
            ticket.reply_ref,
            result.status,
            message,
        )
        if moved is not None:
            await self.announce(moved)
