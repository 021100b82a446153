"""Artifacts, accounts, assets and the numbers behind /metrics."""

from __future__ import annotations

from typing import Any

from .base import StoreBase, _on_writer
from .records import (
    iso_now,
)


class CatalogMixin(StoreBase):
    """Artifacts, accounts, assets and the numbers behind /metrics."""

    # -- artifacts, accounts, assets ------------------------------------------------------------

    @_on_writer
    def artifact(self, job_id: str, url: str) -> dict[str, Any] | None:
        """The stored artifact for ``url`` of a job, if it was downloaded."""
        rows = list(self.db.query("select * from artifacts where job_id = ? and url = ?", [job_id, url]))
        return rows[0] if rows else None

    @_on_writer
    def add_artifact(self, job_id: str, attempt: int, url: str, path: str, size: int, sha256: str) -> None:
        """Record a complete, size-checked file on disk."""
        self.db.execute(
            "insert into artifacts (job_id, attempt, url, path, size, sha256, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?) on conflict (job_id, url) do update set "
            "path = excluded.path, size = excluded.size, sha256 = excluded.sha256",
            [job_id, attempt, url, path, size, sha256, iso_now()],
        )

    @_on_writer
    def save_accounts(self, accounts: dict[str, int]) -> None:
        """Remember each account's ``maxJobs`` (email → capacity); nothing else is kept."""
        now = iso_now()
        with self.db.atomic():
            for email, max_jobs in accounts.items():
                self.db.execute(
                    "insert into accounts (email, max_jobs, capacity, updated_at) "
                    "values (?, ?, ?, ?) on conflict (email) do update set "
                    "max_jobs = excluded.max_jobs, updated_at = excluded.updated_at",
                    [email, max_jobs, max_jobs, now],
                )

    @_on_writer
    def accounts(self) -> dict[str, dict[str, Any]]:
        """Known accounts by email."""
        return {row["email"]: row for row in self.db.query("select * from accounts")}

    @_on_writer
    def save_asset(self, asset_id: str, account: str | None, name: str, media_type: str | None) -> None:
        """Remember which account holds an uploaded asset."""
        self.db["assets"].upsert(
            {
                "asset_id": asset_id,
                "account": account,
                "name": name,
                "media_type": media_type,
                "created_at": iso_now(),
            },
            pk="asset_id",
        )

    @_on_writer
    def asset_account(self, asset_id: str) -> str | None:
        """The account an asset was uploaded to, if we uploaded it."""
        rows = list(self.db.query("select account from assets where asset_id = ?", [asset_id]))
        return rows[0]["account"] if rows else None

    # -- numbers --------------------------------------------------------------------------------

    @_on_writer
    def job_counts(self) -> dict[str, int]:
        """Jobs by status (cheap: read from the status index) for ``/healthz``."""
        return {
            str(r["k"]): int(r["n"])
            for r in self.db.query("select status as k, count(*) as n from jobs group by status")
        }

    @_on_writer
    def stats(self) -> dict[str, dict[str, int]]:
        """Counts for ``/metrics``."""

        def grouped(sql: str) -> dict[str, int]:
            return {str(r["k"]): int(r["n"]) for r in self.db.query(sql)}

        return {
            "jobs": grouped("select status as k, count(*) as n from jobs group by status"),
            "callbacks": grouped(
                "select outcome as k, count(*) as n from events where source = 'callback' group by outcome"
            ),
            "upstream": grouped(
                "select outcome as k, count(*) as n from events where source = 'upstream' group by outcome"
            ),
            "handler_runs": grouped("select status as k, count(*) as n from handler_runs group by status"),
        }
