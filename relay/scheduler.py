"""Keeps every account's queue full and no fuller: the only place that sends ``videos/create``.

Order of safety: a job is marked *submitting* (with its replyRef and a fresh callback token) before
the create call, so after a crash :meth:`Scheduler.reconcile` looks the replyRef up in
``GET scheduler/`` and adopts the task instead of creating it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .backoff import busy_wait, exponential
from .capacity import Capacity
from .errors import UpstreamError
from .storage import SQLiteStore, SubmitTicket
from .taskparse import account_of
from .upstream import CreateKind, CreateResult, Upstream

log = logging.getLogger("runway_relay.scheduler")

AfterCommit = Callable[[str], Awaitable[None]]
_ASSET_FIELDS = ("imageAssetId1", "imageAssetId2", "videoAssetId")


def _short(body: Any) -> str:
    return json.dumps(body)[:4000] if not isinstance(body, str) else body[:4000]


class Scheduler:
    """Submits queued jobs as capacity allows; wakes on new jobs and on finished ones."""

    def __init__(
        self,
        store: SQLiteStore,
        upstream: Upstream,
        callback_root: str,
        after_commit: AfterCommit,
        configured: dict[str, int] | None = None,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.callback_root = callback_root.rstrip("/")
        self.after_commit = after_commit
        self.capacity = Capacity()
        self.configured = configured or {}
        self.degraded: str | None = None
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()

    def wake(self, *_: Any, **__: Any) -> None:
        """Look at the queue now."""
        self._wake.set()

    def slot_freed(self, account: str | None) -> None:
        """A job of ``account`` ended: its rest is over and the queue is looked at at once."""
        self.capacity.on_finished(account)
        self._wake.set()

    async def discover_accounts(self) -> None:
        """Accounts from configuration, else from ``GET accounts/`` (only email and maxJobs kept)."""
        accounts = dict(self.configured)
        if not accounts:
            try:
                accounts = await self.upstream.accounts()
            except UpstreamError as exc:
                log.warning("could not list accounts (%s); letting useapi.net choose", exc.message)
        if accounts:
            await self.store.save_accounts(accounts)
            self.capacity.configure(accounts)
            log.info("accounts: %s", ", ".join(f"{e} ({n})" for e, n in accounts.items()))

    async def reconcile(self) -> None:
        """Adopt or re-queue jobs whose create was in flight when the relay stopped."""
        stuck = await self.store.submitting_jobs()
        if not stuck:
            return
        try:
            running = {t.get("replyRef"): t for t in await self.upstream.scheduler()}
        except UpstreamError as exc:
            log.error("cannot reconcile %d in-flight create(s): %s; retrying later", len(stuck), exc.message)
            raise
        for job in stuck:
            ticket = SubmitTicket(job["id"], int(job["attempt"]), job["reply_ref"], "", {}, job["account"])
            task = running.get(job["reply_ref"])
            if task and task.get("taskId"):
                log.info(
                    "reconciled job=%s replyRef=%s: the create had been accepted", job["id"], job["reply_ref"]
                )
                await self.store.record_submitted(
                    ticket, task["taskId"], account_of(task["taskId"]), _short(task)
                )
                await self.after_commit(job["id"])
            else:
                log.info(
                    "reconciled job=%s replyRef=%s: not running upstream, queued again",
                    job["id"],
                    job["reply_ref"],
                )
                await self.store.record_deferred(ticket, 0.0, "not found upstream after restart")

    async def run(self) -> None:
        """The loop: reconcile, discover accounts, then fill free slots whenever woken."""
        while True:
            try:
                await self.reconcile()
                break
            except UpstreamError:
                await asyncio.sleep(5)
        await self.discover_accounts()
        while True:
            self._wake.clear()
            await self.fill()
            due = await self.store.next_submit_due()
            timeout = 30.0 if due is None else max(0.01, min(30.0, due - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _pinned(self, params: dict[str, Any]) -> list[str | None] | None:
        if params.get("email"):
            return [params["email"]]
        for field in _ASSET_FIELDS:
            asset = params.get(field)
            if asset:
                owner = account_of(asset) or await self.store.asset_account(asset)
                if owner:
                    return [owner]
        return None

    async def fill(self) -> None:
        """Start as many queued jobs as the accounts have free slots, oldest first."""
        now = time.time()
        running = await self.store.active_counts()
        explore_busy = set(await self.store.explore_accounts())
        for job in await self.store.queued_jobs(now):
            params = json.loads(job["params"])
            allowed = await self._pinned(params)
            if params.get("exploreMode") is True:
                candidates = allowed if allowed is not None else self.capacity.known()
                allowed = [a for a in candidates if a not in explore_busy]
            account = self.capacity.pick(running, now, allowed)
            if account is False:
                continue
            ticket = await self.store.begin_submit(job["id"], account)
            if ticket is None:
                continue
            running[account] = running.get(account, 0) + 1
            if params.get("exploreMode") is True:
                explore_busy.add(account)
            task = asyncio.create_task(self._submit(ticket))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _body(self, ticket: SubmitTicket) -> dict[str, Any]:
        body = dict(ticket.params)
        if ticket.account and not body.get("email") and len(self.capacity.known()) > 1:
            body["email"] = ticket.account
        body["replyUrl"] = f"{self.callback_root}/callbacks/{ticket.token}"
        body["replyRef"] = ticket.reply_ref
        return body

    async def _submit(self, ticket: SubmitTicket) -> None:
        try:
            result = await self.upstream.create(self._body(ticket))
            await self._handle(ticket, result)
        except Exception:
            log.exception("submit failed job=%s replyRef=%s", ticket.job_id, ticket.reply_ref)
            await self.store.record_deferred(ticket, time.time() + 5, "internal error")
        self._wake.set()

    async def _handle(self, ticket: SubmitTicket, result: CreateResult) -> None:
        now = time.time()
        if result.kind is CreateKind.ACCEPTED and result.task:
            self.degraded = None
            await self.store.record_submitted(
                ticket, result.task["taskId"], result.account, _short(result.body)
            )
            log.info(
                "submitted job=%s replyRef=%s account=%s", ticket.job_id, ticket.reply_ref, result.account
            )
            await self.after_commit(ticket.job_id)
        elif result.kind in (CreateKind.BUSY, CreateKind.THROTTLED):
            wait = busy_wait()
            account = result.account or ticket.account
            if result.kind is CreateKind.BUSY:
                self.capacity.on_busy(account, now, wait)
            else:
                self.capacity.on_throttled(account, now, wait)
            await self.store.record_deferred(
                ticket, now + wait, f"429 {result.kind}: {result.message}", _short(result.body)
            )
            log.info("429 %s job=%s account=%s retry_in=%.0fs", result.kind, ticket.job_id, account, wait)
        elif result.kind is CreateKind.REJECTED:
            if result.status == 401:
                self.degraded = "useapi.net answered 401 Unauthorized: check USEAPI_TOKEN"
                log.error("useapi.net rejected the API token (401); jobs are being rejected")
            await self.store.record_rejected(ticket, result.message, _short(result.body))
            log.warning(
                "rejected job=%s replyRef=%s status=%s: %s",
                ticket.job_id,
                ticket.reply_ref,
                result.status,
                result.message,
            )
            await self.after_commit(ticket.job_id)
        else:
            await self._transient(ticket, result)

    async def _transient(self, ticket: SubmitTicket, result: CreateResult) -> None:
        """5xx or network error: the create may have been accepted; look before trying again."""
        try:
            for task in await self.upstream.scheduler():
                if task.get("replyRef") == ticket.reply_ref and task.get("taskId"):
                    await self.store.record_submitted(
                        ticket, task["taskId"], account_of(task["taskId"]), _short(task)
                    )
                    await self.after_commit(ticket.job_id)
                    return
        except UpstreamError as exc:
            log.warning("scheduler lookup failed job=%s: %s", ticket.job_id, exc.message)
        job = await self.store.job_row(ticket.job_id)
        wait = exponential(int(job["submit_tries"] or 1), base=5.0, cap=300.0)
        await self.store.record_deferred(
            ticket, time.time() + wait, f"transient: {result.message}", _short(result.body)
        )
        log.warning(
            "create failed job=%s status=%s: %s; retry in %.0fs",
            ticket.job_id,
            result.status,
            result.message,
            wait,
        )

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for creates in flight (used at shutdown)."""
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=timeout)
