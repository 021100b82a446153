"""The console's reads: search and paging, compare groups, idempotency keys, handler history, usage.

Every query here is portable SQL (``?`` placeholders, ``coalesce``, ``count``, ``group by``,
``lower(...) like ?``, ``case``): PostgreSQL runs it as SQLite does (whose ``lower`` is Python's on
our connections, folding every letter as PostgreSQL's does, not ASCII only). Nothing reads JSON in SQL; the
columns the console filters on (``prompt``, ``duration``, ``group_id``, ``client_ref``) are written
when a job is created (:func:`summary_columns`, migration ``m006_console``). Percentiles and rates
are computed above this package (:mod:`runway_relay.usage`), from the facts :meth:`usage_facts` reads.

The write paths keep what these read: ``create_job`` stores the summary columns and honours a
``client_ref``, ``finish_run`` records each finished try in ``handler_attempts``. The ``prompt`` and
``duration`` of jobs stored before ``m006_console`` are filled by :func:`backfill_summaries`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import NotFound
from .connector import Tx
from .core import StoreCore, marks, reads
from .records import ACTIVE_STATUSES, ENDED_STATUSES

_SHOTS = range(1, 6)


def _like(text: str) -> str:
    """``text`` with ``like``'s wildcards escaped (``escape '!'``)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def summary_columns(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``prompt`` and ``duration`` columns of a job, from its videos/create fields.

    The prompt is ``text_prompt``, or the multishot prompts joined by `` / ``; the duration is
    ``duration``, or the sum of the shot durations; ``None`` where the model decides (wan-2.2-animate).
    """
    shots = [params.get(f"multishot_prompt_{n}") for n in _SHOTS]
    texts = [params.get("text_prompt"), *shots]
    prompt = " / ".join(str(t).strip() for t in texts if isinstance(t, str) and t.strip()) or None
    duration = params.get("duration")
    if duration is None:
        lengths = [params.get(f"multishot_duration_{n}") for n in _SHOTS]
        total = sum(int(d) for d in lengths if isinstance(d, int | float) and not isinstance(d, bool))
        duration = total or None
    return {"prompt": prompt, "duration": int(duration) if duration is not None else None}


async def backfill_summaries(tx: Tx) -> None:
    """Migration step: ``prompt`` and ``duration`` for the jobs stored before the columns existed."""
    for row in await tx.rows("select id, params from jobs where prompt is null and duration is null"):
        columns = summary_columns(json.loads(row["params"]))
        if columns["prompt"] is not None or columns["duration"] is not None:
            await tx.run(
                "update jobs set prompt = ?, duration = ? where id = ?",
                [columns["prompt"], columns["duration"], row["id"]],
            )


class InsightsMixin(StoreCore):
    """Reads for the dashboard and the CLI, and the two write-path hooks they rely on."""

    # -- the job list -----------------------------------------------------------------------------

    @reads
    async def find_jobs(
        self,
        tx: Tx,
        *,
        status: str | None = None,
        model: str | None = None,
        account: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, filtered; ``q`` finds a word of the prompt (any case) or an id's beginning.

        Keyset paging: the cursor is the last id of the previous page (``id`` sorts by creation).
        """
        where, args = [], []
        for column, value in (("status", status), ("model", model), ("account", account)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if q and q.strip():
            text = q.strip()
            where.append("(lower(prompt) like ? escape '!' or id like ? escape '!')")
            args += [f"%{_like(text.lower())}%", f"{_like(text.lower())}%"]  # ids are lower-case
        if cursor:
            where.append("id < ?")
            args.append(cursor)
        sql = "select * from jobs" + (" where " + " and ".join(where) if where else "")
        rows = await tx.rows(sql + " order by id desc limit ?", [*args, limit + 1])
        page = rows[:limit]
        return await self._jobs_json(tx, page), (page[-1]["id"] if len(rows) > limit else None)

    # -- groups and idempotency keys --------------------------------------------------------------

    @reads
    async def group_jobs(self, tx: Tx, group_id: str) -> list[dict[str, Any]]:
        """The jobs of a compare group, in the order they were sent; :class:`NotFound` if none."""
        rows = await tx.rows("select * from jobs where group_id = ? order by id", [group_id])
        if not rows:
            raise NotFound(f"no group with id {group_id!r}")
        return await self._jobs_json(tx, rows)

    @reads
    async def job_by_client_ref(self, tx: Tx, client_ref: str) -> dict[str, Any] | None:
        """The job created with this idempotency key, or ``None``."""
        row = await tx.one("select * from jobs where client_ref = ?", [client_ref])
        return (await self._jobs_json(tx, [row]))[0] if row else None

    # -- handler history --------------------------------------------------------------------------

    @reads
    async def handler_history(self, tx: Tx, job_id: str) -> list[dict[str, Any]]:
        """Every finished try of the job's handler runs, oldest first (replays included)."""
        return await tx.rows(
            "select run_id, handler, round, attempt, outcome, output, error, started_at, finished_at "
            "from handler_attempts where job_id = ? order by id",
            [job_id],
        )

    # -- usage ------------------------------------------------------------------------------------

    @reads
    async def usage_facts(self, tx: Tx, since: str) -> dict[str, list[dict[str, Any]]]:
        """Raw facts of the jobs created at or after ``since`` (ISO time), for :mod:`~runway_relay.usage`.

        ``jobs``: one row per job with its model, account, status, error kind, duration, created time,
        ``started_at`` (it first left the queue), ``running_at`` and ``ended_at`` (its last end).
        ``deferrals``: one row per 429 rest of a create (model, account, at).
        """
        ended = marks(ENDED_STATUSES)
        jobs = await tx.rows(
            "select j.id, j.model, j.account, j.status, j.error_kind, j.duration, j.created_at, "
            "min(case when t.from_status = 'queued' and t.to_status not in ('cancelled', 'rejected') "
            "then t.at end) as started_at, "
            "min(case when t.to_status = 'running' then t.at end) as running_at, "
            f"max(case when t.to_status in ({ended}) then t.at end) as ended_at "
            "from jobs j left join transitions t on t.job_id = j.id where j.created_at >= ? "
            "group by j.id, j.model, j.account, j.status, j.error_kind, j.duration, j.created_at "
            "order by j.id",
            [*ENDED_STATUSES, since],
        )
        deferrals = await tx.rows(
            "select j.model, j.account, e.at from events e join jobs j on j.id = e.job_id "
            "where e.source = 'upstream' and e.kind = 'create' and e.outcome = 'deferred' and e.at >= ?",
            [since],
        )
        return {"jobs": jobs, "deferrals": deferrals}

    @reads
    async def slots_in_use(self, tx: Tx) -> list[dict[str, Any]]:
        """Every account (known, or that a job ran on) with its slots taken now (running jobs and
        creates in flight) and its ``maxJobs`` (``None`` when not known)."""
        taken = await tx.rows(
            f"select account, sum(case when status in ({marks(ACTIVE_STATUSES)}) "
            "or submitting_since is not null then 1 else 0 end) as n from jobs "
            "where account is not null group by account",
            list(ACTIVE_STATUSES),
        )
        known = await tx.rows("select email, max_jobs from accounts")
        counts = {str(r["account"]): int(r["n"]) for r in taken}
        slots = [
            {"email": r["email"], "in_use": counts.pop(r["email"], 0), "max_jobs": r["max_jobs"]}
            for r in known
        ]
        slots += [{"email": email, "in_use": n, "max_jobs": None} for email, n in counts.items()]
        return sorted(slots, key=lambda s: s["email"])
