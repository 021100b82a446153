"""Retention: removing the history of jobs that ended long ago, a small batch per transaction.

:meth:`RetentionMixin.prune_batch` takes the oldest finished jobs (by ``updated_at``) past a cutoff
and deletes their events, transitions, handler runs and handler attempts; the job row stays, marked
``pruned_at``, so ``GET /api/jobs/{id}`` still answers (its result: status, error, artifact URLs).
With ``jobs`` the rows of the job go too (attempts, artifacts, moderation events, ``job_counts``
kept in step). Each batch is one short transaction, so a serving relay's callbacks wait for one batch
at most, never for the whole prune; the caller (:mod:`runway_relay.retention`) loops, and removes
files after the commit that dropped their rows.

A handler run that is pending or running is never touched, nor is its job.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..states import TERMINAL, RunStatus
from .connector import Tx
from .core import StoreCore, marks, writes
from .records import iso_now

# Spelled as in the partial index idx_jobs_ended_updated_at (m008), or the index would not be used.
ENDED = "status in ('cancelled', 'failed', 'rejected', 'succeeded')"
assert {s.value for s in TERMINAL} == {"cancelled", "failed", "rejected", "succeeded"}
_BUSY = (RunStatus.PENDING.value, RunStatus.RUNNING.value)
# Tables prune deletes from: what is worth a VACUUM (ANALYZE) afterwards on PostgreSQL.
PRUNED_TABLES = (
    "events",
    "transitions",
    "handler_runs",
    "handler_attempts",
    "jobs",
    "attempts",
    "artifacts",
    "moderation_events",
)


@dataclass(frozen=True)
class PruneBatch:
    """What one batch did: rows removed per table, files to remove, and where the next one starts."""

    removed: Counter[str] = field(default_factory=Counter)
    files: tuple[str, ...] = ()  # paths of the artifact rows deleted (the caller removes the files)
    after: tuple[str, str] | None = None  # (updated_at, id) of the last job taken; None: nothing left


class RetentionMixin(StoreCore):
    """Pruning the history of old finished jobs."""

    @writes
    async def prune_batch(
        self,
        tx: Tx,
        cutoff: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 100,
        jobs: bool = False,
        files: bool = False,
    ) -> PruneBatch:
        """Prune up to ``limit`` finished jobs last updated before ``cutoff`` (ISO time), oldest first,
        starting past ``after``; one transaction. ``jobs``: delete the job rows too; ``files``: delete
        the artifact rows and return their paths."""
        picked = await self._prunable(tx, cutoff, after, limit, jobs=jobs, files=files)
        if not picked:
            return PruneBatch()
        ids = [row["id"] for row in picked]
        removed: Counter[str] = Counter()
        removed["handler_attempts"] = await tx.execute(
            f"delete from handler_attempts where job_id in ({marks(ids)}) and run_id in "
            f"(select id from handler_runs where job_id in ({marks(ids)}) and status not in (?, ?))",
            [*ids, *ids, *_BUSY],
        )
        removed["handler_runs"] = await tx.execute(
            f"delete from handler_runs where job_id in ({marks(ids)}) and status not in (?, ?)",
            [*ids, *_BUSY],
        )
        # A run that became busy since it was picked (a replay) keeps its transition: its foreign key.
        removed["transitions"] = await tx.execute(
            f"delete from transitions where job_id in ({marks(ids)}) and not exists "
            "(select 1 from handler_runs r where r.transition_id = transitions.id)",
            ids,
        )
        removed["events"] = await tx.execute(f"delete from events where job_id in ({marks(ids)})", ids)
        paths: tuple[str, ...] = ()
        if files or jobs:
            arts = await tx.rows(f"select path from artifacts where job_id in ({marks(ids)})", ids)
            paths = tuple(str(a["path"]) for a in arts if a["path"]) if files else ()
            removed["artifacts"] = await tx.execute(
                f"delete from artifacts where job_id in ({marks(ids)})", ids
            )
        if jobs:
            await self._delete_jobs(tx, picked, removed)
        else:
            removed["jobs_compacted"] = await tx.execute(
                f"update jobs set pruned_at = ?, avoid_accounts = null where id in ({marks(ids)}) "
                "and pruned_at is null",
                [iso_now(), *ids],
            )
        last = picked[-1]
        return PruneBatch(+removed, paths, (str(last["updated_at"]), str(last["id"])))

    async def _prunable(
        self, tx: Tx, cutoff: str, after: tuple[str, str] | None, limit: int, *, jobs: bool, files: bool
    ) -> list[dict[str, Any]]:
        """The next finished jobs to prune, oldest first, locked; none with a busy handler run."""
        where = [ENDED, "updated_at < ?"]
        args: list[Any] = [cutoff]
        if after is not None:
            where.append("(updated_at, id) > (?, ?)")
            args += after
        if not jobs and files:  # a job pruned before still has its files to go
            where.append("(pruned_at is null or exists (select 1 from artifacts a where a.job_id = jobs.id))")
        elif not jobs:
            where.append("pruned_at is null")
        where.append(
            "not exists (select 1 from handler_runs r where r.job_id = jobs.id and r.status in (?, ?))"
        )
        return await tx.rows(
            f"select id, status, updated_at from jobs{tx.ended_jobs_index} where {' and '.join(where)} "
            f"order by updated_at, id limit ?{tx.for_update}",
            [*args, *_BUSY, limit],
        )

    async def _delete_jobs(self, tx: Tx, picked: list[dict[str, Any]], removed: Counter[str]) -> None:
        """Delete the job rows (and what refers to them), keeping ``job_counts`` in step."""
        ids = [row["id"] for row in picked]
        # A job whose run turned busy after it was picked keeps its row (its run refers to it).
        kept = {
            str(r["job_id"])
            for r in await tx.rows(
                f"select distinct job_id from handler_runs where job_id in ({marks(ids)})", ids
            )
        }
        gone = [row for row in picked if row["id"] not in kept]
        if not gone:
            return
        ids = [row["id"] for row in gone]
        removed["attempts"] = await tx.execute(f"delete from attempts where job_id in ({marks(ids)})", ids)
        removed["moderation_events"] = await tx.execute(
            f"delete from moderation_events where job_id in ({marks(ids)})", ids
        )
        removed["jobs_deleted"] = await tx.execute(f"delete from jobs where id in ({marks(ids)})", ids)
        for status, n in Counter(str(row["status"]) for row in gone).items():
            await self._count(tx, status, -n)
