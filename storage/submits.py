"""The scheduler's side: marking creates in flight and recording their answers."""

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
            self.db["jobs"].update(
                job_id,
                {
                    "submitting_since": time.time(),
                    "account": account,
                    "submit_tries": (job["submit_tries"] or 0) + 1,
                },
            )
            self.db["attempts"].update(
                (job_id, job["attempt"]), {"token_hash": token_hash(token), "account": account}
            )
        attempt = self.db["attempts"].get((job_id, job["attempt"]))
        return SubmitTicket(
            job_id, int(job["attempt"]), attempt["reply_ref"], token, json.loads(job["params"]), account
        )

    @_on_writer
    def record_submitted(
        self, ticket: SubmitTicket, task_id: str, account: str | None, body: str
    ) -> dict[str, Any]:
        """The create was accepted: keep the task id and move ``queued`` → ``submitted``."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self.db["attempts"].update(
                (ticket.job_id, ticket.attempt),
                {"task_id": task_id, "account": account, "submitted_at": iso_now()},
            )
            extra = {
                "task_id": task_id,
                "account": account,
                "submitting_since": None,
                "last_update_at": time.time(),
                "next_poll_at": None,
                "poll_tries": 0,
            }
            if job["attempt"] != ticket.attempt or Status(job["status"]) in TERMINAL:
                # Cancelled while the create was in flight: keep the task id so cancel can free it.
                self.db["jobs"].update(ticket.job_id, {"task_id": task_id, "submitting_since": None})
                self._event(job, "upstream", "create", "stale", detail=task_id, body=body)
                return self._job_json(self._job_row(ticket.job_id))
            decision = on_submitted(self._state(job))
            self._event(
                job,
                "upstream",
                "create",
                decision.outcome.value,
                status=decision.state.status.value,
                detail=task_id,
                body=body,
            )
            self._apply(job, decision, extra)
        return self._job_json(self._job_row(ticket.job_id))

    @_on_writer
    def record_deferred(
        self, ticket: SubmitTicket, retry_at: float, reason: str, body: str | None = None
    ) -> None:
        """The create was not accepted now (429, 5xx, timeout): the job stays queued."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self.db["jobs"].update(ticket.job_id, {"submitting_since": None, "next_submit_at": retry_at})
            self._event(job, "upstream", "create", "deferred", detail=reason, body=body)

    @_on_writer
    def record_rejected(self, ticket: SubmitTicket, message: str, body: str | None) -> None:
        """The upstream refused the create (400/401/402): ``rejected``, message kept."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self._event(job, "upstream", "create", "rejected", detail=message, body=body)
            try:
                decision = on_rejected(self._state(job))
            except TransitionError:
                return
            self._apply(job, decision, {"error": message, "error_kind": "rejected", "submitting_since": None})

    @_on_writer
    def queued_jobs(self, now: float, limit: int = 200) -> list[dict[str, Any]]:
        """Queued jobs that may be created now, oldest first."""
        return list(
            self.db.query(
                "select * from jobs where status = 'queued' and submitting_since is null "
                "and coalesce(next_submit_at, 0) <= ? order by id limit ?",
                [now, limit],
            )
        )

    @_on_writer
    def next_submit_due(self) -> float | None:
        """When the earliest deferred queued job becomes due."""
        row = next(
            iter(
                self.db.query(
                    "select min(next_submit_at) as t from jobs where status = 'queued' "
                    "and submitting_since is null"
                )
            ),
            {"t": None},
        )
        return row["t"]

    @_on_writer
    def active_counts(self) -> dict[str | None, int]:
        """How many jobs each account is running (or being created on) right now."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        counts: dict[str | None, int] = {}
        for row in self.db.query(
            f"select account, count(*) as n from jobs where status in ({marks}) "
            "or submitting_since is not null group by account",
            statuses,
        ):
            counts[row["account"]] = row["n"]
        return counts

    @_on_writer
    def submitting_jobs(self) -> list[dict[str, Any]]:
        """Jobs whose create call was in flight when the process stopped."""
        return list(
            self.db.query(
                "select j.*, a.reply_ref from jobs j join attempts a "
                "on a.job_id = j.id and a.attempt = j.attempt where j.submitting_since is not null"
            )
        )

    @_on_writer
    def explore_accounts(self) -> list[str | None]:
        """Accounts running an explore-mode job now (one at a time per account)."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return [
            row["account"]
            for row in self.db.query(
                f"select distinct account from jobs where (status in ({marks}) or submitting_since "
                "is not null) and json_extract(params, '$.exploreMode') = 1",
                statuses,
            )
        ]
