"""Account notices: what happened to a Runway account, and the handler runs that tell someone.

A notice (``account-paused``, ``account-credits-low``…) is written in the transaction that decided it,
with one run per handler that wants its signal — the outbox of accounts, beside the jobs' own
(``handler_runs``, which belong to a job). Runs are claimed, renewed and finished exactly like job
runs (see :mod:`.outbox`): by any relay, under a lease, retried with backoff, ``dead`` after the limit.
Because the notice is written once, by the one transaction that made the decision, a pause is told
once however many relays share the database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from ..states import AccountSignal, RunStatus
from . import runs
from .connector import Tx
from .core import StoreCore, marks, reads, writes
from .records import iso_now


@dataclass(frozen=True)
class Notice:
    """One committed account notice: the relay announces it once the commit is done."""

    id: int
    email: str
    signal: AccountSignal
    detail: dict[str, Any]
    at: str

    def json(self) -> dict[str, Any]:
        """What handlers and signal receivers get: ``id``, ``signal``, ``email``, ``at`` and the detail."""
        return {**self.detail, "id": self.id, "signal": self.signal.value, "email": self.email, "at": self.at}


def notice_from(row: dict[str, Any]) -> Notice:
    """A :class:`Notice` from its stored row."""
    detail = json.loads(row["detail"]) if row.get("detail") else {}
    return Notice(int(row["id"]), str(row["email"]), AccountSignal(row["signal"]), detail, str(row["at"]))


class NoticesMixin(StoreCore):
    """Account notices and their handler runs."""

    # -- writing (inside the unit that decided) -----------------------------------------------------

    async def _notice(self, tx: Tx, email: str, signal: AccountSignal, detail: dict[str, Any]) -> Notice:
        """Store a notice and a run per handler that wants it; tell the other relays on commit."""
        at = iso_now()
        notice_id = await tx.insert(
            "insert into account_notices (email, signal, detail, at) values (?, ?, ?, ?)",
            [email, signal.value, json.dumps(detail), at],
        )
        for name in self.routing.wanted.get(signal, ()):
            await tx.run(
                "insert into notice_runs (notice_id, handler, signal, status, attempts, next_at, "
                "created_at, updated_at) values (?, ?, ?, 'pending', 0, ?, ?, ?)",
                [notice_id, name, signal.value, time.time(), at, at],
            )
        await self._account_changed(tx, email, signal)
        return Notice(notice_id, email, signal, detail, at)

    async def _account_changed(self, tx: Tx, email: str, signal: AccountSignal | None = None) -> None:
        """Tell the other relays (the one that schedules) that an account's state moved."""
        # origin first: a relay skips its own notices without decoding them (SqlStore.subscribe)
        message = {"origin": self.origin, "kind": "account", "email": email}
        await tx.notify({**message, "signal": signal.value if signal else None})

    # -- reading ------------------------------------------------------------------------------------

    @reads
    async def notices(self, tx: Tx, email: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest notices (of one account), newest first, each with its runs."""
        where, args = (" where email = ?", [email]) if email else ("", [])
        rows = await tx.rows(f"select * from account_notices{where} order by id desc limit ?", [*args, limit])
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        runs: dict[int, list[dict[str, Any]]] = {int(i): [] for i in ids}
        for run in await tx.rows(
            f"select * from notice_runs where notice_id in ({marks(ids)}) order by id", ids
        ):
            runs[int(run["notice_id"])].append(
                {
                    "id": run["id"],
                    "name": run["handler"],
                    "status": run["status"],
                    "attempts": run["attempts"],
                    "last_error": run["last_error"],
                }
            )
        return [{**notice_from(row).json(), "handlers": runs[int(row["id"])]} for row in rows]

    # -- the outbox ---------------------------------------------------------------------------------

    @writes
    async def recover_notice_runs(self, tx: Tx) -> int:
        """At start, where this process owns the database: runs a crash left running are pending."""
        if not self.connector.exclusive:
            return 0
        return await runs.recover(tx, "notice_runs")

    @writes
    async def claim_notice_runs(
        self, tx: Tx, owner: str, now: float, limit: int, lease: float, handlers: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` due notice runs (of ``handlers``) for ``owner``; each carries its
        ``notice`` (the notice JSON)."""
        claimed = await runs.claim(tx, "notice_runs", owner, now, limit, lease, handlers)
        if not claimed:
            return []
        ids = sorted({int(run["notice_id"]) for run in claimed})
        rows = await tx.rows(f"select * from account_notices where id in ({marks(ids)})", ids)
        by_id = {int(row["id"]): notice_from(row).json() for row in rows}
        return [{**run, "notice": by_id[int(run["notice_id"])]} for run in claimed]

    @writes
    async def renew_notice_runs(self, tx: Tx, owner: str, run_ids: list[int], lease: float) -> set[int]:
        """Extend ``owner``'s leases on notice runs; the ids it still holds."""
        return await runs.renew(tx, "notice_runs", owner, run_ids, lease)

    @writes
    async def release_notice_runs(self, tx: Tx, owner: str) -> int:
        """At shutdown: ``owner``'s running notice runs are ``pending`` again, as
        :meth:`~.outbox.OutboxMixin.release_runs` does for job runs."""
        return await runs.release(tx, "notice_runs", owner)

    @reads
    async def next_notice_due(self, tx: Tx, handlers: list[str] | None = None) -> float | None:
        """When the earliest pending notice run (of ``handlers``) is due, or ``None``."""
        return await runs.next_due(tx, "notice_runs", handlers)

    @writes
    async def finish_notice_run(
        self,
        tx: Tx,
        run_id: int,
        owner: str,
        status: RunStatus,
        *,
        error: str | None = None,
        output: str | None = None,
        next_at: float | None = None,
        refund: bool = False,
    ) -> bool:
        """Record a notice run's end, as :meth:`~.outbox.OutboxMixin.finish_run` does for job runs."""
        return await runs.end(
            tx, "notice_runs", run_id, owner, runs.ending(status, error, output, next_at), refund=refund
        )
