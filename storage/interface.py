"""The seam everything above ``storage/`` is typed to: :class:`Store`, and the narrow view handlers get.

Both are protocols; :class:`~.store.SqlStore` implements them over SQLite or PostgreSQL. Every write
that moves a job returns a :class:`~.records.Moved` (the row as committed, the signal and the
transition), which the relay announces once the commit is done; the store never calls up into the relay.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..guard import AccountPolicy
from ..states import RunStatus
from ..taskparse import TaskUpdate
from .notices import Notice
from .records import IngestResult, Moved, SubmitTicket
from .retention import PruneBatch
from .store import Foreign


class JobView(Protocol):
    """What a handler may do with the store: read a job, find and record its artifacts."""

    async def get_job(self, job_id: str, events: bool = False) -> dict[str, Any]: ...

    async def artifact(self, job_id: str, url: str) -> dict[str, Any] | None: ...

    async def add_artifact(
        self, job_id: str, attempt: int, url: str, path: str, size: int, sha256: str
    ) -> None: ...


class Store(JobView, Protocol):
    """Every query the relay makes (see the mixins of :mod:`.store` for what each one does)."""

    origin: str
    policy: AccountPolicy

    @property
    def url(self) -> str: ...

    @property
    def shared(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, on_move: Foreign) -> None: ...

    # jobs
    async def create_job(
        self,
        model: str,
        params: dict[str, Any],
        handlers: list[str] | None,
        account: str | None = None,
        *,
        group_id: str | None = None,
        client_ref: str | None = None,
    ) -> Moved: ...

    async def jobs_moved_since(self, since: str, limit: int = 200) -> list[dict[str, Any]]: ...

    async def job_json(self, row: dict[str, Any]) -> dict[str, Any]: ...

    async def job_row(self, job_id: str) -> dict[str, Any]: ...

    async def cancel(self, job_id: str) -> Moved: ...

    async def record_upstream_note(
        self, job_id: str, kind: str, outcome: str, detail: str, body: str | None = None
    ) -> None: ...

    async def resubmit(self, job_id: str, max_attempts: int) -> Moved | None: ...

    # the scheduler's side
    async def begin_submit(self, job_id: str, account: str | None, holder: str) -> SubmitTicket | None: ...

    async def record_submitted(
        self, ticket: SubmitTicket, task_id: str, account: str | None, body: str | None, how: str = ""
    ) -> Moved: ...

    async def record_deferred(
        self,
        ticket: SubmitTicket,
        retry_at: float,
        reason: str,
        body: str | None = None,
        *,
        avoid: str | None = None,
    ) -> None: ...

    async def record_create_retry(
        self, ticket: SubmitTicket, reason: str, body: str | None = None
    ) -> None: ...

    async def still_submitting(self, ticket: SubmitTicket) -> bool: ...

    async def record_rejected(self, ticket: SubmitTicket, message: str, body: str | None) -> Moved | None: ...

    async def record_lookup(self, job_id: str, outcome: str, detail: str) -> None: ...

    async def queue_view(
        self, now: float, limit: int = 200
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]: ...

    async def known_task_ids(self, task_ids: list[str]) -> set[str]: ...

    async def submitting_jobs(self) -> list[dict[str, Any]]: ...

    # updates from upstream
    async def ingest_callback(self, token: str, update: TaskUpdate, body: str) -> IngestResult: ...

    async def ingest_poll(self, job_id: str, attempt: int, update: TaskUpdate, body: str) -> IngestResult: ...

    async def jobs_to_poll(self, now: float, poll_after: float, limit: int = 100) -> list[dict[str, Any]]: ...

    async def record_poll_error(self, job_id: str, next_poll_at: float, detail: str) -> None: ...

    async def active_jobs(self) -> list[dict[str, Any]]: ...

    # the outbox
    async def recover_runs(self) -> int: ...

    async def claim_runs(
        self, owner: str, now: float, limit: int, lease: float, handlers: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def renew_runs(self, owner: str, run_ids: list[int], lease: float) -> set[int]: ...

    async def next_run_due(self, handlers: list[str] | None = None) -> float | None: ...

    async def finish_run(
        self,
        run_id: int,
        owner: str,
        status: RunStatus,
        *,
        error: str | None = None,
        output: str | None = None,
        next_at: float | None = None,
        refund: bool = False,
    ) -> bool: ...

    async def replay(self, job_id: str, handler: str | None = None) -> list[dict[str, Any]]: ...

    # accounts, assets, numbers
    async def save_accounts(self, accounts: dict[str, int]) -> None: ...

    async def save_capacity(self, email: str, capacity: int, resting_until: float) -> None: ...

    async def accounts(self) -> dict[str, dict[str, Any]]: ...

    async def save_asset(
        self, asset_id: str, account: str | None, name: str, media_type: str | None
    ) -> None: ...

    async def asset_account(self, asset_id: str) -> str | None: ...

    async def job_counts(self) -> dict[str, int]: ...

    # account guards and notices
    async def record_credits(
        self, email: str, permitted: float | None, used: float | None, now: float
    ) -> list[Notice]: ...

    async def record_account_error(
        self, email: str, message: str, now: float, *, strike: bool = False
    ) -> list[Notice]: ...

    async def record_session_ok(self, email: str) -> None: ...

    async def resume_account(self, email: str, now: float) -> tuple[list[str], list[Notice]]: ...

    async def account_states(self) -> list[dict[str, Any]]: ...

    async def account_overview(self, now: float, day_start: float) -> list[dict[str, Any]]: ...

    async def record_stranded(self, job_id: str, message: str) -> Moved | None: ...

    async def notices(self, email: str | None = None, limit: int = 20) -> list[dict[str, Any]]: ...

    async def recover_notice_runs(self) -> int: ...

    async def claim_notice_runs(
        self, owner: str, now: float, limit: int, lease: float, handlers: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def renew_notice_runs(self, owner: str, run_ids: list[int], lease: float) -> set[int]: ...

    async def next_notice_due(self, handlers: list[str] | None = None) -> float | None: ...

    async def finish_notice_run(
        self,
        run_id: int,
        owner: str,
        status: RunStatus,
        *,
        error: str | None = None,
        output: str | None = None,
        next_at: float | None = None,
        refund: bool = False,
    ) -> bool: ...
    # the console's reads
    async def find_jobs(
        self,
        *,
        status: str | None = None,
        model: str | None = None,
        account: str | None = None,
        q: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]: ...

    async def group_jobs(self, group_id: str) -> list[dict[str, Any]]: ...

    async def job_by_client_ref(self, client_ref: str) -> dict[str, Any] | None: ...

    async def handler_history(self, job_id: str) -> list[dict[str, Any]]: ...

    async def usage_facts(self, since: str) -> dict[str, list[dict[str, Any]]]: ...

    async def slots_in_use(self) -> list[dict[str, Any]]: ...

    # leases
    async def lead(self, name: str, holder: str, seconds: float) -> bool: ...

    async def resign(self, name: str, holder: str) -> None: ...

    async def lease(self, name: str) -> dict[str, Any] | None: ...

    async def probe_write(self, name: str, seconds: float) -> None: ...

    async def release_runs(self, owner: str) -> int: ...

    async def release_notice_runs(self, owner: str) -> int: ...

    # retention (storage/retention.py)
    async def prune_batch(
        self,
        cutoff: str,
        *,
        after: tuple[str, str] | None = None,
        limit: int = 100,
        jobs: bool = False,
        files: bool = False,
    ) -> PruneBatch: ...

    async def size(self) -> int: ...

    async def reclaim(self, *, full: bool = False) -> None: ...
