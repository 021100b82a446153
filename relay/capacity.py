"""Per-account capacity bookkeeping for the scheduler: pure, no I/O.

Each account runs at most ``capacity`` jobs. ``capacity`` starts at the account's ``maxJobs``; Runway's
own 429 ("too many tasks running or pending") lowers it by one (never below one), and every
``raise_after`` jobs that end normally raise it again by one, up to ``maxJobs``. A 429 also rests the
account for 10–30 s, or until one of its jobs ends, whichever comes first.
"""

from __future__ import annotations

from dataclasses import dataclass

UNKNOWN_ACCOUNT_CAPACITY = 2


@dataclass
class Account:
    """What the scheduler knows of one account."""

    email: str | None
    max_jobs: int = UNKNOWN_ACCOUNT_CAPACITY
    capacity: int = UNKNOWN_ACCOUNT_CAPACITY
    resting_until: float = 0.0
    finished_since_lowered: int = 0
    explore_running: bool = False


class Capacity:
    """Accounts by email (``None`` stands for "let useapi.net choose" when none are known)."""

    def __init__(self, raise_after: int = 3) -> None:
        self.accounts: dict[str | None, Account] = {}
        self.raise_after = raise_after

    def configure(self, max_jobs: dict[str, int]) -> None:
        """Set the known accounts and their ``maxJobs``; keeps learned capacity where lower."""
        for email, limit in max_jobs.items():
            account = self.accounts.get(email)
            if account is None:
                self.accounts[email] = Account(email, limit, limit)
            else:
                account.max_jobs = limit
                account.capacity = min(account.capacity, limit)
        if max_jobs:
            self.accounts.pop(None, None)

    def account(self, email: str | None) -> Account:
        """The account record, created on first sight (e.g. named by a taskId)."""
        if email not in self.accounts:
            self.accounts[email] = Account(email)
        return self.accounts[email]

    def known(self) -> list[str | None]:
        """Emails to spread work over (``[None]`` when no account is known)."""
        emails = [e for e in self.accounts if e is not None]
        return emails or [None]

    def free_slots(self, email: str | None, running: int, now: float) -> int:
        """How many more jobs ``email`` may start now."""
        account = self.account(email)
        if account.resting_until > now:
            return 0
        return max(0, account.capacity - running)

    def pick(
        self, running: dict[str | None, int], now: float, allowed: list[str | None] | None = None
    ) -> str | bool | None:
        """The least-loaded account with a free slot, or ``False`` when none has one."""
        best: tuple[float, str | None] | None = None
        for email in allowed if allowed is not None else self.known():
            count = running.get(email, 0)
            if self.free_slots(email, count, now) <= 0:
                continue
            load = count / max(1, self.account(email).capacity)
            if best is None or load < best[0]:
                best = (load, email)
        return False if best is None else best[1]

    def on_busy(self, email: str | None, now: float, wait: float) -> None:
        """useapi.net's queue for the account is full: rest it."""
        self.account(email).resting_until = now + wait

    def on_throttled(self, email: str | None, now: float, wait: float) -> None:
        """Runway refused: lower the learned capacity and rest the account."""
        account = self.account(email)
        account.capacity = max(1, account.capacity - 1)
        account.finished_since_lowered = 0
        account.resting_until = now + wait

    def on_finished(self, email: str | None) -> None:
        """A job of the account ended: its slot is free now; slowly win back lowered capacity."""
        account = self.account(email)
        account.resting_until = 0.0
        if account.capacity < account.max_jobs:
            account.finished_since_lowered += 1
            if account.finished_since_lowered >= self.raise_after:
                account.capacity += 1
                account.finished_since_lowered = 0
