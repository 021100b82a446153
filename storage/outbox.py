"""The handler outbox: claim, finish, retry, replay."""

from __future__ import annotations

import time
from typing import Any

from ..errors import NotFound
from .base import StoreBase, _on_writer
from .records import (
    iso_now,
)


class OutboxMixin(StoreBase):
    """The handler outbox: claim, finish, retry, replay."""

    # -- handler runs (the outbox) --------------------------------------------------------------

    @_on_writer
    def reset_running_runs(self) -> int:
        """After a crash, runs that were in progress become pending again."""
        cursor = self.db.execute("update handler_runs set status = 'pending' where status = 'running'")
        return cursor.rowcount

    @_on_writer
    def claim_runs(self, now: float, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` due pending runs and mark them running (attempts + 1)."""
        with self.db.atomic():
            runs = list(
                self.db.query(
                    "select * from handler_runs where status = 'pending' and next_at <= ? "
                    "order by next_at, id limit ?",
                    [now, limit],
                )
            )
            for run in runs:
                run["attempts"] = int(run["attempts"] or 0) + 1
                self.db["handler_runs"].update(
                    run["id"], {"status": "running", "attempts": run["attempts"], "updated_at": iso_now()}
                )
        return runs

    @_on_writer
    def next_run_due(self) -> float | None:
        """When the earliest pending run is due, or ``None``."""
        row = next(iter(self.db.query("select min(next_at) as t from handler_runs where status = 'pending'")))
        return row["t"]

    @_on_writer
    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        error: str | None = None,
        output: str | None = None,
        next_at: float | None = None,
    ) -> None:
        """Record a run's end: ``done``, ``pending`` (retry at ``next_at``) or ``dead``."""
        changes: dict[str, Any] = {"status": status, "last_error": error, "updated_at": iso_now()}
        if output is not None:
            changes["output"] = output
        if next_at is not None:
            changes["next_at"] = next_at
        with self.db.atomic():
            self._record_attempt(run_id, status, output, error)  # the history a replay keeps
            self.db["handler_runs"].update(run_id, changes)

    @_on_writer
    def replay(self, job_id: str, handler: str | None = None) -> list[dict[str, Any]]:
        """Queue the handler runs of the job's last transition again (one handler, or all)."""
        with self.db.atomic():
            job = self._job_row(job_id)
            rows = list(
                self.db.query(
                    "select * from handler_runs where transition_id = (select max(transition_id) "
                    "from handler_runs where job_id = ?)",
                    [job_id],
                )
            )
            if handler is not None:
                rows = [r for r in rows if r["handler"] == handler]
            if not rows:
                what = f"handler {handler!r}" if handler else "handlers"
                raise NotFound(f"job {job_id} has no {what} runs to replay")
            for row in rows:
                self.db["handler_runs"].update(
                    row["id"],
                    {
                        "status": "pending",
                        "attempts": 0,
                        "next_at": time.time(),
                        "last_error": None,
                        "updated_at": iso_now(),
                        "replays": (row.get("replays") or 0) + 1,
                    },
                )
            self._event(job, "api", "replay", "applied", detail=",".join(sorted(r["handler"] for r in rows)))
        return list(
            self.db.query(
                f"select * from handler_runs where id in ({','.join('?' * len(rows))})",
                [r["id"] for r in rows],
            )
        )
