"""What keeps a Runway account working: the moderation guard, credits and sessions — pure, no I/O.

Every decision the relay makes about an account is a function here, of what the database holds and
an injected ``now``:

- :func:`moderation_pause`: after ``N`` moderation failures within ``WINDOW`` (``RELAY_MODERATION_PAUSE``,
  e.g. ``3/1h``) the account is paused for new creates (for ``RELAY_MODERATION_PAUSE_FOR``, by default
  the window). Failures at or before the last pause or manual resume never count again.
- :func:`credits_low`: below ``RELAY_CREDITS_LOW`` (credits, or a % of the plan) the account is low;
  :func:`low_crossing` says when that is news (once per crossing).
- :func:`out_of_rotation`: after :data:`SESSION_STRIKES` failed sessions in a row (401s) the account
  is taken out of rotation until resumed by hand.
- :class:`Gate`: which accounts may take a create now (paused, out of rotation, out of credits), and
  :meth:`Gate.hopeless`: when no account a job may use will ever take it without a person stepping in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

SESSION_STRIKES = 3  # failed sessions (401) in a row that take an account out of rotation
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_OFF = ("", "0", "off", "none", "no")


class RuleError(ValueError):
    """A guard setting cannot be read; the message says what a good one looks like."""


# -- durations ---------------------------------------------------------------------------------


def parse_duration(text: str, *, zero: bool = False) -> float:
    """Seconds in ``90``, ``90s``, ``30m``, ``1h``, ``2d`` or ``1.5h`` (``0d`` only with ``zero``)."""
    match = _DURATION.match(text)
    if match is None:
        raise RuleError(f"{text!r} is not a duration; use a number with s, m, h or d, such as 30m or 1h")
    seconds = float(match[1]) * _UNITS[(match[2] or "s").lower()]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise RuleError(f"{text!r} must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """``1h``, ``1h 30m``, ``45s``: the largest units that say it exactly (to the second)."""
    left = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2]) or "0s"


def amount(credits: float) -> str:
    """Credits as people write them: ``2,250``, ``12.5``."""
    return f"{credits:,.0f}" if float(credits).is_integer() else f"{credits:,.1f}"


# -- moderation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModerationRule:
    """Pause an account after ``limit`` moderation failures within ``window`` seconds, for ``pause``."""

    limit: int
    window: float
    pause: float

    def __str__(self) -> str:
        return f"{self.limit}/{format_duration(self.window)}"


def parse_moderation(text: str | None, pause_for: str | None = None) -> ModerationRule | None:
    """``RELAY_MODERATION_PAUSE`` (``N/WINDOW``; ``off`` or ``0`` turns the guard off) and
    ``RELAY_MODERATION_PAUSE_FOR`` (a duration; the window when unset)."""
    raw = (text or "").strip().lower()
    if raw in _OFF:
        return None
    count, slash, window = raw.partition("/")
    if not slash or not count.strip().isdigit() or int(count) < 1:
        raise RuleError(f"{text!r} is not N/WINDOW; use for example 3/1h (3 failures within an hour), or off")
    seconds = parse_duration(window)
    pause = parse_duration(pause_for) if pause_for and pause_for.strip() else seconds
    return ModerationRule(int(count), seconds, pause)


@dataclass(frozen=True)
class Pause:
    """The guard's verdict: pause the account until ``until`` (epoch seconds), for ``reason``."""

    until: float
    reason: str
    failures: int


def counted(rule: ModerationRule, failures: Iterable[float], now: float, since: float = 0.0) -> int:
    """How many of ``failures`` (epoch seconds) count now: within the window and after ``since``.

    A failure stamped later than ``now`` (another relay's clock runs ahead) counts as recent.
    """
    start = max(since, now - rule.window)
    return sum(1 for at in failures if at > start)


def moderation_pause(
    rule: ModerationRule | None,
    failures: Iterable[float],
    now: float,
    *,
    since: float = 0.0,
    paused_until: float = 0.0,
) -> Pause | None:
    """Whether the account must be paused now, given its moderation failures.

    ``since``: the last pause or manual resume (failures at or before it were dealt with then).
    An account already paused is not paused again: one pause, one notice.
    """
    if rule is None or paused_until > now:
        return None
    count = counted(rule, failures, now, since)
    if count < rule.limit:
        return None
    reason = (
        f"{count} moderation failures within {format_duration(rule.window)} "
        f"(RELAY_MODERATION_PAUSE={rule}); paused {format_duration(rule.pause)}"
    )
    return Pause(now + rule.pause, reason, count)


# -- credits --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreditsRule:
    """``RELAY_CREDITS_LOW``: an amount of credits, or a percentage of the plan's."""

    amount: float
    percent: bool = False

    def threshold(self, permitted: float | None) -> float | None:
        """The credits left below which the account is low (``None``: cannot tell)."""
        if not self.percent:
            return self.amount
        return None if permitted is None else permitted * self.amount / 100.0

    def __str__(self) -> str:
        return f"{self.amount:g}%" if self.percent else f"{self.amount:g}"


def parse_credits_low(text: str | None) -> CreditsRule | None:
    """``100`` (credits) or ``10%`` (of the plan); ``off`` or ``0`` turns the warning off."""
    raw = (text or "").strip().lower()
    if raw in _OFF:
        return None
    percent = raw.endswith("%")
    number = raw.removesuffix("%").strip()
    try:
        amount = float(number)
    except ValueError:
        raise RuleError(f"{text!r} is not a number of credits (such as 200) or a percentage (10%)") from None
    if not math.isfinite(amount) or amount < 0 or (percent and amount > 100):
        raise RuleError(f"{text!r} must be a number of credits, or a percentage from 0 to 100")
    return None if amount == 0 else CreditsRule(amount, percent)


@dataclass(frozen=True)
class Credits:
    """An account's plan credits as ``GET features/`` last told them (``None``: not known)."""

    permitted: float | None = None
    used: float | None = None

    @property
    def known(self) -> bool:
        """Whether both numbers were read."""
        return self.permitted is not None and self.used is not None

    @property
    def left(self) -> float | None:
        """Credits left (never below zero), or ``None``."""
        if self.permitted is None or self.used is None:
            return None
        return max(0.0, self.permitted - self.used)

    @property
    def out(self) -> bool:
        """No credits left: creates that spend credits must go elsewhere (unknown is not out)."""
        left = self.left
        return left is not None and left <= 0


def credits_low(rule: CreditsRule | None, credits: Credits) -> bool:
    """Whether the account is below ``RELAY_CREDITS_LOW`` (out of credits counts as low)."""
    left = credits.left
    if left is None:
        return False
    if left <= 0:
        return True
    if rule is None:
        return False
    threshold = rule.threshold(credits.permitted)
    return threshold is not None and left < threshold


def low_crossing(rule: CreditsRule | None, was_low: bool, credits: Credits) -> tuple[bool, bool]:
    """``(low now, fire the signal)``: it fires once per crossing from above to below (with no
    ``RELAY_CREDITS_LOW``, when the credits run out).

    Unknown credits leave the state as it was (a failed read is not a recovery).
    """
    if not credits.known:
        return was_low, False
    low = credits_low(rule, credits)
    return low, low and not was_low


# -- sessions ---------------------------------------------------------------------------------------


def out_of_rotation(strikes: int, limit: int = SESSION_STRIKES) -> bool:
    """Whether ``strikes`` failed sessions in a row take the account out of rotation."""
    return limit > 0 and strikes >= limit


# -- all of it ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountPolicy:
    """The guards as configured (``RELAY_MODERATION_PAUSE``, ``RELAY_CREDITS_LOW``)."""

    moderation: ModerationRule | None = None
    credits_low: CreditsRule | None = None
    session_strikes: int = SESSION_STRIKES


# -- who may take a create --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountState:
    """What the guards know of one account, as stored (times in epoch seconds)."""

    email: str
    paused_until: float = 0.0
    paused_reason: str | None = None
    out_of_rotation: str | None = None  # why, while it is out
    credits: Credits = field(default_factory=Credits)

    def paused(self, now: float) -> bool:
        """A moderation pause is running."""
        return self.paused_until > now

    def lasting(self, spends: bool) -> str | None:
        """Why the account cannot take such a job until a person steps in, or ``None``."""
        if self.out_of_rotation:
            return f"{self.email} is out of rotation ({self.out_of_rotation})"
        if spends and self.credits.out:
            used, permitted = amount(self.credits.used or 0), amount(self.credits.permitted or 0)
            return f"{self.email} has no credits left ({used} of {permitted} used)"
        return None

    def admits(self, spends: bool, now: float) -> bool:
        """Whether the account may take a create now (``spends``: the job costs credits)."""
        return not self.paused(now) and self.lasting(spends) is None


@dataclass(frozen=True)
class Gate:
    """The accounts' states at ``now``, as the planner asks about them. Unknown accounts are open."""

    states: Mapping[str, AccountState]
    now: float

    def admits(self, email: str | None, spends: bool) -> bool:
        """Whether ``email`` may take a create now."""
        state = self.states.get(email) if email else None
        return state is None or state.admits(spends, self.now)

    def hopeless(self, accounts: Sequence[str | None], avoid: Iterable[str], spends: bool) -> str | None:
        """Why no account of ``accounts`` (those a job may use) will take it, or ``None`` when one may.

        ``avoid``: accounts that refused the job already (not enough credits for it). A pause passes
        by itself, so a paused account is hope; out of rotation or out of credits is not.
        """
        refused = set(avoid)
        reasons = []
        for email in accounts:
            if email is None:
                return None
            if email in refused:
                reasons.append(f"{email} refused it (not enough credits)")
                continue
            state = self.states.get(email)
            why = state.lasting(spends) if state else None
            if why is None:
                return None
            reasons.append(why)
        if not reasons:
            return None
        text = "No Runway account can take this job: " + "; ".join(reasons)
        if spends and any("credits" in r for r in reasons):
            text += ". Top up the plan (or use exploreMode on an Unlimited plan)"
        if any("out of rotation" in r for r in reasons):
            text += ". Fix the account at useapi.net, then `runway-relay accounts resume EMAIL`"
        return text

    def next_change(self) -> float | None:
        """When the earliest running pause ends."""
        ends = [s.paused_until for s in self.states.values() if s.paused_until > self.now]
        return min(ends) if ends else None
