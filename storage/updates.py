"""Updates from upstream: callbacks and polls, through the state machine.

Each update's writes (event, job state, transition, outbox rows) are atomic; updates arriving together
share one transaction and one fsync (group commit, see :func:`~.base._grouped`), and every caller is
answered only after the commit that holds its update.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from ..errors import NotFound
from ..states import (
    ACTIVE,
    Status,
    on_update,
)
from ..taskparse import ArtifactRef, TaskUpdate
from .base import StoreBase, _grouped, _on_writer, token_hash
from .records import IngestResult, iso_now


def _text(value: str | None) -> str | None:
    """SQLite stores valid UTF-8 only: lone surrogates (JSON escapes such as ``\\ud800``) become ``?``."""
    if value is None:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode()
    return value


def _storable(update: TaskUpdate) -> TaskUpdate:
    """The update with every text field storable (see :func:`_text`)."""
    texts = (update.task_id, update.raw_status, update.progress_text, update.error, update.reply_ref)
    if all(t is None or t.isascii() for t in texts) and not update.artifacts:
        return update  # the common case, checked in C: nothing to replace
    artifacts = tuple(
        ArtifactRef(str(_text(a.url)), a.size, _text(a.asset_id), _text(a.preview_url))
        for a in update.artifacts
    )
    return replace(
        update,
        task_id=_text(update.task_id),
        raw_status=_text(update.raw_status),
        progress_text=_text(update.progress_text),
        error=_text(update.error),
        reply_ref=_text(update.reply_ref),
        artifacts=artifacts,
    )


class UpdatesMixin(StoreBase):
    """Updates from upstream: callbacks and polls, through the state machine."""

    # -- updates from upstream ------------------------------------------------------------------

    @_grouped
    def ingest_callback(self, token: str, update: TaskUpdate, body: str) -> IngestResult:
        """Match a callback by its token (and replyRef) and apply it atomically, committed on return."""
        # The attempt and its job in one statement: this is the hottest read of the relay.
        rows = self._rows(
            "select a.attempt as token_attempt, a.reply_ref as token_reply_ref, jobs.* "
            "from attempts a join jobs on jobs.id = a.job_id where a.token_hash = ?",
            [token_hash(token)],
        )
        if not rows:
            raise NotFound("unknown callback token")
        job = rows[0]
        attempt, reply_ref = job.pop("token_attempt"), job.pop("token_reply_ref")
        if update.reply_ref is not None and update.reply_ref != reply_ref:
            raise NotFound("the callback's replyRef does not belong to this token")
        return self._ingest(job, int(attempt), update, body, "callback")

    @_grouped
    def ingest_poll(self, job_id: str, attempt: int, update: TaskUpdate, body: str) -> IngestResult:
        """Apply what ``GET tasks/{taskId}`` answered, exactly as a callback would be applied."""
        return self._ingest(self._job_row(job_id), attempt, update, body, "poll")

    def _ingest(
        self, job: dict[str, Any], attempt: int, update: TaskUpdate, body: str, source: str
    ) -> IngestResult:
        update = _storable(update)
        job_id = job["id"]
        now = time.time()
        at = iso_now()
        if update.status is None:
            self._event(
                job,
                source,
                "task",
                "ignored",
                detail=f"status {update.raw_status!r}",
                body=body,
                attempt=attempt,
                at=at,
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
            at=at,
        )
        extra: dict[str, Any] = {"next_poll_at": None, "poll_tries": 0}
        if attempt == job["attempt"]:
            extra["last_update_at"] = now
        if not decision.applied:
            if attempt == job["attempt"]:
                self._update_job(job_id, extra)
            return IngestResult(job_id, decision.outcome.value, None, None)
        if update.task_id and not job["task_id"]:
            extra["task_id"] = update.task_id
        if update.progress_text:
            extra["progress_text"] = update.progress_text
        if decision.state.terminal:  # "Generating (80%)" is no longer true once the task ended
            extra["progress_text"] = None
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
        transition, row = self._apply_row(job, decision, extra, at)
        brief = {key: row[key] for key in ("id", "status", "account", "task_id")}
        return IngestResult(
            job_id,
            decision.outcome.value,
            decision.signal,
            transition,
            self._job_json(row) if self._wants_job_json(decision.signal) else None,
            status_changed=row["status"] != job["status"],
            brief=brief,
        )

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
