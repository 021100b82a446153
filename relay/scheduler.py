"""Keeps every account's queue full and no fuller: the only place that sends ``videos/create``.

One relay schedules at a time (it holds the ``scheduler`` lease, see :mod:`.coordination`), so an
account's capacity holds however many relays share the database.

Order of safety: a job is marked *submitting* (with its replyRef and a fresh callback token) before
the create call, and counts against its account's capacity from then on. A job left submitting by a
crash — of this relay or of the one that scheduled before it — is looked up upstream by
:meth:`Scheduler.reconcile` (``GET scheduler/``, then ``GET tasks/``) and adopted instead of created
twice; a create that failed in a way that may hide an acceptance (5xx, timeout) is looked up the same
way before it is ever sent again.

Which job starts where is decided by the pure :meth:`Capacity.plan`, on the accounts the guards let
take creates (:class:`~.guard.Gate`, from :class:`~.accounts.AccountWatch`); this module does the I/O
around it. A create an account refuses for a reason of its own (no credits for it, a failed session)
goes to another account; a job no account will ever take ends ``rejected``, saying why.
A freed slot is refilled as soon as the job's end is committed (:meth:`Scheduler.job_changed`, from
this relay or, through the database's notices, from any other), not on a timer. The timer only wakes
the loop when an account's rest ends, and at most a second apart as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .accounts import AccountWatch
from .backoff import busy_wait, exponential
from .capacity import Candidate, Capacity, Email
from .errors import UpstreamError
from .guard import Gate
from .outcomes import Adopted, Announce, CreateOutcomes
from .recovery import BY_REPLY_REF, Finder, Found, sent_create
from .states import TERMINAL, Status
from .storage import Store, SubmitTicket, avoided
from .taskparse import account_of
from .upstream import CreateKind, Upstream, stored_body

log = logging.getLogger("runway_relay.scheduler")

_ASSET_FIELDS = ("imageAssetId1", "imageAssetId2", "videoAssetId")
CREATE_GRACE = 60.0  # a create sent this recently may still land upstream: don't call it lost yet
IDLE_TICK = 1.0  # the longest the loop sleeps: a safety net should a queued job go unannounced
RETRY_CAP = 300.0


class Scheduler(CreateOutcomes):
    """Submits queued jobs as capacity allows; wakes on new jobs and on finished ones."""

    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        callback_root: str,
        announce: Announce,
        holder: str,
        configured: Mapping[str, int] | None = None,
        *,
        adopted: Adopted | None = None,
        accounts: AccountWatch | None = None,
        create_grace: float = CREATE_GRACE,
        retry_base: float = 2.0,
        rest: Callable[[], float] = busy_wait,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.finder = Finder(upstream, store)
        self.callback_root = callback_root.rstrip("/")
        self.announce = announce
        self.holder = holder  # this relay's id: begin_submit checks it still holds the lease
        self.adopted = adopted
        self.accounts = accounts
        self.capacity = Capacity()
        self.configured = dict(configured or {})
        self.create_grace = create_grace
        self.retry_base = retry_base
        self.rest = rest
        self.degraded: str | None = None
        self._wake = asyncio.Event()
        self._inflight: dict[str, tuple[Email, bool]] = {}  # job id → (account, explore)
        self._placing: dict[str, Candidate] = {}  # job id → how the planner saw it (its create in flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._dirty: set[str] = set()  # accounts whose learned capacity or rest changed
        self._discover_at = 0.0
        self._discover_tries = 0
        self._unresolved = 0
        self._failed_creates = 0
        self._reconcile_at = 0.0

    # -- what wakes the loop ------------------------------------------------------------------

    def wake(self, *_: Any, **__: Any) -> None:
        """Look at the queue now."""
        self._wake.set()

    def job_changed(self, job: Mapping[str, Any]) -> None:
        """A job's new state was committed: a job that held a slot and ended frees it at once."""
        status = job.get("status")
        if status in TERMINAL and job.get("task_id"):
            self.capacity.on_finished(job.get("account"))
            self._changed(job.get("account"))
            if self.accounts is not None:
                self.accounts.finished(job.get("account"))  # its credits moved
        if status in TERMINAL or status == Status.QUEUED:
            self._wake.set()

    def account_resumed(self, email: str) -> None:
        """An account was resumed by hand: a rest its failed sessions earned ends too."""
        if self.capacity.has_accounts and email in self.capacity.accounts:
            self.capacity.account(email).resting_until = 0.0
            self._changed(email)
        self._wake.set()

    def _changed(self, account: Email) -> None:
        if account and self.capacity.has_accounts:
            self._dirty.add(account)

    # -- start-up -----------------------------------------------------------------------------

    async def discover_accounts(self) -> bool:
        """Accounts from configuration, else from ``GET accounts/`` (only email and maxJobs kept).

        What an earlier scheduler learnt (a lowered capacity, a rest) is taken from the database.
        """
        accounts = dict(self.configured)
        if not accounts:
            try:
                accounts = await self.upstream.accounts()
            except UpstreamError as exc:
                if exc.status == 401:
                    self.degraded = "useapi.net answered 401 Unauthorized: check USEAPI_TOKEN"
                    log.error("useapi.net refused the API token (401 Unauthorized) listing accounts")
                log.warning("could not list accounts (%s); letting useapi.net choose", exc.message)
        if not accounts:
            self._discover_tries += 1
            self._discover_at = time.time() + exponential(self._discover_tries, base=1.0, cap=60.0)
            return False
        learned = await self.store.accounts()
        await self.store.save_accounts(accounts)
        self.capacity.configure(accounts)
        if self.accounts is not None:
            self.accounts.watch(list(accounts))
        self._restore(learned)
        log.info("accounts: %s", ", ".join(f"{e} (maxJobs {n})" for e, n in accounts.items()))
        return True

    def _restore(self, learned: Mapping[str, Mapping[str, Any]]) -> None:
        """Take what the schedulers so far learnt of each known account (capacity, a rest)."""
        for email, row in learned.items():
            if email in self.capacity.accounts:
                self.capacity.restore(email, row.get("capacity"), row.get("backoff_until"))

    async def reconcile(self) -> int:
        """Adopt or re-queue jobs left submitting by a crash; returns how many are still undecided.

        A job a callback already tied to a task, or that a lookup finds upstream (running, or ended
        already), is adopted. One not found is queued again only once its create is older than
        ``create_grace`` (it could still land upstream) and the lookup worked; until then it keeps its
        slot and is looked up again.
        """
        self._failed_creates = 0  # creates failing while this runs are not in ``stuck``: counted apart
        stuck = [j for j in await self.store.submitting_jobs() if j["id"] not in self._inflight]
        running: dict[str, dict[str, Any]] | None = None
        if any(not j["task_id"] for j in stuck):
            try:
                running = await self.finder.running()
            except UpstreamError as exc:
                log.error("cannot reconcile %d interrupted create(s): %s; retrying", len(stuck), exc.message)
                raise
        now, unresolved = time.time(), 0
        for job in stuck:
            ticket = SubmitTicket(
                job["id"],
                int(job["attempt"]),
                job["reply_ref"],
                "",
                {},
                job["account"],
                job["token_hash"] or "",
            )
            if job["task_id"]:
                how = "reconciled after a restart: a callback had named the task"
                await self._accepted(ticket, job["task_id"], None, how)
                continue
            sent = sent_create(job, job["reply_ref"])
            listed = (running or {}).get(sent.reply_ref)
            found = Found(listed, BY_REPLY_REF) if listed else await self.finder.find(sent, running)
            if found.task is not None:
                how = f"reconciled after a restart: found {found.where}"
                await self._accepted(ticket, str(found.task["taskId"]), stored_body(found.task), how)
            elif found.looked and now - sent.sent_at >= self.create_grace:
                reason = "reconciled after a restart: not running upstream nor among its recent tasks, "
                reason += "queued again"
                await self.store.record_deferred(ticket, 0.0, reason)
                log.info("%s job=%s replyRef=%s", reason, job["id"], job["reply_ref"])
            else:
                unresolved += 1
        self._unresolved = unresolved + self._failed_creates
        self._reconcile_at = now + min(5.0, max(0.05, self.create_grace / 4))
        return unresolved

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Reconcile interrupted creates first, then fill free slots whenever woken.

        Cancelling the loop (this relay stopped scheduling) leaves creates in flight to finish.
        """
        tries = 0
        while True:
            try:
                if self.capacity.has_accounts:  # scheduling again: another relay may have learnt more
                    self._restore(await self.store.accounts())
                await self.reconcile()
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, UpstreamError):
                    log.exception("reconciling interrupted creates failed; retrying")
                tries += 1
                await asyncio.sleep(exponential(tries, base=0.5, cap=10.0))
        while True:
            self._wake.clear()
            try:
                timeout = await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a scheduler pass failed; trying again in a second")
                timeout = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _pass(self) -> float:
        """One look at the queue; returns how long the loop may sleep unless woken."""
        now = time.time()
        if not self.capacity.has_accounts and now >= self._discover_at:
            await self.discover_accounts()
        if self._unresolved and now >= self._reconcile_at:
            try:
                await self.reconcile()
            except UpstreamError:
                self._reconcile_at = now + 5.0
        await self._save_learned()
        await self.fill()
        due = [self.capacity.next_change(now)]
        if not self.capacity.has_accounts:
            due.append(self._discover_at)
        if self._unresolved:
            due.append(self._reconcile_at)
        return max(0.01, min([IDLE_TICK, *(t - now for t in due if t)]))

    async def _save_learned(self) -> None:
        """Keep what the capacity learnt, so the next relay to schedule starts from there."""
        for email in list(self._dirty):
            account = self.capacity.account(email)
            await self.store.save_capacity(email, account.capacity, account.resting_until)
            self._dirty.discard(email)  # only once saved: a failed save is tried again next pass

    async def fill(self) -> int:
        """Start as many queued jobs as the accounts have free slots, oldest first."""
        now = time.time()
        queued, slots = await self.store.queue_view(now)
        if not queued:
            return 0
        running, explore_busy = self._load(slots)
        candidates = [await self._candidate(job) for job in queued]
        gate = None
        if self.accounts is not None and self.capacity.has_accounts:
            gate = await self.accounts.gate(now)
            candidates = [c for c in candidates if not await self._stranded(c, gate)]
        by_id = {c.job_id: c for c in candidates}
        started = 0
        for job_id, account in self.capacity.plan(candidates, running, explore_busy, now, gate):
            ticket = await self.store.begin_submit(job_id, account, self.holder)
            if ticket is None:
                continue
            self._inflight[job_id] = (account, by_id[job_id].explore)
            self._placing[job_id] = by_id[job_id]
            task = asyncio.create_task(self._submit(ticket))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    def _load(self, slots: Iterable[Mapping[str, Any]]) -> tuple[dict[Email, int], set[Email]]:
        """Slots taken per account: running jobs and creates in flight (even one cancelled meanwhile)."""
        taken = {row["id"]: (row["account"], bool(row["explore"])) for row in slots}
        for job_id, held in self._inflight.items():
            taken.setdefault(job_id, held)
        running = self.capacity.count(account for account, _ in taken.values())
        explore = {self.capacity.bucket(account) for account, is_explore in taken.values() if is_explore}
        return running, explore

    async def _candidate(self, job: Mapping[str, Any]) -> Candidate:
        params = json.loads(job["params"])
        pinned = await self._pinned(params)
        return Candidate(job["id"], pinned, params.get("exploreMode") is True, avoided(dict(job)))

    async def _stranded(self, job: Candidate, gate: Gate) -> bool:
        """Reject a queued job no account it may use will take without a person stepping in."""
        why = gate.hopeless(self.capacity.allowed(job), job.avoid, job.spends)
        if why is None:
            return False
        moved = await self.store.record_stranded(job.job_id, why)
        if moved is not None:
            log.warning("rejected job=%s: %s", job.job_id, why)
            await self.announce(moved)
        return True

    async def _pinned(self, params: Mapping[str, Any]) -> Email:
        """The account a job must run on: its ``email``, or the owner of an asset it uses."""
        if params.get("email"):
            return str(params["email"])
        for field in _ASSET_FIELDS:
            asset = params.get(field)
            if asset:
                owner = account_of(asset) or await self.store.asset_account(asset)
                if owner:
                    return owner
        return None

    # -- one create ---------------------------------------------------------------------------

    def _body(self, ticket: SubmitTicket) -> dict[str, Any]:
        body = dict(ticket.params)
        if ticket.account and not body.get("email"):
            body["email"] = ticket.account
        body["replyUrl"] = f"{self.callback_root}/callbacks/{ticket.token}"
        body["replyRef"] = ticket.reply_ref
        return body

    async def _submit(self, ticket: SubmitTicket) -> None:
        try:
            await self._create(ticket)
        except asyncio.CancelledError:
            raise  # shutting down: the job stays submitting and is reconciled by the next scheduler
        except Exception:
            log.exception(
                "submit failed job=%s replyRef=%s; checking upstream", ticket.job_id, ticket.reply_ref
            )
            self._unresolved += 1  # left submitting: reconcile looks it up
            self._failed_creates += 1
            self._reconcile_at = time.time() + 1.0
        finally:
            self._inflight.pop(ticket.job_id, None)
            self._placing.pop(ticket.job_id, None)
            self._wake.set()

    async def _create(self, ticket: SubmitTicket) -> None:
        """Send the create; after a 5xx or timeout, send it again only once upstream says it has none."""
        tries = 0
        while True:
            result = await self.upstream.create(self._body(ticket))
            if result.kind is not CreateKind.TRANSIENT:
                await self._handle(ticket, result)
                return
            tries += 1
            reason = f"{result.status or 'no answer'}: {result.message}"
            await self.store.record_create_retry(ticket, reason, stored_body(result.body))
            log.warning(
                "create failed job=%s replyRef=%s (%s); checking", ticket.job_id, ticket.reply_ref, reason
            )
            if not await self._settle_unknown(ticket, tries):
                return
            log.info("create retried job=%s replyRef=%s try=%d", ticket.job_id, ticket.reply_ref, tries + 1)

    async def _settle_unknown(self, ticket: SubmitTicket, tries: int) -> bool:
        """Was a failed create accepted after all? Adopt it if so. True: send it again."""
        found = await self._lookup(ticket)
        while found.task is None:
            await asyncio.sleep(exponential(tries, base=self.retry_base, cap=RETRY_CAP))
            tries += 1
            found = await self._lookup(ticket)
            if found.task is not None:
                break
            if not await self.store.still_submitting(ticket):
                return False  # cancelled, or another relay schedules now: nothing of ours landed upstream
            if found.looked:
                return True
        how = f"found {found.where} after a failed create"
        await self._accepted(ticket, str(found.task["taskId"]), stored_body(found.task), how)
        return False

    async def _lookup(self, ticket: SubmitTicket) -> Found:
        row = await self.store.job_row(ticket.job_id)
        return await self.finder.find(sent_create({**row, "account": ticket.account}, ticket.reply_ref))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait briefly for creates in flight (at shutdown); the rest resume via reconcile later."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
