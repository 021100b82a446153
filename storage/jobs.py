"""Jobs: create, read, list, cancel and re-submit."""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import Conflict
from ..states import Status, TransitionError, on_cancel, on_resubmit
from .connector import Tx
from .core import StoreCore, marks, reads, writes
from .insights import summary_columns
from .records import ENDED_STATUSES, Moved, iso_now, new_job_id
from .retention import ENDED


def _same_request(known: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``known``, the job stored under a client_ref, if ``params`` ask for the same thing."""
    if json.loads(known["params"]) != params:
        raise Conflict(
            f"client_ref {known['client_ref']!r} belongs to job {known['id']}, which has other "
            "parameters; use a new client_ref for a new job"
        )
    return known


class JobsMixin(StoreCore):
    """Jobs: create, read, list, cancel and re-submit."""

    @writes
    async def create_job(
        self,
        tx: Tx,
        model: str,
        params: dict[str, Any],
        handlers: list[str] | None,
        account: str | None = None,
        *,
        group_id: str | None = None,
        client_ref: str | None = None,
    ) -> Moved:
        """Store a new ``queued`` job (attempt 1).

        A ``client_ref`` already stored is the same job: its row comes back (``previous`` is its status,
        so nothing is announced as new) and nothing is written. The same ref with other parameters is
        a mistake the client should hear of: :class:`Conflict`.
        """
        if client_ref is not None:
            known = await tx.one("select * from jobs where client_ref = ?", [client_ref])
            if known is not None:
                return Moved(_same_request(known, params), known["status"])
        job_id = new_job_id()
        now = iso_now()
        row: dict[str, Any] = {
            "id": job_id,
            "status": Status.QUEUED.value,
            "model": model,
            "params": json.dumps(params),
            "handlers": json.dumps(handlers) if handlers is not None else None,
            "account": account,
            "attempt": 1,
            "progress": 0.0,
            "created_at": now,
            "updated_at": now,
            "last_update_at": time.time(),
            "queued_at": time.time(),
            "next_submit_at": 0.0,
            "submit_tries": 0,
            "poll_tries": 0,
            **summary_columns(params),
            "group_id": group_id,
            "client_ref": client_ref,
        }
        columns = ", ".join(row)
        # on conflict: the same client_ref sent twice at once; the one that lost answers the winner's job
        sql = f"insert into jobs ({columns}) values ({', '.join('?' * len(row))}) on conflict do nothing"
        if not await tx.execute(sql, list(row.values())):
            known = await tx.one("select * from jobs where client_ref = ?", [client_ref])
            if known is None:
                raise RuntimeError(f"job {job_id} could not be stored and no job has its client_ref")
            return Moved(_same_request(known, params), known["status"])
        await self._new_attempt(tx, job_id, 1)
        await self._count(tx, Status.QUEUED.value, +1)
        await self._event(tx, row, "api", "created", "applied", status="queued", at=now)
        full = await self._job_row(tx, job_id)
        moved = Moved(full, None)
        await self._announce(tx, moved)
        return moved

    @reads
    async def get_job(self, tx: Tx, job_id: str, events: bool = False) -> dict[str, Any]:
        """The job JSON; with ``events`` its callbacks, upstream exchanges and transitions too."""
        data = (await self._jobs_json(tx, [await self._job_row(tx, job_id)]))[0]
        if events:
            data["events"] = await tx.rows(
                "select id, attempt, source, kind, outcome, status, progress, detail, at "
                "from events where job_id = ? order by id",
                [job_id],
            )
            data["transitions"] = await tx.rows(
                "select id, attempt, from_status, to_status, progress, signal, at "
                "from transitions where job_id = ? order by id",
                [job_id],
            )
        return data

    @reads
    async def jobs_moved_since(self, tx: Tx, since: str, limit: int = 200) -> list[dict[str, Any]]:
        """The job JSON of the ``limit`` jobs updated last, at or after ``since`` (an ISO time).

        Rare (a relay lost its notices), so no index of its own that every callback would update:
        finished jobs through the prune index (``ENDED`` spelled as its condition), the others
        through the status index, whose rows are few but for a long queue.
        """
        ended = await tx.rows(
            f"select * from jobs{tx.ended_jobs_index} where {ENDED} and updated_at >= ? "
            "order by updated_at desc limit ?",
            [since, limit],
        )
        others = await tx.rows(
            f"select * from jobs where status not in ({marks(ENDED_STATUSES)}) and updated_at >= ? "
            "order by updated_at desc limit ?",
            [*ENDED_STATUSES, since, limit],
        )
        rows = sorted(ended + others, key=lambda row: str(row["updated_at"]), reverse=True)[:limit]
        return await self._jobs_json(tx, rows)

    @reads
    async def job_json(self, tx: Tx, row: dict[str, Any]) -> dict[str, Any]:
        """The public job JSON of a stored row (as a write returned it), with runs and artifacts."""
        return (await self._jobs_json(tx, [row]))[0]

    @reads
    async def job_row(self, tx: Tx, job_id: str) -> dict[str, Any]:
        """The raw stored row (internal fields included) for the scheduler and handlers."""
        return await self._job_row(tx, job_id)

    # -- relay's own moves ----------------------------------------------------------------------

    @writes
    async def cancel(self, tx: Tx, job_id: str) -> Moved:
        """Move a job to ``cancelled``; raises :class:`Conflict` if it already ended."""
        job = await self._job_row(tx, job_id, lock=True)
        try:
            decision = on_cancel(self._state(job))
        except TransitionError as exc:
            raise Conflict(str(exc)) from None
        await self._event(tx, job, "api", "cancel", "applied", status="cancelled")
        return await self._apply(tx, job, decision, {"submitting_since": None})

    @writes
    async def record_upstream_note(
        self, tx: Tx, job_id: str, kind: str, outcome: str, detail: str, body: str | None = None
    ) -> None:
        """Keep an upstream exchange (cancel, scheduler lookup…) in the job's history."""
        await self._event(
            tx, await self._job_row(tx, job_id), "upstream", kind, outcome, detail=detail, body=body
        )

    @writes
    async def resubmit(self, tx: Tx, job_id: str, max_attempts: int) -> Moved | None:
        """Open the next attempt of a failed job, if it has attempts left; ``None`` otherwise."""
        job = await self._job_row(tx, job_id, lock=True)
        if job["status"] != Status.FAILED.value or int(job["attempt"]) > max_attempts:
            return None
        decision = on_resubmit(self._state(job))
        await self._new_attempt(tx, job_id, decision.state.attempt)
        await self._event(
            tx,
            job,
            "handler",
            "resubmit",
            "applied",
            status="queued",
            detail=f"attempt {decision.state.attempt}",
        )
        return await self._apply(
            tx,
            job,
            decision,
            {
                "task_id": None,
                "error": None,
                "error_kind": None,
                "progress_text": None,
                "next_submit_at": 0.0,
                "submit_tries": 0,
                "upstream_artifacts": None,
                "avoid_accounts": None,
                "last_update_at": time.time(),
                "queued_at": time.time(),
                "submitted_at": None,
            },
        )
