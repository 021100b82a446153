"""Leases: how relays sharing a database elect the one that schedules.

A lease is a row (name, holder, expires_at) that its holder renews well before it ends. Whoever asks
for a lease gets it when nobody holds it or the holder let it run out; a holder that dies stops
renewing, and another relay takes over within a lease's length. Times come from the database's clock
(``tx.now``), so relays on machines whose clocks disagree still agree on when a lease ends.
"""

from __future__ import annotations

from typing import Any

from .connector import Tx
from .core import StoreCore, reads, writes


class LeasesMixin(StoreCore):
    """Leases: how relays sharing a database elect the one that schedules."""

    @writes
    async def lead(self, tx: Tx, name: str, holder: str, seconds: float) -> bool:
        """Take or renew lease ``name`` for ``seconds``; True while ``holder`` holds it."""
        row = await tx.one(
            "insert into leases (name, holder, expires_at, epoch) "
            f"values (?, ?, {tx.now} + ?, 1) on conflict (name) do update set "
            "holder = excluded.holder, expires_at = excluded.expires_at, "
            "epoch = case when leases.holder = excluded.holder then leases.epoch else leases.epoch + 1 end "
            f"where leases.holder = excluded.holder or leases.expires_at < {tx.now} returning holder",
            [name, holder, seconds],
        )
        return row is not None and row["holder"] == holder

    @writes
    async def resign(self, tx: Tx, name: str, holder: str) -> None:
        """Give lease ``name`` up at once (a clean shutdown), so another relay need not wait it out."""
        await tx.run("delete from leases where name = ? and holder = ?", [name, holder])

    @writes
    async def probe_write(self, tx: Tx, name: str, seconds: float) -> None:
        """``/readyz``: a real write, committed — (re)write lease ``name`` (say ``ready:<relay id>``)
        to end in ``seconds``, and sweep the ``ready:`` rows of relays gone for good. Raises
        :class:`~runway_relay.errors.StorageUnavailable` when the database cannot take writes."""
        await tx.run(
            "insert into leases (name, holder, expires_at, epoch) "
            f"values (?, ?, {tx.now} + ?, 1) on conflict (name) do update set "
            "expires_at = excluded.expires_at, epoch = leases.epoch + 1",
            [name, name, seconds],
        )
        await tx.run(
            f"delete from leases where name like 'ready:%' and name <> ? and expires_at < {tx.now}", [name]
        )

    @reads
    async def lease(self, tx: Tx, name: str) -> dict[str, Any] | None:
        """Who holds lease ``name`` and for how many more seconds (``None`` when nobody does)."""
        return await tx.one(
            f"select holder, epoch, expires_at - {tx.now} as remaining from leases "
            f"where name = ? and expires_at > {tx.now}",
            [name],
        )

    @writes
    async def recover_leases(self, tx: Tx) -> int:
        """At start, where this process owns the database (SQLite): leases left by a process that is
        gone are void. Shared databases let them run out. Returns how many were dropped."""
        if not self.connector.exclusive:
            return 0
        return await tx.execute("delete from leases")
