"""Updates from upstream: callbacks and polls, through the state machine, one transaction each."""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import NotFound
from ..states import (
    ACTIVE,
    Status,
    on_update,
)
from ..taskparse import TaskUpdate
from .base import StoreBase, _on_writer, token_hash
from .records import (
    IngestResult,
)


class UpdatesMixin(StoreBase):
    """Updates from upstream: callbacks and polls, through the state machine, one transaction each."""

    # -- updates from upstream ------------------------------------------------------------------

    @_on_writer
    def ingest_callback(self, token: str, update: TaskUpdate, body: str) -> IngestResult:
        """Match a callback by its token (and replyRef) and apply it, all in one transaction."""
        rows = list(
            self.db.query(
                "select job_id, attempt, reply_ref from attempts where token_hash = ?", [token_hash(token)]
            )
        )
        if not rows:
            raise NotFound("unknown callback token")
        match = rows[0]
        if update.reply_ref is not None and update.reply_ref != match["reply_ref"]:
            raise NotFound("the callback's replyRef does not belong to this token")
        with self.db.atomic():
            return self._ingest(match["job_id"], int(match["attempt"]), update, body, "callback")

    @_on_writer
    def ingest_poll(self, job_id: str, attempt: int, update: TaskUpdate, body: str) -> IngestResult:
        """Apply what ``GET tasks/{taskId}`` answered, exactly as a callback would be applied."""
        with self.db.atomic():
            return self._ingest(job_id, attempt, update, body, "poll")

    def _ingest(self, job_id: str, attempt: int, update: TaskUpdate, body: str, source: str) -> IngestResult:
        job = self._job_row(job_id)
        now = time.time()
        if update.status is None:
            self._event(
                job,
                source,
                "task",
                "ignored",
                detail=f"status {update.raw_status!r}",
                body=body,
                attempt=attempt,
            )
            return IngestResult(job_id, "ignored", None, None)
        decision = on_update(self._state(job), attempt, update.status, update.progress)
        self._event(
            job,
            source,
            "task",
            decision.outcome.value,
            status=update.status.value,
            progress=update.progress,
            detail=update.progress_text,
            body=body,
            attempt=attempt,
        )
        extra: dict[str, Any] = {"next_poll_at": None, "poll_tries": 0}
        if attempt == job["attempt"]:
            extra["last_update_at"] = now
        if not decision.applied:
            if attempt == job["attempt"]:
                self.db["jobs"].update(job_id, extra)
            return IngestResult(job_id, decision.outcome.value, None, None)
        if update.task_id and not job["task_id"]:
            extra["task_id"] = update.task_id
        if update.progress_text:
            extra["progress_text"] = update.progress_text
        if decision.state.status is Status.FAILED:
            extra["error"] = update.error or "the task failed upstream without a message"
            extra["error_kind"] = "moderation" if update.moderated else "upstream"
        if decision.state.status is Status.SUCCEEDED and update.artifacts:
            extra["upstream_artifacts"] = json.dumps(
                [
                    {"url": a.url, "size": a.size, "asset_id": a.asset_id, "preview_url": a.preview_url}
                    for a in update.artifacts
                ]
            )
        transition = self._apply(job, decision, extra)
        return IngestResult(job_id, decision.outcome.value, decision.signal, transition)

    @_on_writer
    def jobs_to_poll(self, now: float, poll_after: float, limit: int = 100) -> list[dict[str, Any]]:
        """Active jobs silent for longer than ``poll_after`` whose next poll is due."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return list(
            self.db.query(
                f"select * from jobs where status in ({marks}) and task_id is not null "
                "and coalesce(next_poll_at, last_update_at + ?) <= ? order by id limit ?",
                [*statuses, poll_after, now, limit],
            )
        )

    @_on_writer
    def record_poll_error(self, job_id: str, next_poll_at: float, detail: str) -> None:
        """A poll failed; try again at ``next_poll_at``."""
        with self.db.atomic():
            job = self._job_row(job_id)
            self.db["jobs"].update(
                job_id, {"next_poll_at": next_poll_at, "poll_tries": (job["poll_tries"] or 0) + 1}
            )
            self._event(job, "poll", "task", "error", detail=detail)

    @_on_writer
    def active_jobs(self) -> list[dict[str, Any]]:
        """Every job that is neither queued nor finished (for reconciliation at start)."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return list(self.db.query(f"select * from jobs where status in ({marks})", statuses))
