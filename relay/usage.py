"""Usage per model, account and day: counts, seconds of video, rates and percentiles. Pure, no I/O.

The store reads the raw facts (:meth:`~runway_relay.storage.insights.InsightsMixin.usage_facts`); this
module turns them into the answer of ``GET /api/usage`` and ``runway-relay usage``.

Definitions (each job counts on the UTC day it was created):

- ``finished`` = succeeded + failed + rejected (cancelled and still active jobs are not judged);
  ``success_rate``, ``failure_rate`` (failed not by moderation, plus rejected) and ``moderation_rate``
  are shares of ``finished`` and add up to 1; ``None`` when nothing finished.
- ``video_seconds``: the seconds of video asked for by the jobs that succeeded.
- ``generation`` time: from leaving the queue (the create was accepted) to succeeding.
- ``queue_wait``: from being created to leaving the queue (429 rests included).
- ``throttles``: 429 answers to creates (each one a rest of 10–30 s).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .timeline import parse_time

MAX_DAYS = 366
_COUNTS = ("jobs", "succeeded", "failed", "moderated", "rejected", "cancelled", "active", "throttles")


def window(days: int, now: datetime | None = None) -> tuple[datetime, list[str]]:
    """The start (midnight UTC, ``days - 1`` days before today) and the days of the window."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days - 1)
    return start, [(start + timedelta(days=n)).date().isoformat() for n in range(days)]


def percentile(values: Sequence[float], share: float) -> float | None:
    """The ``share`` (0–1) percentile with linear interpolation; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


class _Tally:
    """The running numbers of one group (a day, a model, an account, or all of them)."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(_COUNTS, 0)
        self.video_seconds = 0
        self.generation: list[float] = []
        self.queue_wait: list[float] = []

    def add(self, job: Mapping[str, Any]) -> None:
        counts, status = self.counts, job["status"]
        counts["jobs"] += 1
        if status == "succeeded":
            counts["succeeded"] += 1
            self.video_seconds += int(job["duration"] or 0)
        elif status == "failed":
            counts["moderated" if job["error_kind"] == "moderation" else "failed"] += 1
        elif status in ("rejected", "cancelled"):
            counts[status] += 1
        else:
            counts["active"] += 1
        created, started, ended = job["created_at"], job["started_at"], job["ended_at"]
        if started:
            self.queue_wait.append(_between(created, started))
        if status == "succeeded" and started and ended:
            self.generation.append(_between(started, ended))

    def result(self) -> dict[str, Any]:
        counts = self.counts
        finished = counts["succeeded"] + counts["failed"] + counts["moderated"] + counts["rejected"]

        def rate(n: int) -> float | None:
            return round(n / finished, 4) if finished else None

        def pct(values: list[float], share: float) -> float | None:
            value = percentile(values, share)
            return None if value is None else round(value, 2)

        return {
            **counts,
            "video_seconds": self.video_seconds,
            "success_rate": rate(counts["succeeded"]),
            "failure_rate": rate(counts["failed"] + counts["rejected"]),
            "moderation_rate": rate(counts["moderated"]),
            "generation_p50": pct(self.generation, 0.5),
            "generation_p95": pct(self.generation, 0.95),
            "queue_wait_p50": pct(self.queue_wait, 0.5),
            "queue_wait_p95": pct(self.queue_wait, 0.95),
        }


def _between(start: str, end: str) -> float:
    return max(0.0, (parse_time(end) - parse_time(start)).total_seconds())


def summarize(
    facts: Mapping[str, Iterable[Mapping[str, Any]]],
    days: int,
    accounts: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
) -> dict[str, Any]:
    """The usage answer: ``total``, ``by_day`` (every day of the window), ``by_model``,
    ``by_account``, ``rows`` (per day, model and account) and ``accounts`` (slots in use now)."""
    start, day_list = window(days, now)
    groups: dict[str, dict[Any, _Tally]] = {k: {} for k in ("total", "day", "model", "account", "row")}
    groups["day"] = {day: _Tally() for day in day_list}

    def tallies(day: str, model: str, account: str) -> list[_Tally]:
        keys = {"total": "all", "day": day, "model": model, "account": account, "row": (day, model, account)}
        return [groups[name].setdefault(key, _Tally()) for name, key in keys.items()]

    for job in facts.get("jobs", ()):
        for tally in tallies(job["created_at"][:10], job["model"], job["account"] or "(any)"):
            tally.add(job)
    for rest in facts.get("deferrals", ()):
        for tally in tallies(rest["at"][:10], rest["model"], rest["account"] or "(any)"):
            tally.counts["throttles"] += 1
    total = groups["total"].get("all") or _Tally()
    return {
        "days": days,
        "since": start.isoformat().replace("+00:00", "Z"),
        "total": total.result(),
        "by_day": [{"day": d, **t.result()} for d, t in sorted(groups["day"].items())],
        "by_model": [{"model": m, **t.result()} for m, t in sorted(groups["model"].items())],
        "by_account": [{"account": a, **t.result()} for a, t in sorted(groups["account"].items())],
        "rows": [
            {"day": d, "model": m, "account": a, **t.result()}
            for (d, m, a), t in sorted(groups["row"].items(), reverse=True)
        ],
        "accounts": [dict(a) for a in accounts],
    }
