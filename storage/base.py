"""The writer thread and the helpers every part of the SQLite store shares."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
Listening = Callable[[Signal | None], bool]

_WRITE_FAILURES = ("readonly", "read-only", "disk is full", "disk i/o", "unable to open")
MAX_GROUP = 64  # calls that share one transaction (and one fsync) at most


def _unavailable(exc: BaseException) -> BaseException:
    """SQLite's "cannot write now" errors become :class:`StorageUnavailable` (503, retry later)."""
    if isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _WRITE_FAILURES):
        error = StorageUnavailable(
            f"the database cannot take writes: {exc} (is RELAY_DB's disk full, or the file read-only?)"
        )
        error.__cause__ = exc
        return error
    return exc


def _on_writer(
    method: Callable[Concatenate[StoreBase, P], R],
) -> Callable[Concatenate[StoreBase, P], Awaitable[R]]:
    """Turn a synchronous method into an async one that runs on the store's writer thread."""

    @functools.wraps(method)
    async def wrapper(self: StoreBase, *args: P.args, **kwargs: P.kwargs) -> R:
        def call() -> R:
            try:
                return method(self, *args, **kwargs)
            except sqlite3.Error:
                self._abandon()
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    return wrapper


def _grouped(
    method: Callable[Concatenate[StoreBase, P], R],
) -> Callable[Concatenate[StoreBase, P], Awaitable[R]]:
    """Like :func:`_on_writer`, but calls waiting at the same time share ONE transaction and fsync.

    The method must not commit: it runs inside the group's transaction, in a savepoint of its own, so
    when it raises only its own writes are rolled back. Every caller is answered only after the
    ``COMMIT`` that made its writes durable (or with the error that kept them from it).
    """

    @functools.wraps(method)
    async def wrapper(self: StoreBase, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._enqueue(_Pending(functools.partial(method, self, *args, **kwargs), future, loop))
        try:
            return await future
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc

    return wrapper


@dataclass
class _Pending:
    """One grouped call waiting for the writer thread, and then its outcome."""

    work: Callable[[], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    value: Any = None
    error: BaseException | None = None


def _settle(batch: list[_Pending]) -> None:
    """Answer the callers of a group (in their event loop, after the commit)."""
    for pending in batch:
        if pending.future.done():  # the caller went away
            continue
        if pending.error is not None:
            pending.future.set_exception(pending.error)
        else:
            pending.future.set_result(pending.value)


def token_hash(token: str) -> str:
    """Callback tokens are stored hashed: a leaked database does not let anyone forge callbacks."""
    return hashlib.sha256(token.encode()).hexdigest()


class StoreBase:
    """The connection, its writer thread, and the shared write helpers."""

    def __init__(
        self,
        path: str,
        route: Route | None = None,
        listening: Listening | None = None,
        synchronous: str = "FULL",
    ) -> None:
        self.path = path
        self._route: Route = route or (lambda job, signal: ())
        # Whether anyone reads the job JSON of an update with this signal; when nobody does, the two
        # reads that build it are skipped (most callbacks are progress ticks nobody subscribes to).
        self._wants_job_json: Listening = listening or (lambda signal: True)
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")
        self._db: Database | None = None
        self._group: deque[_Pending] = deque()
        self._group_lock = threading.Lock()
        self._drain_scheduled = False
        self.group_commits = 0  # transactions committed for grouped calls (tests and benches read it)
        self.grouped_calls = 0  # grouped calls those transactions held

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

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    # -- the writer thread ----------------------------------------------------------------------

    def _abandon(self) -> None:
        """Roll back a transaction a failed statement left open, so the next call starts clean."""
        if self._db is not None and self._db.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.conn.execute("ROLLBACK")

    def _enqueue(self, pending: _Pending) -> None:
        """Queue a grouped call; one drain of the queue is scheduled on the writer at a time."""
        with self._group_lock:
            self._group.append(pending)
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        self._executor.submit(self._commit_group)

    def _take_group(self) -> list[_Pending]:
        with self._group_lock:
            batch = [self._group.popleft() for _ in range(min(MAX_GROUP, len(self._group)))]
            self._drain_scheduled = bool(self._group)
        if self._drain_scheduled:  # more than one group waits: the rest goes after other writer work
            try:
                self._executor.submit(self._commit_group)
            except RuntimeError:  # the store is closing: answer the rest instead of leaving them hanging
                self._fail_waiting(StorageUnavailable("the store is closing; try again"))
        return batch

    def _fail_waiting(self, error: BaseException) -> None:
        with self._group_lock:
            rest = list(self._group)
            self._group.clear()
            self._drain_scheduled = False
        for pending in rest:
            pending.error = error
            pending.loop.call_soon_threadsafe(_settle, [pending])

    def _commit_group(self) -> None:
        """Run the grouped calls waiting now in one ``BEGIN … COMMIT``, each in its own savepoint.

        A call that raises is rolled back alone; an error that can cost the whole transaction (disk
        full, I/O error, a failed ``COMMIT``) fails every call of the group, none is answered success.
        """
        batch = self._take_group()
        if not batch:
            return
        try:
            conn = self.db.conn
            conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                self._in_savepoint(conn, pending)
            conn.execute("COMMIT")
            self.group_commits += 1
            self.grouped_calls += len(batch)
        except BaseException as exc:
            self._abandon()
            for pending in batch:
                pending.value, pending.error = None, exc
            if not isinstance(exc, Exception):
                raise
        finally:
            loops: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
            for pending in batch:
                loops.setdefault(pending.loop, []).append(pending)
            for loop, answers in loops.items():
                loop.call_soon_threadsafe(_settle, answers)

    @staticmethod
    def _in_savepoint(conn: sqlite3.Connection, pending: _Pending) -> None:
        conn.execute("SAVEPOINT grouped")
        try:
            pending.value = pending.work()
        except Exception as exc:
            if not conn.in_transaction or _unavailable(exc) is not exc:
                raise  # the transaction is lost or cannot commit: the whole group fails
            conn.execute("ROLLBACK TO grouped")
            pending.error = exc
        conn.execute("RELEASE grouped")

    # -- helpers (writer thread only) -----------------------------------------------------------

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts, by plain SQL (the hot path skips sqlite-utils' table introspection)."""
        cursor = self.db.conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _job_row(self, job_id: str) -> dict[str, Any]:
        rows = self._rows("select * from jobs where id = ?", [job_id])
        if not rows:
            raise NotFound(f"no job with id {job_id!r}")
        return rows[0]

    def _update_job(self, job_id: str, changes: dict[str, Any]) -> None:
        """``UPDATE jobs`` of the given columns (names come from this package, never from input)."""
        sets = ", ".join(f'"{column}" = ?' for column in changes)
        self.db.execute(f"update jobs set {sets} where id = ?", [*changes.values(), job_id])

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
        at: str | None = None,
    ) -> int:
        cursor = self.db.execute(
            "insert into events (job_id, attempt, source, kind, outcome, status, progress, detail, body, at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                job["id"],
                attempt or job["attempt"],
                source,
                kind,
                outcome,
                status,
                progress,
                detail,
                body,
                at or iso_now(),
            ],
        )
        return int(cursor.lastrowid or 0)

    def _apply(
        self, job: dict[str, Any], decision: Decision, extra: dict[str, Any] | None = None
    ) -> int | None:
        """Write the job's new state, its transition and the outbox rows; return the transition id."""
        return self._apply_row(job, decision, extra)[0]

    def _apply_row(
        self,
        job: dict[str, Any],
        decision: Decision,
        extra: dict[str, Any] | None = None,
        now: str | None = None,
    ) -> tuple[int | None, dict[str, Any]]:
        """:meth:`_apply`, also returning the job row as written (no need to read it back)."""
        state = decision.state
        now = now or iso_now()
        changes = {
            "status": state.status.value,
            "attempt": state.attempt,
            "progress": state.progress,
            "updated_at": now,
            **(extra or {}),
        }
        self._update_job(job["id"], changes)
        row = {**job, **changes}
        if state.status is not Status(job["status"]) or decision.signal is not None:
            cursor = self.db.execute(
                "insert into transitions (job_id, attempt, from_status, to_status, progress, signal, at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                [
                    job["id"],
                    state.attempt,
                    job["status"],
                    state.status.value,
                    state.progress,
                    decision.signal.value if decision.signal else None,
                    now,
                ],
            )
            transition_id = int(cursor.lastrowid or 0)
            if decision.signal is not None:
                self._enqueue_runs(row, transition_id, decision.signal, now)
            return transition_id, row
        return None, row

    def _enqueue_runs(self, job: dict[str, Any], transition_id: int, signal: Signal, now: str) -> None:
        names = self._route(job, signal)
        if not names:
            return
        with self.db.atomic():
            for name in names:
                self.db.execute(
                    "insert into handler_runs (job_id, transition_id, handler, signal, status, attempts, "
                    "next_at, created_at, updated_at) values (?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
                    [job["id"], transition_id, name, signal.value, time.time(), now, now],
                )

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
        for run in self._rows(f"select * from handler_runs where job_id in ({marks}) order by id", ids):
            runs[run["job_id"]].append(run)
        arts: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        for art in self._rows(f"select * from artifacts where job_id in ({marks}) order by id", ids):
            arts[art["job_id"]].append(art)
        return [job_json(row, runs[row["id"]], arts[row["id"]]) for row in rows]

    def _job_json(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._jobs_json([row])[0]
