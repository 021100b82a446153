"""The scheduler's side: marking creates in flight and recording their answers.

A job is *submitting* (``jobs.submitting_since`` set) from just before its ``videos/create`` call until
the answer is recorded; its replyRef and callback token hash are on its attempt row by then. A job left
submitting by a crash is what :meth:`SubmitMixin.submitting_jobs` returns at the next start.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..states import (
    ACTIVE,
    TERMINAL,
    Status,
    TransitionError,
    on_rejected,
    on_submitted,
)
from .base import StoreBase, _on_writer, token_hash
from .records import (
    SubmitTicket,
    iso_now,
    new_token,
)

_ACTIVE = tuple(sorted(s.value for s in ACTIVE))
_ACTIVE_MARKS = ",".join("?" * len(_ACTIVE))


class SubmitMixin(StoreBase):
    """The scheduler's side: marking creates in flight and recording their answers."""

    # -- submitting -----------------------------------------------------------------------------

    @_on_writer
    def begin_submit(self, job_id: str, account: str | None) -> SubmitTicket | None:
        """Mark a queued job as being created upstream, before the call; ``None`` if not queued."""
        job = self._job_row(job_id)
        if job["status"] != Status.QUEUED.value or job["submitting_since"]:
            return None
        token = new_token()
        with self.db.atomic():
            self._update_job(
                job_id,
                {
                    "submitting_since": time.time(),
                    "account": account,
                    "submit_tries": (job["submit_tries"] or 0) + 1,
                },
            )
            self.db.execute(
                "update attempts set token_hash = ?, account = ? where job_id = ? and attempt = ?",
                [token_hash(token), account, job_id, job["attempt"]],
            )
        reply_ref = self._rows(
            "select reply_ref from attempts where job_id = ? and attempt = ?", [job_id, job["attempt"]]
        )[0]["reply_ref"]
        return SubmitTicket(job_id, int(job["attempt"]), reply_ref, token, json.loads(job["params"]), account)

    @_on_writer
    def record_submitted(
        self, ticket: SubmitTicket, task_id: str, account: str | None, body: str | None, how: str = ""
    ) -> dict[str, Any]:
        """The create was accepted: keep the task id and move ``queued`` → ``submitted``.

        If the job was cancelled meanwhile, the task id is still kept (so its slot can be freed) and
        the create is recorded ``stale``; the caller sees ``cancelled`` in the answer.
        """
        detail = f"{task_id} {how}".strip()
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self.db.execute(
                "update attempts set task_id = ?, account = ?, submitted_at = ? "
                "where job_id = ? and attempt = ?",
                [task_id, account, iso_now(), ticket.job_id, ticket.attempt],
            )
            if job["attempt"] != ticket.attempt or Status(job["status"]) in TERMINAL:
                self._update_job(
                    ticket.job_id, {"task_id": task_id, "account": account, "submitting_since": None}
                )
                self._event(job, "upstream", "create", "stale", detail=detail, body=body)
                return self._job_json(self._job_row(ticket.job_id))
            extra = {
                "task_id": task_id,
                "account": account,
                "submitting_since": None,
                "last_update_at": time.time(),
                "next_poll_at": None,
                "poll_tries": 0,
            }
            decision = on_submitted(self._state(job))
            status = decision.state.status.value
            self._event(
                job, "upstream", "create", decision.outcome.value, status=status, detail=detail, body=body
            )
            self._apply(job, decision, extra)
        return self._job_json(self._job_row(ticket.job_id))

    @_on_writer
    def record_deferred(
        self, ticket: SubmitTicket, retry_at: float, reason: str, body: str | None = None
    ) -> None:
        """The create was not accepted now (429, or not found upstream): the job stays queued."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self._update_job(ticket.job_id, {"submitting_since": None, "next_submit_at": retry_at})
            self._event(job, "upstream", "create", "deferred", detail=reason, body=body)

    @_on_writer
    def record_create_retry(self, ticket: SubmitTicket, reason: str, body: str | None = None) -> None:
        """A create failed in a way that may hide an acceptance (5xx, timeout): it stays in flight.

        ``submitting_since`` moves to now, so a restart treats the next try as freshly sent.
        """
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            if job["attempt"] == ticket.attempt and job["submitting_since"]:
                self._update_job(ticket.job_id, {"submitting_since": time.time()})
            self._event(job, "upstream", "create", "transient", detail=reason, body=body)

    @_on_writer
    def still_submitting(self, ticket: SubmitTicket) -> bool:
        """True while the ticket's create is still wanted (not cancelled, same attempt)."""
        job = self._job_row(ticket.job_id)
        return (
            job["attempt"] == ticket.attempt
            and bool(job["submitting_since"])
            and job["status"] == Status.QUEUED.value
        )

    @_on_writer
    def record_rejected(self, ticket: SubmitTicket, message: str, body: str | None) -> None:
        """The upstream refused the create (400/401/402): ``rejected``, message kept."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self._event(job, "upstream", "create", "rejected", detail=message, body=body)
            try:
                decision = on_rejected(self._state(job))
            except TransitionError:
                self._update_job(ticket.job_id, {"submitting_since": None})
                return
            self._apply(job, decision, {"error": message, "error_kind": "rejected", "submitting_since": None})

    @_on_writer
    def record_lookup(self, job_id: str, outcome: str, detail: str) -> None:
        """Keep a ``GET scheduler/`` lookup made for this job (after a crash or a failed create)."""
        self._event(self._job_row(job_id), "upstream", "scheduler", outcome, detail=detail)

    # -- what the scheduler looks at -------------------------------------------------------------

    @_on_writer
    def queue_view(self, now: float, limit: int = 200) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """In one read: queued jobs that may be created now (oldest first: id, params), and the jobs
        holding an upstream slot, running or with their create in flight (id, account, explore)."""
        queued = self._rows(
            "select id, params from jobs where status = 'queued' and submitting_since is null "
            "and coalesce(next_submit_at, 0) <= ? order by id limit ?",
            [now, limit],
        )
        if not queued:
            return [], []
        explore = "coalesce(json_extract(params, '$.exploreMode'), 0) = 1 as explore"
        slots = self._rows(
            f"select id, account, {explore} from jobs where status in ({_ACTIVE_MARKS}) "
            f"union select id, account, {explore} from jobs where submitting_since is not null",
            list(_ACTIVE),
        )
        return queued, slots

    @_on_writer
    def submitting_jobs(self) -> list[dict[str, Any]]:
        """Jobs whose create call was in flight when the process stopped (with their replyRef)."""
        return self._rows(
            "select j.id, j.attempt, j.status, j.account, j.task_id, j.submitting_since, a.reply_ref "
            "from jobs j join attempts a on a.job_id = j.id and a.attempt = j.attempt "
            "where j.submitting_since is not null order by j.id"
        )
