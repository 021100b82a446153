"""Leased handler runs, whatever they run for: a job's transition (``handler_runs``) or an account
notice (``notice_runs``). The two tables share their life cycle — claim under a lease, renew, finish,
hand back at shutdown, recover after a crash — and these statements, written once, serve both.

``table`` is always one of :data:`TABLES` (names from this package, never from input).
"""

from __future__ import annotations

import time
from typing import Any

from ..states import RunStatus
from .connector import Tx
from .core import marks
from .records import iso_now

TABLES = ("handler_runs", "notice_runs")


def only(handlers: list[str] | None) -> tuple[str, list[str]]:
    """The SQL (and its arguments) that keeps a query to runs of ``handlers`` (``None``: any)."""
    if handlers is None:
        return "", []
    if not handlers:
        return " and 1 = 0", []
    return f" and r.handler in ({marks(handlers)})", list(handlers)


def _table(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"not a table of runs: {table!r}")
    return table


async def recover(tx: Tx, table: str) -> int:
    """Runs a crash left ``running`` become ``pending`` (only where one process owns the database)."""
    return await tx.execute(
        f"update {_table(table)} set status = 'pending', lease_owner = null, lease_until = null "
        "where status = 'running'"
    )


async def claim(
    tx: Tx,
    table: str,
    owner: str,
    now: float,
    limit: int,
    lease: float,
    handlers: list[str] | None,
    also: str = "",
) -> list[dict[str, Any]]:
    """Take up to ``limit`` due runs (or runs whose lease ran out) for ``owner``, for ``lease`` s.

    ``also``: one more condition on ``r`` (job runs wait for the runs they come after). Each claim
    counts as an attempt, a taken-over one included.
    """
    filter_sql, names = only(handlers)
    return await tx.rows(
        f"update {_table(table)} set status = 'running', attempts = coalesce(attempts, 0) + 1, "
        f"lease_owner = ?, lease_until = {tx.now} + ?, updated_at = ? "
        f"where id in (select r.id from {table} r where "
        "((r.status = 'pending' and r.next_at <= ?) "
        f"or (r.status = 'running' and r.lease_until < {tx.now})){also}{filter_sql} "
        f"order by r.next_at, r.id limit ?{tx.skip_locked}) returning *",
        [owner, lease, iso_now(), now, *names, limit],
    )


async def renew(tx: Tx, table: str, owner: str, run_ids: list[int], lease: float) -> set[int]:
    """Extend ``owner``'s leases on ``run_ids``; the ids it still holds."""
    if not run_ids:
        return set()
    rows = await tx.rows(
        f"update {_table(table)} set lease_until = {tx.now} + ? where lease_owner = ? and status = 'running' "
        f"and id in ({marks(run_ids)}) returning id",
        [lease, owner, *run_ids],
    )
    return {int(row["id"]) for row in rows}


async def release(tx: Tx, table: str, owner: str) -> int:
    """``owner``'s running runs become ``pending``, due now, lease cleared, the try not counted."""
    return await tx.execute(
        f"update {_table(table)} set status = 'pending', lease_owner = null, lease_until = null, "
        "attempts = case when attempts > 0 then attempts - 1 else 0 end, next_at = ?, updated_at = ? "
        "where lease_owner = ? and status = 'running'",
        [time.time(), iso_now(), owner],
    )


async def next_due(tx: Tx, table: str, handlers: list[str] | None, also: str = "") -> float | None:
    """When the earliest pending run (of ``handlers``, meeting ``also``) is due, or ``None``."""
    filter_sql, names = only(handlers)
    row = await tx.one(
        f"select min(r.next_at) as t from {_table(table)} r where r.status = 'pending'{also}{filter_sql}",
        names,
    )
    return row["t"] if row else None


def ending(status: RunStatus, error: str | None, output: str | None, next_at: float | None) -> dict[str, Any]:
    """The columns a run's end writes."""
    changes: dict[str, Any] = {
        "status": status.value,
        "last_error": error,
        "updated_at": iso_now(),
        "lease_owner": None,
        "lease_until": None,
    }
    if output is not None:
        changes["output"] = output
    if next_at is not None:
        changes["next_at"] = next_at
    return changes


async def end(tx: Tx, table: str, run_id: int, owner: str, changes: dict[str, Any], *, refund: bool) -> bool:
    """Write a run's end (:func:`ending`) while ``owner`` still holds it; whether it did.

    ``refund``: the try does not count towards the handler's attempts.
    """
    sets = ", ".join(f"{column} = ?" for column in changes)
    if refund:
        sets += ", attempts = attempts - 1"
    changed = await tx.execute(
        f"update {_table(table)} set {sets} where id = ? and lease_owner = ? and status = 'running'",
        [*changes.values(), run_id, owner],
    )
    return changed == 1
