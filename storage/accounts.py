"""Account guards' state: moderation failures, pauses, sessions, credits — and jobs no account will take.

Whichever relay learns a fact writes it, in one transaction with the decision the pure guard
(:mod:`runway_relay.guard`) takes from what is stored: the relay that ingests a moderated callback
records the failure and, past the limit, the pause and its ``account-paused`` notice; the scheduling
relay records credits and failed sessions. The account's row is locked first, so two relays deciding
at once decide one after the other, and the second finds the pause already there.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from ..errors import NotFound
from ..guard import (
    AccountPolicy,
    Credits,
    amount,
    format_duration,
    low_crossing,
    moderation_pause,
    out_of_rotation,
)
from ..states import AccountSignal, Status, TransitionError, on_rejected
from .connector import Tx
from .core import marks, reads, writes
from .notices import Notice, NoticesMixin
from .records import ACTIVE_STATUSES, Moved, iso_now

KEEP_EVENTS = 86400.0  # moderation failures older than this (or than the window) are dropped
_STATE_COLUMNS = (
    "email, max_jobs, capacity, backoff_until, paused_until, paused_at, paused_reason, moderation_since, "
    "out_of_rotation, out_of_rotation_at, session_strikes, credits_permitted, credits_used, credits_at, "
    "credits_low, last_error, last_error_at"
)


def iso_at(epoch: float | None) -> str | None:
    """Epoch seconds as the ISO 8601 the API speaks (``None`` stays ``None``)."""
    if not epoch:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AccountsMixin(NoticesMixin):
    """Moderation failures, pauses, sessions, credits; resuming; jobs no account will take."""

    policy: AccountPolicy = AccountPolicy()  # set by the relay, like ``routing``

    async def _account(self, tx: Tx, email: str) -> dict[str, Any]:
        """The account's row, locked (created first if no listing named it)."""
        await tx.run(
            "insert into accounts (email, updated_at) values (?, ?) on conflict (email) do nothing",
            [email, iso_now()],
        )
        row = await tx.one(f"select {_STATE_COLUMNS} from accounts where email = ?{tx.for_update}", [email])
        assert row is not None
        return row

    async def _set(self, tx: Tx, email: str, changes: dict[str, Any]) -> None:
        sets = ", ".join(f"{column} = ?" for column in changes)
        await tx.run(
            f"update accounts set {sets}, updated_at = ? where email = ?",
            [*changes.values(), iso_now(), email],
        )

    # -- moderation (inside the unit that ingests the callback) --------------------------------------

    async def _moderated(
        self, tx: Tx, email: str, job_id: str, attempt: int, error: str, now: float
    ) -> list[Notice]:
        """Count a moderation failure of ``email``; pause the account when the guard says so."""
        account = await self._account(tx, email)
        await tx.run(
            "insert into moderation_events (email, job_id, attempt, at) values (?, ?, ?, ?) "
            "on conflict (job_id, attempt) do nothing",
            [email, job_id, attempt, now],
        )
        changes: dict[str, Any] = {"last_error": f"moderation: {error}"[:1000], "last_error_at": now}
        notices = []
        rule = self.policy.moderation
        if rule is not None:
            since = float(account["moderation_since"] or 0.0)
            rows = await tx.rows(
                "select at from moderation_events where email = ? and at > ?",
                [email, max(since, now - rule.window)],
            )
            pause = moderation_pause(
                rule,
                [float(r["at"]) for r in rows],
                now,
                since=since,
                paused_until=float(account["paused_until"] or 0.0),
            )
            if pause is not None:
                changes.update(
                    paused_until=pause.until, paused_at=now, paused_reason=pause.reason, moderation_since=now
                )
                detail = {
                    "reason": pause.reason,
                    "until": iso_at(pause.until),
                    "for": format_duration(rule.pause),
                    "failures": pause.failures,
                    "job_id": job_id,
                }
                notices.append(await self._notice(tx, email, AccountSignal.PAUSED, detail))
            keep = max(rule.window, KEEP_EVENTS)
        else:
            keep = KEEP_EVENTS
        await tx.run("delete from moderation_events where email = ? and at < ?", [email, now - keep])
        await self._set(tx, email, changes)
        return notices

    # -- what the scheduling relay learns ------------------------------------------------------------

    @writes
    async def record_credits(
        self, tx: Tx, email: str, permitted: float | None, used: float | None, now: float
    ) -> list[Notice]:
        """Keep what ``GET features/`` said; ``account-credits-low`` once per crossing."""
        account = await self._account(tx, email)
        credits = Credits(permitted, used)
        was_out = Credits(account["credits_permitted"], account["credits_used"]).out
        low, fire = low_crossing(self.policy.credits_low, bool(account["credits_low"]), credits)
        await self._set(
            tx,
            email,
            {
                "credits_permitted": permitted,
                "credits_used": used,
                "credits_at": now,
                "credits_low": int(low),
                "session_strikes": 0,  # the session works
            },
        )
        if fire:
            left = credits.left or 0.0
            rule = self.policy.credits_low
            reason = f"{amount(left)} credits left of {amount(permitted or 0)}" + (
                f" (RELAY_CREDITS_LOW={rule})"
                if rule and left > 0
                else "; creates that spend credits go elsewhere"
            )
            detail = {"reason": reason, "credits": {"permitted": permitted, "used": used, "left": left}}
            return [await self._notice(tx, email, AccountSignal.CREDITS_LOW, detail)]
        if credits.out != was_out:
            await self._account_changed(tx, email)
        return []

    @writes
    async def record_account_error(
        self, tx: Tx, email: str, message: str, now: float, *, strike: bool = False
    ) -> list[Notice]:
        """Keep an account's last error; ``strike``: a failed session, which repeated takes the
        account out of rotation (``account-out-of-rotation``, once)."""
        account = await self._account(tx, email)
        changes: dict[str, Any] = {"last_error": message[:1000], "last_error_at": now}
        notices = []
        if strike:
            strikes = int(account["session_strikes"] or 0) + 1
            changes["session_strikes"] = strikes
            if out_of_rotation(strikes, self.policy.session_strikes) and not account["out_of_rotation"]:
                reason = f"{strikes} failed sessions in a row, the last: {message}"[:500]
                changes.update(out_of_rotation=reason, out_of_rotation_at=now)
                detail = {"reason": reason, "strikes": strikes}
                notices.append(await self._notice(tx, email, AccountSignal.OUT_OF_ROTATION, detail))
        await self._set(tx, email, changes)
        return notices

    @writes
    async def record_session_ok(self, tx: Tx, email: str) -> None:
        """A create went through: the account's failed sessions are forgotten."""
        await tx.run(
            "update accounts set session_strikes = 0 where email = ? and session_strikes > 0", [email]
        )

    @writes
    async def resume_account(self, tx: Tx, email: str, now: float) -> tuple[list[str], list[Notice]]:
        """Lift a pause and bring the account back into rotation, by hand (any relay).

        Moderation failures so far are dealt with: only new ones count towards the next pause.
        Returns what was lifted and the ``account-resumed`` notice (none when nothing was).
        """
        row = await tx.one(f"select {_STATE_COLUMNS} from accounts where email = ?{tx.for_update}", [email])
        if row is None:
            raise NotFound(f"no Runway account {email!r} is known; see GET /api/accounts")
        lifted = []
        if float(row["paused_until"] or 0) > now:
            lifted.append(f"the pause ({row['paused_reason']})")
        if row["out_of_rotation"]:
            lifted.append(f"out of rotation ({row['out_of_rotation']})")
        await self._set(
            tx,
            email,
            {
                "paused_until": None,
                "paused_reason": None,
                "paused_at": None,
                "moderation_since": now,
                "out_of_rotation": None,
                "out_of_rotation_at": None,
                "session_strikes": 0,
            },
        )
        if not lifted:
            await self._account_changed(tx, email)
            return [], []
        detail = {"reason": "resumed by hand: lifted " + " and ".join(lifted)}
        return lifted, [await self._notice(tx, email, AccountSignal.RESUMED, detail)]

    # -- reading ---------------------------------------------------------------------------------------

    @reads
    async def account_states(self, tx: Tx) -> list[dict[str, Any]]:
        """Every account's stored guard state (a few rows: the scheduler's cache reads this)."""
        return await tx.rows(f"select {_STATE_COLUMNS} from accounts order by email")

    @reads
    async def account_overview(self, tx: Tx, now: float, day_start: float) -> list[dict[str, Any]]:
        """Every account with its slots in use, jobs sent to it since ``day_start`` and moderation
        failures in the guard's window (epoch seconds), for ``GET /api/accounts``."""
        rows = await tx.rows(f"select {_STATE_COLUMNS} from accounts order by email")
        if not rows:
            return []
        busy = await tx.rows(
            f"select account, count(*) as n from jobs where status in ({marks(ACTIVE_STATUSES)}) "
            "or submitting_since is not null group by account",
            list(ACTIVE_STATUSES),
        )
        today = await tx.rows(
            "select account, count(*) as n from jobs where account is not null and submitted_at >= ? "
            "group by account",
            [day_start],
        )
        rule = self.policy.moderation
        window = rule.window if rule else KEEP_EVENTS
        failures: dict[str, list[float]] = {}
        for event in await tx.rows("select email, at from moderation_events where at > ?", [now - window]):
            failures.setdefault(str(event["email"]), []).append(float(event["at"]))
        slots = {r["account"]: int(r["n"]) for r in busy}
        jobs_today = {r["account"]: int(r["n"]) for r in today}
        return [
            {
                **row,
                "slots_in_use": slots.get(row["email"], 0),
                "jobs_today": jobs_today.get(row["email"], 0),
                "moderation_failures": failures.get(row["email"], []),
            }
            for row in rows
        ]

    # -- jobs no account will take ---------------------------------------------------------------------

    @writes
    async def record_stranded(self, tx: Tx, job_id: str, message: str) -> Moved | None:
        """A queued job no account may ever take (out of credits, out of rotation): ``rejected``.

        ``None`` when the job moved on meanwhile (cancelled, or its create is in flight).
        """
        job = await self._job_row(tx, job_id, lock=True)
        if job["status"] != Status.QUEUED.value or job["submitting_since"]:
            return None
        try:
            decision = on_rejected(self._state(job))
        except TransitionError:
            return None
        await self._event(tx, job, "relay", "placement", "rejected", status="rejected", detail=message)
        extra = {"error": message[:2000], "error_kind": "rejected", "next_submit_at": time.time()}
        return await self._apply(tx, job, decision, extra)


def avoided(row: dict[str, Any]) -> frozenset[str]:
    """The accounts a queued job's row says refused it (``avoid_accounts``)."""
    raw = row.get("avoid_accounts")
    return frozenset(json.loads(raw)) if raw else frozenset()
