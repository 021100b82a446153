"""Updates from upstream: callbacks and polls, through the state machine.

Each update's writes (event, job state, transition, outbox rows) are atomic; updates arriving together
may share one commit (see :func:`~.core.grouped`), and every caller is
answered only after the commit that holds its update.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from ..errors import NotFound
from ..states import Outcome, Status, on_update
from ..taskparse import ArtifactRef, TaskUpdate, account_of
from .accounts import AccountsMixin
from .connector import Tx
from .core import grouped, marks, reads, token_hash, writes
from .records import ACTIVE_STATUSES, IngestResult, iso_now

BODY_MAX = 64 * 1024  # bytes of a callback's body kept in its event; the rest is cut off (noted)


def capped(body: str, limit: int = BODY_MAX) -> str:
    """``body`` when it fits in ``limit`` bytes of UTF-8; else its head and a note of the full size.

    One callback of several MiB is evidence enough in its first 64 KiB; keeping all of it let a replay
    storm grow the database by hundreds of MB.
    """
    if len(body) <= limit // 4 or (len(body) <= limit and body.isascii()):
        return body  # the common case, decided without encoding
    raw = body.encode()
    if len(raw) <= limit:
        return body
    head = raw[:limit].decode("utf-8", "ignore")  # never split a character
    return f"{head}\n…[cut: the body was {len(raw)} bytes, the first {limit} are kept]"


def _text(value: str | None) -> str | None:
    """Text both databases store: valid UTF-8 (lone surrogates such as ``\\ud800`` become ``?``) and
    no NUL characters (PostgreSQL refuses them in text)."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    try:
        value.encode()
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode()
    return value


def _storable(update: TaskUpdate) -> TaskUpdate:
    """The update with every text field storable (see :func:`_text`)."""
    texts = (update.task_id, update.raw_status, update.progress_text, update.error, update.reply_ref)
    if all(t is None or (t.isascii() and "\x00" not in t) for t in texts) and not update.artifacts:
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


class UpdatesMixin(AccountsMixin):
    """Updates from upstream: callbacks and polls, through the state machine."""

    @grouped
    async def ingest_callback(self, tx: Tx, token: str, update: TaskUpdate, body: str) -> IngestResult:
        """Match a callback by its token (and replyRef) and apply it atomically, committed on return."""
        # The attempt and its job in one statement: this is the hottest read of the relay. Only the job
        # row is locked: a create's answer locks the job, then updates the attempt, so locking the
        # attempt here too would take the two locks in the other order (a deadlock on PostgreSQL).
        lock = f"{tx.for_update} of jobs" if tx.for_update else ""
        job = await tx.one(
            "select a.attempt as token_attempt, a.reply_ref as token_reply_ref, jobs.* "
            f"from attempts a join jobs on jobs.id = a.job_id where a.token_hash = ?{lock}",
            [token_hash(token)],
        )
        if job is None:
            raise NotFound("unknown callback token")
        attempt, reply_ref = job.pop("token_attempt"), job.pop("token_reply_ref")
        if update.reply_ref is not None and update.reply_ref != reply_ref:
            raise NotFound("the callback's replyRef does not belong to this token")
        return await self._ingest(tx, job, int(attempt), update, body, "callback")

    @grouped
    async def ingest_poll(
        self, tx: Tx, job_id: str, attempt: int, update: TaskUpdate, body: str
    ) -> IngestResult:
        """Apply what ``GET tasks/{taskId}`` answered, exactly as a callback would be applied."""
        return await self._ingest(
            tx, await self._job_row(tx, job_id, lock=True), attempt, update, body, "poll"
        )

    async def _ingest(
        self, tx: Tx, job: dict[str, Any], attempt: int, update: TaskUpdate, body: str, source: str
    ) -> IngestResult:
        update = _storable(update)
        if "\x00" in body:  # the raw text of a body that parsed: valid UTF-8, but PostgreSQL refuses NUL
            body = body.replace("\x00", "\ufffd")
        job_id = job["id"]
        now = time.time()
        at = iso_now()
        if update.status is None:
            detail = f"status {update.raw_status!r}"
            await self._event(
                tx, job, source, "task", "ignored", detail=detail, body=capped(body), attempt=attempt, at=at
            )
            return IngestResult(job_id, "ignored")
        decision = on_update(self._state(job), attempt, update.status, update.progress)
        # A duplicate says nothing its first copy did not: its event is kept (it is counted and shown),
        # its body is not, so replays cannot grow the database by their size.
        kept = None if decision.outcome is Outcome.DUPLICATE else capped(body)
        await self._event(
            tx,
            job,
            source,
            "task",
            decision.outcome.value,
            status=update.status.value,
            progress=update.progress,
            detail=update.progress_text,
            body=kept,
            attempt=attempt,
            at=at,
        )
        extra: dict[str, Any] = {"next_poll_at": None, "poll_tries": 0}
        if attempt == job["attempt"]:
            extra["last_update_at"] = now
        if not decision.applied:
            if attempt == job["attempt"]:
                await self._update_job(tx, job_id, extra)
            return IngestResult(job_id, decision.outcome.value)
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
        notices: list[Any] = []
        if decision.state.status is Status.FAILED and update.moderated:
            email = job["account"] or account_of(job["task_id"] or update.task_id)
            if email:  # the moderation guard counts it against the account (storage/accounts.py)
                # Before the job's move: the scheduler hears of a pause before it hears of the freed slot.
                notices = await self._moderated(tx, email, job_id, attempt, extra["error"], now)
        moved = await self._apply(tx, job, decision, extra, at)
        return IngestResult(job_id, decision.outcome.value, moved, tuple(notices))

    @reads
    async def jobs_to_poll(
        self, tx: Tx, now: float, poll_after: float, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Active jobs silent for longer than ``poll_after`` whose next poll is due."""
        return await tx.rows(
            f"select * from jobs where status in ({marks(ACTIVE_STATUSES)}) and task_id is not null "
            "and coalesce(next_poll_at, last_update_at + ?) <= ? order by id limit ?",
            [*ACTIVE_STATUSES, poll_after, now, limit],
        )

    @writes
    async def record_poll_error(self, tx: Tx, job_id: str, next_poll_at: float, detail: str) -> None:
        """A poll failed; try again at ``next_poll_at``."""
        job = await self._job_row(tx, job_id, lock=True)
        await self._update_job(
            tx, job_id, {"next_poll_at": next_poll_at, "poll_tries": (job["poll_tries"] or 0) + 1}
        )
        await self._event(tx, job, "poll", "task", "error", detail=detail)

    @reads
    async def active_jobs(self, tx: Tx) -> list[dict[str, Any]]:
        """Every job that is neither queued nor finished (for reconciliation at start)."""
        active = list(ACTIVE_STATUSES)
        return await tx.rows(f"select * from jobs where status in ({marks(active)})", active)
