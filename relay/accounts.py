"""The Runway accounts' health, as the scheduling relay keeps it: guards' state, credits, sessions.

:class:`AccountWatch` holds the accounts' stored guard state in memory for the scheduler's hot pass
(:meth:`AccountWatch.gate`), reading it again from the database when a notice says it moved (a pause
decided by the relay that ingested the callback, a resume through any relay) and at least every
:data:`REFRESH` seconds. On the scheduling relay its loop reads each account's credits
(``GET features/``) at start, after each of its jobs ends and every :data:`CREDITS_EVERY` seconds.

The decisions themselves are the pure functions of :mod:`.guard`; what the API shows of an account
is :func:`account_json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .errors import UpstreamError
from .guard import AccountPolicy, AccountState, Credits, Gate, amount, counted, credits_low, format_duration
from .storage import Notice, Store, iso_at
from .upstream import CreateResult, Upstream

log = logging.getLogger("runway_relay.accounts")

REFRESH = 5.0  # seconds the scheduler trusts its copy of the accounts' state without a notice
CREDITS_EVERY = 600.0  # each account's credits are read at least this often
AFTER_JOB = 1.0  # a finished job's account is read this long after (jobs ending together: one read)

Announce = Callable[[Sequence[Notice]], Awaitable[None]]


def state_of(row: Mapping[str, Any]) -> AccountState:
    """An :class:`~.guard.AccountState` from an ``accounts`` row."""
    return AccountState(
        str(row["email"]),
        paused_until=float(row.get("paused_until") or 0.0),
        paused_reason=row.get("paused_reason"),
        out_of_rotation=row.get("out_of_rotation"),
        credits=Credits(row.get("credits_permitted"), row.get("credits_used")),
    )


class AccountWatch:
    """See the module docstring. ``announce`` tells the relay of notices its own writes made."""

    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        policy: AccountPolicy,
        announce: Announce,
        *,
        refresh: float = REFRESH,
        credits_every: float = CREDITS_EVERY,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.policy = policy
        self.announce = announce
        self.refresh_every = refresh
        self.credits_every = credits_every
        self.on_change: Callable[[], None] = lambda: None  # the scheduler's wake
        self.states: dict[str, AccountState] = {}
        self._strikes: dict[str, int] = {}
        self._read_at = 0.0
        self._stale = True
        self._due: dict[str, float] = {}  # account → when to read its credits next
        self._wake = asyncio.Event()

    # -- the scheduler's copy ---------------------------------------------------------------------

    def changed(self, *_: Any, **__: Any) -> None:
        """An account's stored state moved (here or on another relay): read it again before the next
        scheduling decision, and wake the scheduler."""
        self._stale = True
        self.on_change()

    async def gate(self, now: float) -> Gate:
        """Which accounts may take creates now (read again when stale)."""
        if self._stale or now - self._read_at >= self.refresh_every or now < self._read_at:
            await self.refresh()
        return Gate(self.states, now)

    async def refresh(self) -> None:
        """Read every account's guard state from the database."""
        self._stale = False
        self._read_at = time.time()
        rows = await self.store.account_states()
        self.states = {str(r["email"]): state_of(r) for r in rows}
        self._strikes = {str(r["email"]): int(r.get("session_strikes") or 0) for r in rows}

    # -- credits (the scheduling relay's loop) ----------------------------------------------------

    def watch(self, emails: Sequence[str]) -> None:
        """The accounts to keep an eye on (known at start, or discovered): read their credits now."""
        now = time.time()
        self._due = {email: min(self._due.get(email, now), now) for email in emails}
        self._wake.set()

    def finished(self, email: str | None) -> None:
        """A job of ``email`` ended: its credits moved, read them shortly."""
        if email and email in self._due:
            self._due[email] = min(self._due[email], time.time() + AFTER_JOB)
            self._wake.set()

    async def run(self) -> None:
        """Read the credits of each watched account when due, forever (on the scheduling relay)."""
        while True:
            self._wake.clear()
            now = time.time()
            for email in [e for e, at in self._due.items() if at <= now]:
                self._due[email] = now + self.credits_every
                await self.read_credits(email)
            upcoming = min(self._due.values(), default=now + self.credits_every)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, upcoming - time.time()))

    async def read_credits(self, email: str) -> None:
        """``GET features/`` for one account; a 401 counts as a failed session."""
        try:
            credits = await self.upstream.features(email)
        except UpstreamError as exc:
            message = f"GET features/ failed: {exc.message}"
            log.warning("could not read the credits of account=%s: %s", email, exc.message)
            await self._notices(
                await self.store.record_account_error(email, message, time.time(), strike=exc.status == 401)
            )
            return
        notices = await self.store.record_credits(email, credits.permitted, credits.used, time.time())
        self._strikes[email] = 0
        before = self.states.get(email)
        if before is None or before.credits.out != credits.out:
            self.changed()
        if credits.out:
            log.info("account=%s has no credits left: creates that spend credits go elsewhere", email)
        await self._notices(notices)

    # -- answers of creates -----------------------------------------------------------------------

    async def accepted(self, email: str | None) -> None:
        """A create went through on ``email``: its failed sessions, if any, are forgotten."""
        if email and self._strikes.get(email):
            self._strikes[email] = 0
            await self.store.record_session_ok(email)

    async def refused(
        self,
        email: str,
        result: CreateResult,
        accounts: Sequence[str | None],
        avoid: frozenset[str],
        spends: bool,
    ) -> tuple[str | None, frozenset[str]]:
        """A create for ``email`` was refused for a reason of the account's (no credits for it: 402; a
        failed session: 401). Record it; returns ``(why no account will take the job, or None,
        the accounts it must avoid from now on)``."""
        now = time.time()
        if result.no_credits:
            avoid = avoid | {email}
            await self._notices(
                await self.store.record_account_error(email, f"create refused: {result.message}", now)
            )
            self.finished(email)  # read its credits soon: it may be out
        else:
            strike = await self.store.record_account_error(
                email, f"create refused (session): {result.message}", now, strike=True
            )
            self._strikes[email] = self._strikes.get(email, 0) + 1
            await self._notices(strike)
            self.changed()
            self.finished(email)  # GET features/ shortly tells a broken session from a one-off
        gate = await self.gate(now)
        return gate.hopeless(accounts, avoid, spends), avoid

    async def _notices(self, notices: Sequence[Notice]) -> None:
        if notices:
            self.changed()
            await self.announce(notices)


# -- what the API shows ---------------------------------------------------------------------------------


def account_json(row: Mapping[str, Any], policy: AccountPolicy, now: float) -> dict[str, Any]:
    """One account for ``GET /api/accounts`` (from :meth:`~.storage.Store.account_overview`)."""
    state = state_of(row)
    credits = state.credits
    paused = state.paused(now)
    resting = float(row.get("backoff_until") or 0.0) > now
    rule = policy.moderation
    since = float(row.get("moderation_since") or 0.0)
    failures = row.get("moderation_failures") or []
    if rule is not None:
        recent = counted(rule, failures, now, since)
    else:
        recent = sum(1 for at in failures if at > since)
    summary = (
        "out-of-rotation"
        if state.out_of_rotation
        else "paused"
        if paused
        else "no-credits"
        if credits.out
        else "resting"
        if resting
        else "ok"
    )
    max_jobs = row.get("max_jobs")
    return {
        "email": state.email,
        "state": summary,
        "slots_in_use": int(row.get("slots_in_use") or 0),
        "capacity": int(row.get("capacity") or max_jobs or 0) or None,
        "max_jobs": int(max_jobs) if max_jobs else None,
        "resting_until": iso_at(row.get("backoff_until")) if resting else None,
        "paused": paused,
        "paused_reason": state.paused_reason if paused else None,
        "paused_until": iso_at(state.paused_until) if paused else None,
        "paused_at": iso_at(row.get("paused_at")) if paused else None,
        "in_rotation": not state.out_of_rotation,
        "out_of_rotation_reason": state.out_of_rotation,
        "out_of_rotation_at": iso_at(row.get("out_of_rotation_at")) if state.out_of_rotation else None,
        "credits": {
            "permitted": credits.permitted,
            "used": credits.used,
            "left": credits.left,
            "low": credits_low(policy.credits_low, credits),
            "checked_at": iso_at(row.get("credits_at")),
        },
        "moderation": {
            "failures": recent,
            "limit": rule.limit if rule else None,
            "window": format_duration(rule.window) if rule else None,
        },
        "last_error": row.get("last_error"),
        "last_error_at": iso_at(row.get("last_error_at")),
        "jobs_today": int(row.get("jobs_today") or 0),
    }


# -- what the CLI shows -----------------------------------------------------------------------------------


def _credits_text(credits: Mapping[str, Any]) -> str:
    if credits.get("left") is None or credits.get("permitted") is None:
        return "unknown"
    text = f"{amount(credits['left'])} of {amount(credits['permitted'])}"
    return text + " (low)" if credits.get("low") else text


def _note(account: Mapping[str, Any]) -> str:
    if not account["in_rotation"]:
        return f"out of rotation: {account['out_of_rotation_reason']}"
    if account["paused"]:
        return f"paused until {account['paused_until']}: {account['paused_reason']}"
    if account.get("resting_until"):
        return f"resting until {account['resting_until']} (429)"
    return ""


def account_table(answer: Mapping[str, Any]) -> str:
    """``runway-relay accounts``: one line per account, and its last error under it."""
    accounts = answer.get("accounts") or []
    if not accounts:
        return "no Runway accounts known yet (the relay lists them from GET accounts/ or RELAY_ACCOUNTS)"
    rows = [("ACCOUNT", "STATE", "SLOTS", "CREDITS LEFT", "TODAY", "MODERATION", "")]
    for a in accounts:
        slots = f"{a['slots_in_use']}/{a['capacity'] or '?'}" + (
            f" (max {a['max_jobs']})" if a.get("max_jobs") and a["max_jobs"] != a["capacity"] else ""
        )
        moderation = a["moderation"]
        flagged = f"{moderation['failures']}/{moderation['limit']} in {moderation['window']}"
        rows.append(
            (
                a["email"],
                a["state"],
                slots,
                _credits_text(a["credits"]),
                str(a["jobs_today"]),
                flagged if moderation["limit"] else str(moderation["failures"]),
                _note(a),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[6]]))
        account = accounts[n - 1] if n else None
        if account and account.get("last_error"):
            lines.append(f"    last error ({account['last_error_at']}): {account['last_error']}")
    guard = answer.get("moderation_pause")
    lines.append(
        f"moderation guard: {guard or 'off'}; credits low below: {answer.get('credits_low') or 'off'}"
    )
    return "\n".join(line.rstrip() for line in lines)
