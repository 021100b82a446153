"""Per-account capacity, and which queued jobs start where: pure, no I/O.

Each account runs at most ``capacity`` jobs. ``capacity`` starts at the account's ``maxJobs``; Runway's
own 429 ("too many tasks running or pending") lowers it by one (never below one). It is raised again by
one, up to ``maxJobs``, once ``raise_after`` jobs of the account have ended since; a raise that Runway
refuses again at once doubles the wait before the next try (up to ``MAX_PROBE_AFTER`` ended jobs), and a
raise that holds for ``raise_after`` ended jobs resets it. Any 429 also rests the account for 10–30 s,
or until one of its jobs ends, whichever comes first.

:meth:`Capacity.plan` decides which queued jobs start now and on which account: oldest first (FIFO per
account), a job pinned to an account (``email``, or an asset it uses) only there, at most one explore-mode
job per account, never more running or in-flight jobs on an account than its capacity, and only on
accounts the guards (:mod:`.guard`) let take a create now.

When no account is known (``GET accounts/`` failed and ``RELAY_ACCOUNTS`` is unset) every job counts
against one pool, ``None``, of :data:`UNKNOWN_ACCOUNT_CAPACITY` slots, and useapi.net picks the account.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .guard import Gate

UNKNOWN_ACCOUNT_CAPACITY = 2
MAX_PROBE_AFTER = 48

Email = str | None


@dataclass
class Account:
    """What the scheduler knows of one account."""

    email: Email
    max_jobs: int = UNKNOWN_ACCOUNT_CAPACITY
    capacity: int = UNKNOWN_ACCOUNT_CAPACITY
    resting_until: float = 0.0
    finished_since_change: int = 0  # jobs ended since the capacity last moved
    probe_after: int = 0  # ended jobs to wait before trying one more (0: ``raise_after``)
    raised: bool = False  # the last move was a raise not yet confirmed


@dataclass(frozen=True)
class Candidate:
    """A queued job as the planner sees it."""

    job_id: str
    pinned: Email = None  # the job must run on this account (its ``email`` or an asset's owner)
    explore: bool = False
    avoid: frozenset[str] = field(default_factory=frozenset)  # accounts that refused it (no credits)

    @property
    def spends(self) -> bool:
        """Whether the create costs credits (explore-mode generations do not)."""
        return not self.explore


class Capacity:
    """Accounts by email, their learned capacity and rests, and the start plan."""

    def __init__(self, raise_after: int = 3) -> None:
        self.accounts: dict[Email, Account] = {}
        self.configured: list[str] = []
        self.raise_after = raise_after

    # -- accounts ------------------------------------------------------------------------------

    def configure(self, max_jobs: Mapping[str, int]) -> None:
        """Set the known accounts and their ``maxJobs``; keeps a learned capacity where lower."""
        for email, limit in max_jobs.items():
            limit = max(1, int(limit))
            account = self.accounts.get(email)
            if account is None:
                self.accounts[email] = Account(email, limit, limit)
            else:
                account.max_jobs = limit
                account.capacity = min(account.capacity, limit)
            if email not in self.configured:
                self.configured.append(email)

    def restore(self, email: str, capacity: int | None, resting_until: float | None) -> None:
        """Take over what an earlier scheduler learnt of an account (its lowered capacity, its rest)."""
        account = self.account(email)
        if capacity:
            account.capacity = max(1, min(account.max_jobs, int(capacity)))
        if resting_until:
            account.resting_until = max(account.resting_until, float(resting_until))

    @property
    def has_accounts(self) -> bool:
        """True once accounts are known (configured or discovered)."""
        return bool(self.configured)

    def account(self, email: Email) -> Account:
        """The account record, created on first sight (e.g. an ``email`` no listing named)."""
        if email not in self.accounts:
            self.accounts[email] = Account(email)
        return self.accounts[email]

    def known(self) -> list[Email]:
        """Accounts an unpinned job may run on (``[None]`` when none is known)."""
        return list(self.configured) or [None]

    def bucket(self, email: Email) -> Email:
        """The account a running job counts against: everything is one pool while none is known."""
        return email if self.has_accounts else None

    def count(self, running: Iterable[Email]) -> dict[Email, int]:
        """Running (or in-flight) jobs per bucket, from the accounts they run on."""
        counts: dict[Email, int] = {}
        for email in running:
            key = self.bucket(email)
            counts[key] = counts.get(key, 0) + 1
        return counts

    # -- slots ---------------------------------------------------------------------------------

    def free_slots(self, email: Email, running: int, now: float) -> int:
        """How many more jobs ``email`` may start now."""
        account = self.account(email)
        if account.resting_until > now:
            return 0
        return max(0, account.capacity - running)

    def pick(
        self, running: Mapping[Email, int], now: float, allowed: Sequence[Email] | None = None
    ) -> tuple[Email] | None:
        """``(email,)`` of the least-loaded allowed account with a free slot, or ``None``."""
        best: tuple[float, Email] | None = None
        for email in self.known() if allowed is None else allowed:
            count = running.get(email, 0)
            if self.free_slots(email, count, now) <= 0:
                continue
            load = count / self.account(email).capacity
            if best is None or load < best[0]:
                best = (load, email)
        return None if best is None else (best[1],)

    def allowed(self, job: Candidate) -> list[Email]:
        """Where ``job`` may run: its pinned account, else any known one."""
        if not self.has_accounts:
            return [None]
        return [job.pinned] if job.pinned else self.known()

    def plan(
        self,
        jobs: Sequence[Candidate],
        running: Mapping[Email, int],
        explore_busy: Iterable[Email],
        now: float,
        gate: Gate | None = None,
    ) -> list[tuple[str, Email]]:
        """Which of ``jobs`` (oldest first) start now, and where.

        ``running`` counts jobs running or being created per account, ``explore_busy`` the accounts
        with an explore-mode job running, ``gate`` which accounts may take creates now (a paused
        account takes none, one out of credits none that spends credits). A job that cannot start does
        not hold back later jobs that may run elsewhere, but never lets one overtake it on an account it
        could use.
        """
        counts = dict(running)
        explore = set(explore_busy)
        chosen: list[tuple[str, Email]] = []
        for job in jobs:
            allowed = [
                a
                for a in self.allowed(job)
                if a not in job.avoid and (gate is None or gate.admits(a, job.spends))
            ]
            if job.explore:
                allowed = [a for a in allowed if a not in explore]
            picked = self.pick(counts, now, allowed)
            if picked is None:
                continue
            (email,) = picked
            chosen.append((job.job_id, email))
            counts[email] = counts.get(email, 0) + 1
            if job.explore:
                explore.add(email)
        return chosen

    def next_change(self, now: float) -> float | None:
        """The earliest moment a rest ends (the queue should be looked at again then)."""
        ends = [a.resting_until for a in self.accounts.values() if a.resting_until > now]
        return min(ends) if ends else None

    # -- what upstream said --------------------------------------------------------------------

    def on_busy(self, email: Email, now: float, wait: float) -> None:
        """useapi.net's queue for the account is full (429, first kind): rest it."""
        account = self.account(self.bucket(email))
        account.resting_until = max(account.resting_until, now + wait)

    def on_throttled(self, email: Email, now: float, wait: float) -> None:
        """Runway itself refused (429, second kind): lower the learned capacity and rest the account."""
        account = self.account(self.bucket(email))
        probe = account.probe_after or self.raise_after
        account.probe_after = min(MAX_PROBE_AFTER, probe * 2) if account.raised else probe
        account.capacity = max(1, account.capacity - 1)
        account.finished_since_change = 0
        account.raised = False
        account.resting_until = max(account.resting_until, now + wait)

    def on_finished(self, email: Email) -> None:
        """A job of the account ended: its rest is over; slowly win back lowered capacity."""
        account = self.account(self.bucket(email))
        account.resting_until = 0.0
        account.finished_since_change += 1
        if account.raised and account.finished_since_change >= self.raise_after:
            account.raised, account.probe_after = False, 0  # the raise held
        probe = account.probe_after or self.raise_after
        if account.capacity < account.max_jobs and account.finished_since_change >= probe:
            account.capacity += 1
            account.finished_since_change = 0
            account.raised = True
