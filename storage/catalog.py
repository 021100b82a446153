"""Artifacts, accounts, assets and the numbers behind /metrics and /healthz."""

from __future__ import annotations

from typing import Any

from .connector import Tx
from .core import StoreCore, reads, writes
from .records import iso_now


class CatalogMixin(StoreCore):
    """Artifacts, accounts, assets and the numbers behind /metrics and /healthz."""

    # -- artifacts, accounts, assets ------------------------------------------------------------

    @reads
    async def artifact(self, tx: Tx, job_id: str, url: str) -> dict[str, Any] | None:
        """The stored artifact for ``url`` of a job, if it was downloaded."""
        return await tx.one("select * from artifacts where job_id = ? and url = ?", [job_id, url])

    @writes
    async def add_artifact(
        self, tx: Tx, job_id: str, attempt: int, url: str, path: str, size: int, sha256: str
    ) -> None:
        """Record a complete, size-checked file on disk."""
        await tx.run(
            "insert into artifacts (job_id, attempt, url, path, size, sha256, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?) on conflict (job_id, url) do update set "
            "path = excluded.path, size = excluded.size, sha256 = excluded.sha256",
            [job_id, attempt, url, path, size, sha256, iso_now()],
        )

    @writes
    async def save_accounts(self, tx: Tx, accounts: dict[str, int]) -> None:
        """Remember each account's ``maxJobs`` (email → capacity); nothing else is kept."""
        now = iso_now()
        for email, max_jobs in accounts.items():
            await tx.run(
                "insert into accounts (email, max_jobs, capacity, updated_at) values (?, ?, ?, ?) "
                "on conflict (email) do update set "
                "max_jobs = excluded.max_jobs, updated_at = excluded.updated_at",
                [email, max_jobs, max_jobs, now],
            )

    @writes
    async def save_capacity(self, tx: Tx, email: str, capacity: int, resting_until: float) -> None:
        """Keep an account's learned capacity and rest, so a relay taking over scheduling starts there."""
        await tx.run(
            "update accounts set capacity = ?, backoff_until = ?, updated_at = ? where email = ?",
            [capacity, resting_until, iso_now(), email],
        )

    @reads
    async def accounts(self, tx: Tx) -> dict[str, dict[str, Any]]:
        """Known accounts by email."""
        return {row["email"]: row for row in await tx.rows("select * from accounts order by email")}

    @writes
    async def save_asset(
        self, tx: Tx, asset_id: str, account: str | None, name: str, media_type: str | None
    ) -> None:
        """Remember which account holds an uploaded asset."""
        await tx.run(
            "insert into assets (asset_id, account, name, media_type, created_at) values (?, ?, ?, ?, ?) "
            "on conflict (asset_id) do update set account = excluded.account, name = excluded.name, "
            "media_type = excluded.media_type",
            [asset_id, account, name, media_type, iso_now()],
        )

    @reads
    async def asset_account(self, tx: Tx, asset_id: str) -> str | None:
        """The account an asset was uploaded to, if we uploaded it."""
        row = await tx.one("select account from assets where asset_id = ?", [asset_id])
        return row["account"] if row else None

    # -- numbers --------------------------------------------------------------------------------

    @reads
    async def job_counts(self, tx: Tx) -> dict[str, int]:
        """Jobs by status, from the counts kept as jobs move (a few rows, whatever the table's size)."""
        rows = await tx.rows("select status, n from job_counts where n <> 0")
        return {str(r["status"]): int(r["n"]) for r in rows}
