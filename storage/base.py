"""The writer thread and the helpers every part of the SQLite store shares."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from ..errors import NotFound, StorageUnavailable
from ..states import (
    Decision,
    JobState,
    Signal,
    Status,
)
from .migrations import migrations
from .records import (
    iso_now,
    job_json,
)

P = ParamSpec("P")
R = TypeVar("R")
Route = Callable[[dict[str, Any], Signal], Sequence[str]]

_WRITE_FAILURES = ("readonly", "read-only", "disk is full", "disk i/o", "unable to open")


def _on_writer(
    method: Callable[Concatenate[StoreBase, P], R],
) -> Callable[Concatenate[StoreBase, P], Awaitable[R]]:
    """Turn a synchronous method into an async one that runs on the store's writer thread."""

    @functools.wraps(method)
    async def wrapper(self: StoreBase, *args: P.args, **kwargs: P.kwargs) -> R:
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


class StoreBase:
    """The connection, its writer thread, and the shared write helpers."""

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

    def _event(
        self,
        job: dict[str, Any],
        source: str,
        kind: str,
        outcome: str,
        *,
        status: str | None = None,
        progress: float | None = None,
        detail: str | None = None,
        body: str | None = None,
        attempt: int | None = None,
    ) -> int:
        table = self.db["events"]
        table.insert(
            {
                "job_id": job["id"],
                "attempt": attempt or job["attempt"],
                "source": source,
                "kind": kind,
                "outcome": outcome,
                "status": status,
                "progress": progress,
                "detail": detail,
                "body": body,
                "at": iso_now(),
            }
        )
        return int(table.last_pk)

    def _apply(
        self, job: dict[str, Any], decision: Decision, extra: dict[str, Any] | None = None
    ) -> int | None:
        """Write the job's new state, its transition and the outbox rows; return the transition id."""
        state = decision.state
        now = iso_now()
        changes = {
            "status": state.status.value,
            "attempt": state.attempt,
            "progress": state.progress,
            "updated_at": now,
            **(extra or {}),
        }
        self.db["jobs"].update(job["id"], changes)
        if state.status is not Status(job["status"]) or decision.signal is not None:
            transitions = self.db["transitions"]
            transitions.insert(
                {
                    "job_id": job["id"],
                    "attempt": state.attempt,
                    "from_status": job["status"],
                    "to_status": state.status.value,
                    "progress": state.progress,
                    "signal": decision.signal.value if decision.signal else None,
                    "at": now,
                }
            )
            transition_id = int(transitions.last_pk)
            if decision.signal is not None:
                updated = {**job, **changes}
                self._enqueue_runs(updated, transition_id, decision.signal, now)
            return transition_id
        return None

    def _enqueue_runs(self, job: dict[str, Any], transition_id: int, signal: Signal, now: str) -> None:
        rows = [
            {
                "job_id": job["id"],
                "transition_id": transition_id,
                "handler": name,
                "signal": signal.value,
                "status": "pending",
                "attempts": 0,
                "next_at": time.time(),
                "created_at": now,
                "updated_at": now,
            }
            for name in self._route(job, signal)
        ]
        if rows:
            self.db["handler_runs"].insert_all(rows)

    def _state(self, job: dict[str, Any]) -> JobState:
        return JobState(Status(job["status"]), int(job["attempt"]), float(job["progress"] or 0))

    def _new_attempt(self, job_id: str, attempt: int) -> None:
        self.db["attempts"].insert(
            {
                "job_id": job_id,
                "attempt": attempt,
                "reply_ref": f"{job_id}.{attempt}",
            }
        )

    def _jobs_json(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        runs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for run in self.db.query(f"select * from handler_runs where job_id in ({marks}) order by id", ids):
            runs[run["job_id"]].append(run)
        arts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for art in self.db.query(f"select * from artifacts where job_id in ({marks}) order by id", ids):
            arts[art["job_id"]].append(art)
        return [job_json(row, runs[row["id"]], arts[row["id"]]) for row in rows]

    def _job_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._jobs_json([row])[0]
