"""The SQLite backend (sqlite-utils, WAL, one writer thread).

Every public method is ``async``; its body runs on one dedicated thread that owns the connection, so
writes are serialised (no "database is locked" between our own tasks) and the event loop never blocks
on disk. Each write that belongs together happens in ONE transaction.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from ..errors import Conflict, NotFound, StorageUnavailable
from ..states import (
    ACTIVE,
    TERMINAL,
    Decision,
    JobState,
    Signal,
    Status,
    TransitionError,
    on_cancel,
    on_rejected,
    on_resubmit,
    on_submitted,
    on_update,
)
from ..taskparse import TaskUpdate
from .migrations import migrations
from .records import (
    IngestResult,
    SubmitTicket,
    iso_now,
    job_json,
    new_job_id,
    new_token,
)

P = ParamSpec("P")
R = TypeVar("R")
Route = Callable[[dict[str, Any], Signal], Sequence[str]]

_WRITE_FAILURES = ("readonly", "read-only", "disk is full", "disk i/o", "unable to open")


def _on_writer(
    method: Callable[Concatenate[SQLiteStore, P], R],
) -> Callable[Concatenate[SQLiteStore, P], Awaitable[R]]:
    """Turn a synchronous method into an async one that runs on the store's writer thread."""

    @functools.wraps(method)
    async def wrapper(self: SQLiteStore, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        call = functools.partial(method, self, *args, **kwargs)
        try:
            return await loop.run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            if any(word in str(exc).lower() for word in _WRITE_FAILURES):
                raise StorageUnavailable(f"the database cannot take writes: {exc}") from exc
            raise

    return wrapper


def token_hash(token: str) -> str:
    """Callback tokens are stored hashed: a leaked database does not let anyone forge callbacks."""
    return hashlib.sha256(token.encode()).hexdigest()


class SQLiteStore:
    """Jobs, attempts, events, transitions, handler runs and artifacts in one SQLite file."""

    def __init__(self, path: str, route: Route | None = None, synchronous: str = "FULL") -> None:
        self.path = path
        self._route: Route = route or (lambda job, signal: ())
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")
        self._db: Database | None = None

    # -- life cycle ---------------------------------------------------------------------------

    @_on_writer
    def open(self) -> None:
        """Open the file, switch to WAL and apply pending migrations."""
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        db = Database(conn)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA foreign_keys=ON")
        migrations.apply(db)
        self._db = db

    async def close(self) -> None:
        """Close the connection and stop the writer thread."""
        await self._close()
        self._executor.shutdown(wait=True)

    @_on_writer
    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def set_route(self, route: Route) -> None:
        """Which handlers get an outbox row for a job's transition."""
        self._route = route

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    # -- helpers (writer thread only) -----------------------------------------------------------

    def _job_row(self, job_id: str) -> dict[str, Any]:
        rows = list(self.db.query("select * from jobs where id = ?", [job_id]))
        if not rows:
            raise NotFound(f"no job with id {job_id!r}")
        return rows[0]

    def _event(self, job: dict[str, Any], source: str, kind: str, outcome: str, *,
               status: str | None = None, progress: float | None = None,
               detail: str | None = None, body: str | None = None,
               attempt: int | None = None) -> int:
        table = self.db["events"]
        table.insert({
            "job_id": job["id"], "attempt": attempt or job["attempt"], "source": source,
            "kind": kind, "outcome": outcome, "status": status, "progress": progress,
            "detail": detail, "body": body, "at": iso_now(),
        })
        return int(table.last_pk)

    def _apply(self, job: dict[str, Any], decision: Decision,
               extra: dict[str, Any] | None = None) -> int | None:
        """Write the job's new state, its transition and the outbox rows; return the transition id."""
        state = decision.state
        now = iso_now()
        changes = {"status": state.status.value, "attempt": state.attempt,
                   "progress": state.progress, "updated_at": now, **(extra or {})}
        self.db["jobs"].update(job["id"], changes)
        if state.status is not Status(job["status"]) or decision.signal is not None:
            transitions = self.db["transitions"]
            transitions.insert({
                "job_id": job["id"], "attempt": state.attempt, "from_status": job["status"],
                "to_status": state.status.value, "progress": state.progress,
                "signal": decision.signal.value if decision.signal else None, "at": now,
            })
            transition_id = int(transitions.last_pk)
            if decision.signal is not None:
                updated = {**job, **changes}
                self._enqueue_runs(updated, transition_id, decision.signal, now)
            return transition_id
        return None

    def _enqueue_runs(self, job: dict[str, Any], transition_id: int, signal: Signal,
                      now: str) -> None:
        rows = [
            {"job_id": job["id"], "transition_id": transition_id, "handler": name,
             "signal": signal.value, "status": "pending", "attempts": 0, "next_at": time.time(),
             "created_at": now, "updated_at": now}
            for name in self._route(job, signal)
        ]
        if rows:
            self.db["handler_runs"].insert_all(rows)

    def _state(self, job: dict[str, Any]) -> JobState:
        return JobState(Status(job["status"]), int(job["attempt"]), float(job["progress"] or 0))

    # -- jobs -----------------------------------------------------------------------------------

    @_on_writer
    def create_job(self, model: str, params: dict[str, Any], handlers: list[str] | None,
                   account: str | None = None) -> dict[str, Any]:
        """Store a new ``queued`` job (attempt 1) and return its JSON."""
        job_id = new_job_id()
        now = iso_now()
        with self.db.atomic():
            self.db["jobs"].insert({
                "id": job_id, "status": Status.QUEUED.value, "model": model,
                "params": json.dumps(params), "handlers": json.dumps(handlers)
                if handlers is not None else None, "account": account, "attempt": 1,
                "progress": 0.0, "created_at": now, "updated_at": now,
                "last_update_at": time.time(), "next_submit_at": 0.0,
            })
            self._new_attempt(job_id, 1)
            job = self._job_row(job_id)
            self._event(job, "api", "created", "applied", status="queued")
        return self._job_json(job)

    def _new_attempt(self, job_id: str, attempt: int) -> None:
        self.db["attempts"].insert({
            "job_id": job_id, "attempt": attempt, "reply_ref": f"{job_id}.{attempt}",
        })

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
                    "from events where job_id = ? order by id", [job_id])
            ]
            data["transitions"] = list(self.db.query(
                "select id, attempt, from_status, to_status, progress, signal, at "
                "from transitions where job_id = ? order by id", [job_id]))
        return data

    @_on_writer
    def job_row(self, job_id: str) -> dict[str, Any]:
        """The raw stored row (internal fields included) for the scheduler and handlers."""
        return self._job_row(job_id)

    @_on_writer
    def list_jobs(self, status: str | None = None, model: str | None = None, limit: int = 50,
                  cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
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

    def _jobs_json(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        runs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for run in self.db.query(
                f"select * from handler_runs where job_id in ({marks}) order by id", ids):
            runs[run["job_id"]].append(run)
        arts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for art in self.db.query(
                f"select * from artifacts where job_id in ({marks}) order by id", ids):
            arts[art["job_id"]].append(art)
        return [job_json(row, runs[row["id"]], arts[row["id"]]) for row in rows]

    def _job_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._jobs_json([row])[0]

    # -- submitting -----------------------------------------------------------------------------

    @_on_writer
    def begin_submit(self, job_id: str, account: str | None) -> SubmitTicket | None:
        """Mark a queued job as being created upstream, before the call; ``None`` if not queued."""
        job = self._job_row(job_id)
        if job["status"] != Status.QUEUED.value or job["submitting_since"]:
            return None
        token = new_token()
        with self.db.atomic():
            self.db["jobs"].update(job_id, {"submitting_since": time.time(), "account": account,
                                            "submit_tries": (job["submit_tries"] or 0) + 1})
            self.db["attempts"].update((job_id, job["attempt"]),
                                       {"token_hash": token_hash(token), "account": account})
        attempt = self.db["attempts"].get((job_id, job["attempt"]))
        return SubmitTicket(job_id, int(job["attempt"]), attempt["reply_ref"], token,
                            json.loads(job["params"]), account)

    @_on_writer
    def record_submitted(self, ticket: SubmitTicket, task_id: str, account: str | None,
                         body: str) -> dict[str, Any]:
        """The create was accepted: keep the task id and move ``queued`` → ``submitted``."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self.db["attempts"].update((ticket.job_id, ticket.attempt), {
                "task_id": task_id, "account": account, "submitted_at": iso_now()})
            extra = {"task_id": task_id, "account": account, "submitting_since": None,
                     "last_update_at": time.time(), "next_poll_at": None, "poll_tries": 0}
            if job["attempt"] != ticket.attempt or Status(job["status"]) in TERMINAL:
                # Cancelled while the create was in flight: keep the task id so cancel can free it.
                self.db["jobs"].update(ticket.job_id, {"task_id": task_id, "submitting_since": None})
                self._event(job, "upstream", "create", "stale", detail=task_id, body=body)
                return self._job_json(self._job_row(ticket.job_id))
            decision = on_submitted(self._state(job))
            self._event(job, "upstream", "create", decision.outcome.value,
                        status=decision.state.status.value, detail=task_id, body=body)
            self._apply(job, decision, extra)
        return self._job_json(self._job_row(ticket.job_id))

    @_on_writer
    def record_deferred(self, ticket: SubmitTicket, retry_at: float, reason: str,
                        body: str | None = None) -> None:
        """The create was not accepted now (429, 5xx, timeout): the job stays queued."""
        with self.db.atomic():
            job = self._job_row(ticket.job_id)
            self.db["jobs"].update(ticket.job_id, {"submitting_since": None,
                                                   "next_submit_at": retry_at})
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
            self._apply(job, decision, {"error": message, "error_kind": "rejected",
                                        "submitting_since": None})

    @_on_writer
    def queued_jobs(self, now: float, limit: int = 200) -> list[dict[str, Any]]:
        """Queued jobs that may be created now, oldest first."""
        return list(self.db.query(
            "select * from jobs where status = 'queued' and submitting_since is null "
            "and coalesce(next_submit_at, 0) <= ? order by id limit ?", [now, limit]))

    @_on_writer
    def next_submit_due(self) -> float | None:
        """When the earliest deferred queued job becomes due."""
        row = next(iter(self.db.query(
            "select min(next_submit_at) as t from jobs where status = 'queued' "
            "and submitting_since is null")), {"t": None})
        return row["t"]

    @_on_writer
    def active_counts(self) -> dict[str | None, int]:
        """How many jobs each account is running (or being created on) right now."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        counts: dict[str | None, int] = {}
        for row in self.db.query(
                f"select account, count(*) as n from jobs where status in ({marks}) "
                "or submitting_since is not null group by account", statuses):
            counts[row["account"]] = row["n"]
        return counts

    @_on_writer
    def submitting_jobs(self) -> list[dict[str, Any]]:
        """Jobs whose create call was in flight when the process stopped."""
        return list(self.db.query(
            "select j.*, a.reply_ref from jobs j join attempts a "
            "on a.job_id = j.id and a.attempt = j.attempt where j.submitting_since is not null"))

    # -- updates from upstream ------------------------------------------------------------------

    @_on_writer
    def ingest_callback(self, token: str, update: TaskUpdate, body: str) -> IngestResult:
        """Match a callback by its token (and replyRef) and apply it, all in one transaction."""
        rows = list(self.db.query(
            "select job_id, attempt, reply_ref from attempts where token_hash = ?",
            [token_hash(token)]))
        if not rows:
            raise NotFound("unknown callback token")
        match = rows[0]
        if update.reply_ref is not None and update.reply_ref != match["reply_ref"]:
            raise NotFound("the callback's replyRef does not belong to this token")
        with self.db.atomic():
            return self._ingest(match["job_id"], int(match["attempt"]), update, body, "callback")

    @_on_writer
    def ingest_poll(self, job_id: str, attempt: int, update: TaskUpdate,
                    body: str) -> IngestResult:
        """Apply what ``GET tasks/{taskId}`` answered, exactly as a callback would be applied."""
        with self.db.atomic():
            return self._ingest(job_id, attempt, update, body, "poll")

    def _ingest(self, job_id: str, attempt: int, update: TaskUpdate, body: str,
                source: str) -> IngestResult:
        job = self._job_row(job_id)
        now = time.time()
        if update.status is None:
            self._event(job, source, "task", "ignored", detail=f"status {update.raw_status!r}",
                        body=body, attempt=attempt)
            return IngestResult(job_id, "ignored", None, None)
        decision = on_update(self._state(job), attempt, update.status, update.progress)
        self._event(job, source, "task", decision.outcome.value, status=update.status.value,
                    progress=update.progress, detail=update.progress_text, body=body,
                    attempt=attempt)
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
            extra["upstream_artifacts"] = json.dumps([
                {"url": a.url, "size": a.size, "asset_id": a.asset_id, "preview_url": a.preview_url}
                for a in update.artifacts])
        transition = self._apply(job, decision, extra)
        return IngestResult(job_id, decision.outcome.value, decision.signal, transition)

    @_on_writer
    def jobs_to_poll(self, now: float, poll_after: float, limit: int = 100) -> list[dict[str, Any]]:
        """Active jobs silent for longer than ``poll_after`` whose next poll is due."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return list(self.db.query(
            f"select * from jobs where status in ({marks}) and task_id is not null "
            "and coalesce(next_poll_at, last_update_at + ?) <= ? order by id limit ?",
            [*statuses, poll_after, now, limit]))

    @_on_writer
    def record_poll_error(self, job_id: str, next_poll_at: float, detail: str) -> None:
        """A poll failed; try again at ``next_poll_at``."""
        with self.db.atomic():
            job = self._job_row(job_id)
            self.db["jobs"].update(job_id, {"next_poll_at": next_poll_at,
                                            "poll_tries": (job["poll_tries"] or 0) + 1})
            self._event(job, "poll", "task", "error", detail=detail)

    @_on_writer
    def active_jobs(self) -> list[dict[str, Any]]:
        """Every job that is neither queued nor finished (for reconciliation at start)."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return list(self.db.query(f"select * from jobs where status in ({marks})", statuses))

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
    def record_upstream_note(self, job_id: str, kind: str, outcome: str, detail: str,
                             body: str | None = None) -> None:
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
            self._event(job, "handler", "resubmit", "applied", status="queued",
                        detail=f"attempt {decision.state.attempt}")
            self._apply(job, decision, {
                "task_id": None, "error": None, "error_kind": None, "progress_text": None,
                "next_submit_at": 0.0, "submit_tries": 0, "upstream_artifacts": None,
                "last_update_at": time.time()})
        return self._job_json(self._job_row(job_id))

    # -- handler runs (the outbox) --------------------------------------------------------------

    @_on_writer
    def reset_running_runs(self) -> int:
        """After a crash, runs that were in progress become pending again."""
        cursor = self.db.execute(
            "update handler_runs set status = 'pending' where status = 'running'")
        return cursor.rowcount

    @_on_writer
    def claim_runs(self, now: float, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` due pending runs and mark them running (attempts + 1)."""
        with self.db.atomic():
            runs = list(self.db.query(
                "select * from handler_runs where status = 'pending' and next_at <= ? "
                "order by next_at, id limit ?", [now, limit]))
            for run in runs:
                run["attempts"] = int(run["attempts"] or 0) + 1
                self.db["handler_runs"].update(run["id"], {
                    "status": "running", "attempts": run["attempts"], "updated_at": iso_now()})
        return runs

    @_on_writer
    def next_run_due(self) -> float | None:
        """When the earliest pending run is due, or ``None``."""
        row = next(iter(self.db.query(
            "select min(next_at) as t from handler_runs where status = 'pending'")))
        return row["t"]

    @_on_writer
    def finish_run(self, run_id: int, status: str, *, error: str | None = None,
                   output: str | None = None, next_at: float | None = None) -> None:
        """Record a run's end: ``done``, ``pending`` (retry at ``next_at``) or ``dead``."""
        changes: dict[str, Any] = {"status": status, "last_error": error,
                                   "updated_at": iso_now()}
        if output is not None:
            changes["output"] = output
        if next_at is not None:
            changes["next_at"] = next_at
        self.db["handler_runs"].update(run_id, changes)

    @_on_writer
    def replay(self, job_id: str, handler: str | None = None) -> list[dict[str, Any]]:
        """Queue the handler runs of the job's last transition again (one handler, or all)."""
        with self.db.atomic():
            job = self._job_row(job_id)
            rows = list(self.db.query(
                "select * from handler_runs where transition_id = (select max(transition_id) "
                "from handler_runs where job_id = ?)", [job_id]))
            if handler is not None:
                rows = [r for r in rows if r["handler"] == handler]
            if not rows:
                what = f"handler {handler!r}" if handler else "handlers"
                raise NotFound(f"job {job_id} has no {what} runs to replay")
            for row in rows:
                self.db["handler_runs"].update(row["id"], {
                    "status": "pending", "attempts": 0, "next_at": time.time(),
                    "last_error": None, "updated_at": iso_now()})
            self._event(job, "api", "replay", "applied",
                        detail=",".join(sorted(r["handler"] for r in rows)))
        return list(self.db.query(
            f"select * from handler_runs where id in ({','.join('?' * len(rows))})",
            [r["id"] for r in rows]))

    # -- artifacts, accounts, assets ------------------------------------------------------------

    @_on_writer
    def artifact(self, job_id: str, url: str) -> dict[str, Any] | None:
        """The stored artifact for ``url`` of a job, if it was downloaded."""
        rows = list(self.db.query(
            "select * from artifacts where job_id = ? and url = ?", [job_id, url]))
        return rows[0] if rows else None

    @_on_writer
    def add_artifact(self, job_id: str, attempt: int, url: str, path: str, size: int,
                     sha256: str) -> None:
        """Record a complete, size-checked file on disk."""
        self.db.execute(
            "insert into artifacts (job_id, attempt, url, path, size, sha256, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?) on conflict (job_id, url) do update set "
            "path = excluded.path, size = excluded.size, sha256 = excluded.sha256",
            [job_id, attempt, url, path, size, sha256, iso_now()])

    @_on_writer
    def save_accounts(self, accounts: dict[str, int]) -> None:
        """Remember each account's ``maxJobs`` (email → capacity); nothing else is kept."""
        now = iso_now()
        with self.db.atomic():
            for email, max_jobs in accounts.items():
                self.db.execute(
                    "insert into accounts (email, max_jobs, capacity, updated_at) "
                    "values (?, ?, ?, ?) on conflict (email) do update set "
                    "max_jobs = excluded.max_jobs, updated_at = excluded.updated_at",
                    [email, max_jobs, max_jobs, now])

    @_on_writer
    def accounts(self) -> dict[str, dict[str, Any]]:
        """Known accounts by email."""
        return {row["email"]: row for row in self.db.query("select * from accounts")}

    @_on_writer
    def save_asset(self, asset_id: str, account: str | None, name: str,
                   media_type: str | None) -> None:
        """Remember which account holds an uploaded asset."""
        self.db["assets"].upsert({"asset_id": asset_id, "account": account, "name": name,
                                  "media_type": media_type, "created_at": iso_now()},
                                 pk="asset_id")

    @_on_writer
    def asset_account(self, asset_id: str) -> str | None:
        """The account an asset was uploaded to, if we uploaded it."""
        rows = list(self.db.query("select account from assets where asset_id = ?", [asset_id]))
        return rows[0]["account"] if rows else None

    # -- numbers --------------------------------------------------------------------------------

    @_on_writer
    def stats(self) -> dict[str, dict[str, int]]:
        """Counts for ``/metrics`` and ``/healthz``."""
        def grouped(sql: str) -> dict[str, int]:
            return {str(r["k"]): int(r["n"]) for r in self.db.query(sql)}

        return {
            "jobs": grouped("select status as k, count(*) as n from jobs group by status"),
            "callbacks": grouped(
                "select outcome as k, count(*) as n from events where source = 'callback' "
                "group by outcome"),
            "upstream": grouped(
                "select outcome as k, count(*) as n from events where source = 'upstream' "
                "group by outcome"),
            "handler_runs": grouped(
                "select status as k, count(*) as n from handler_runs group by status"),
        }

    @_on_writer
    def explore_accounts(self) -> list[str | None]:
        """Accounts running an explore-mode job now (one at a time per account)."""
        statuses = [s.value for s in ACTIVE]
        marks = ",".join("?" * len(statuses))
        return [row["account"] for row in self.db.query(
            f"select distinct account from jobs where (status in ({marks}) or submitting_since "
            "is not null) and json_extract(params, '$.exploreMode') = 1", statuses)]
