"""Jobs: create, read, list, cancel and re-submit."""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import Conflict
from ..states import (
    Status,
    TransitionError,
    on_cancel,
    on_resubmit,
)
from .base import StoreBase, _on_writer
from .insights import summary_columns
from .records import (
    iso_now,
    new_job_id,
)


class JobsMixin(StoreBase):
    """Jobs: create, read, list, cancel and re-submit."""

    @_on_writer
    def create_job(
        self,
        model: str,
        params: dict[str, Any],
        handlers: list[str] | None,
        account: str | None = None,
        *,
        group_id: str | None = None,
        client_ref: str | None = None,
    ) -> dict[str, Any]:
        """Store a new ``queued`` job (attempt 1) and return its JSON.

        A ``client_ref`` already stored is the same job: that job is returned and nothing is written.
        """
        if client_ref is not None and (known := self._job_by_client_ref(client_ref)) is not None:
            return self._job_json(known)
        job_id = new_job_id()
        now = iso_now()
        with self.db.atomic():
            self.db["jobs"].insert(
                {
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
                    "next_submit_at": 0.0,
                    **summary_columns(params),
                    "group_id": group_id,
                    "client_ref": client_ref,
                }
            )
            self._new_attempt(job_id, 1)
            job = self._job_row(job_id)
            self._event(job, "api", "created", "applied", status="queued")
        return self._job_json(job)

    @_on_writer
    def get_job(self, job_id: str, events: bool = False) -> dict[str, Any]:
        """The job JSON; with ``events`` its callbacks, upstream exchanges and transitions too."""
        job = self._job_row(job_id)
        data = self._job_json(job)
        if events:
            data["events"] = [
                {k: v for k, v in row.items() if k != "job_id"}
                for row in self.db.query(
                    "select id, attempt, source, kind, outcome, status, progress, detail, at "
                    "from events where job_id = ? order by id",
                    [job_id],
                )
            ]
            data["transitions"] = list(
                self.db.query(
                    "select id, attempt, from_status, to_status, progress, signal, at "
                    "from transitions where job_id = ? order by id",
                    [job_id],
                )
            )
        return data

    @_on_writer
    def job_row(self, job_id: str) -> dict[str, Any]:
        """The raw stored row (internal fields included) for the scheduler and handlers."""
        return self._job_row(job_id)

    @_on_writer
    def last_transition(self, job_id: str) -> dict[str, Any] | None:
        """The job's most recent transition (id, to_status, signal), or ``None``."""
        rows = list(
            self.db.query(
                "select id, to_status, signal from transitions where job_id = ? order by id desc limit 1",
                [job_id],
            )
        )
        return rows[0] if rows else None

    @_on_writer
    def list_jobs(
        self, status: str | None = None, model: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first, ``limit`` at a time; the cursor is the last id of the previous page."""
        where, args = [], []
        for column, value in (("status", status), ("model", model)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if cursor:
            where.append("id < ?")
            args.append(cursor)
        sql = "select * from jobs" + (" where " + " and ".join(where) if where else "")
        rows = list(self.db.query(sql + " order by id desc limit ?", [*args, limit + 1]))
        page = rows[:limit]
        next_cursor = page[-1]["id"] if len(rows) > limit else None
        return self._jobs_json(page), next_cursor

    # -- relay's own moves ----------------------------------------------------------------------

    @_on_writer
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Move a job to ``cancelled``; raises :class:`Conflict` if it already ended."""
        with self.db.atomic():
            job = self._job_row(job_id)
            try:
                decision = on_cancel(self._state(job))
            except TransitionError as exc:
                raise Conflict(str(exc)) from None
            self._event(job, "api", "cancel", "applied", status="cancelled")
            self._apply(job, decision, {"submitting_since": None})
        return self._job_json(self._job_row(job_id))

    @_on_writer
    def record_upstream_note(
        self, job_id: str, kind: str, outcome: str, detail: str, body: str | None = None
    ) -> None:
        """Keep an upstream exchange (cancel, scheduler lookup…) in the job's history."""
        self._event(self._job_row(job_id), "upstream", kind, outcome, detail=detail, body=body)

    @_on_writer
    def resubmit(self, job_id: str, max_attempts: int) -> dict[str, Any] | None:
        """Open the next attempt of a failed job, if it has attempts left; ``None`` otherwise."""
        with self.db.atomic():
            job = self._job_row(job_id)
            if job["status"] != Status.FAILED.value or int(job["attempt"]) > max_attempts:
                return None
            decision = on_resubmit(self._state(job))
            self._new_attempt(job_id, decision.state.attempt)
            self._event(
                job,
                "handler",
                "resubmit",
                "applied",
                status="queued",
                detail=f"attempt {decision.state.attempt}",
            )
            self._apply(
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
                    "last_update_at": time.time(),
                },
            )
        return self._job_json(self._job_row(job_id))
