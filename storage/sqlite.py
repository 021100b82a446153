"""The SQLite connector: one file in WAL mode, one writer thread that owns the connection.

Every unit runs on that thread, so writes are serialised (no "database is locked" between our own
tasks) and the event loop never blocks on disk. The units are the same ``async`` functions PostgreSQL
runs; here each SQLite call completes at once, so the thread drives a unit to its end without an event
loop (:func:`~.connector.drive`).

Units that arrive together may share one ``BEGIN IMMEDIATE … COMMIT`` and one fsync (group commit),
each in its own savepoint; every caller is answered only after the commit that holds its writes.

A serving relay owns its file: a second ``serve`` on the same file stops with a clear message (several
relays need PostgreSQL). Tools such as ``prune`` and ``backup`` open the file beside a serving relay
without owning it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlite_utils import Database

from ..errors import StorageUnavailable
from .connector import Args, Notice, Unit, drive

R = TypeVar("R")

_WRITE_FAILURES = ("readonly", "read-only", "disk is full", "disk i/o", "unable to open")
MAX_GROUP = 64  # units that share one transaction (and one fsync) at most
# Between two steps of a tool's long job (prune's vacuum) beside a serving relay: longer than the first
# few sleeps of SQLite's busy handler, so the relay's writer gets the file before the tool takes it again.
STEP_PAUSE = 0.02


def _lower(value: Any) -> Any:
    """SQL ``lower()`` as PostgreSQL's: SQLite's own folds ASCII letters only ("É" stays "É")."""
    return value.lower() if isinstance(value, str) else value


def served(path: str) -> bool:
    """Whether a relay serves this SQLite file now (it holds the file's lock)."""
    lock = Path(path + ".lock")
    if not lock.exists():
        return False
    with lock.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class DatabaseInUse(RuntimeError):
    """Another relay process serves this SQLite file."""


def unavailable(exc: BaseException) -> BaseException:
    """SQLite's "cannot write now" errors become :class:`StorageUnavailable` (503, retry later)."""
    if isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _WRITE_FAILURES):
        error = StorageUnavailable(
            f"the database cannot take writes: {exc} (is RELAY_DB's disk full, or the file read-only?)"
        )
        error.__cause__ = exc
        return error
    return exc


class SQLiteTx:
    """A :class:`~.connector.Tx` over the writer thread's connection."""

    dialect = "sqlite"
    for_update = ""  # one writer: a read inside BEGIN IMMEDIATE is already exclusive
    skip_locked = ""
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    ended_jobs_index = " indexed by idx_jobs_ended_updated_at"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, args: Args = ()) -> int:
        return self.conn.execute(sql, args).rowcount

    async def run(self, sql: str, args: Args = ()) -> None:
        self.conn.execute(sql, args)

    async def rows(self, sql: str, args: Args = ()) -> list[dict[str, Any]]:
        cursor = self.conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    async def one(self, sql: str, args: Args = ()) -> dict[str, Any] | None:
        cursor = self.conn.execute(sql, args)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    async def insert(self, sql: str, args: Args = ()) -> int:
        return int(self.conn.execute(sql, args).lastrowid or 0)

    async def notify(self, message: dict[str, Any]) -> None:
        """Nobody else shares a SQLite file the relay serves: nothing to tell."""

    async def lock_schema(self) -> None:
        """``BEGIN IMMEDIATE`` already holds the file's one write lock."""


@dataclass
class _Pending:
    """One grouped unit waiting for the writer thread, and then its outcome."""

    unit: Unit[Any]
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


class SQLiteConnector:
    """See the module docstring. ``owner``: this process serves the file (takes its lock)."""

    def __init__(self, path: str, *, owner: bool = True, synchronous: str = "FULL") -> None:
        self.url = path
        self.path = path
        self.exclusive = owner
        self._synchronous = synchronous
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="relay-db")
        self._db: Database | None = None
        self._tx: SQLiteTx | None = None
        self._lock_file: IO[str] | None = None
        self._group: deque[_Pending] = deque()
        self._group_lock = threading.Lock()
        self._drain_scheduled = False
        self.group_commits = 0  # transactions committed for grouped units (tests and benches read it)
        self.grouped_calls = 0  # grouped units those transactions held

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self.exclusive:
            self._take_file_lock()
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)
        except sqlite3.Error as exc:
            self._release_file_lock()
            raise unavailable(exc) from exc

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        db = Database(conn)
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            # Only a file with no table yet can take it: freed pages can then go back to the disk in
            # small steps while the relay serves (see reclaim), not only by a VACUUM that blocks writes.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self._synchronous}")
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA foreign_keys=ON")
        conn.create_function("lower", 1, _lower, deterministic=True)
        self._db, self._tx = db, SQLiteTx(conn)

    def _take_file_lock(self) -> None:
        """One serving relay per file: SQLite cannot be shared by several relays (PostgreSQL can)."""
        path = Path(self.path + ".lock")
        handle = path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DatabaseInUse(
                f"{self.path} is already served by a relay ({holder}); a SQLite file serves one relay. "
                "Stop that one, or use RELAY_DB=postgresql://… to run several relays on one database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def _release_file_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # already shut down
            await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)
        self._release_file_lock()

    def _disconnect(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db, self._tx = None, None

    @property
    def db(self) -> Database:
        """The sqlite-utils database (writer thread only: backups and tools use it)."""
        if self._db is None:
            raise RuntimeError("the store is not open")
        return self._db

    def _transaction(self) -> SQLiteTx:
        if self._tx is None:
            raise RuntimeError("the store is not open")
        return self._tx

    # -- running units ------------------------------------------------------------------------

    async def read(self, unit: Unit[R]) -> R:
        return await self._on_writer(functools.partial(self._run_read, unit))

    async def write(self, unit: Unit[R], *, grouped: bool = False) -> R:
        if not grouped:
            return await self._on_writer(functools.partial(self._run_write, unit))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._enqueue(_Pending(unit, future, loop))
        try:
            return await future
        except sqlite3.OperationalError as exc:
            raise unavailable(exc) from exc

    async def listen(self, on_notice: Notice) -> None:
        """A served SQLite file has one relay: there is never anything to hear."""

    async def run_sync(self, work: Any) -> Any:
        """Run ``work(db)`` (a plain function of the sqlite-utils database) on the writer thread."""
        return await self._on_writer(lambda: work(self.db))

    async def _on_writer(self, call: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.OperationalError as exc:
            raise unavailable(exc) from exc

    def _run_read(self, unit: Unit[R]) -> R:
        return drive(unit(self._transaction()))

    def _run_write(self, unit: Unit[R]) -> R:
        tx = self._transaction()
        tx.conn.execute("BEGIN IMMEDIATE")
        try:
            value = drive(unit(tx))
            tx.conn.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        return value

    def _abandon(self) -> None:
        """Roll back a transaction a failed statement left open, so the next unit starts clean."""
        if self._tx is not None and self._tx.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._tx.conn.execute("ROLLBACK")

    # -- size and space -----------------------------------------------------------------------

    async def size(self) -> int:
        """Bytes the database takes on disk: the file and its write-ahead log."""
        paths = (Path(self.path), Path(self.path + "-wal"))
        return sum(p.stat().st_size for p in paths if p.exists())

    async def reclaim(self, tables: Sequence[str] = (), *, full: bool = False, step: int = 256) -> None:
        """Give the pages deleted rows freed back to the disk.

        A file made with ``auto_vacuum = INCREMENTAL`` gives back ``step`` pages per transaction, so
        the serving relay's writes wait for one short step at most. ``full`` (or a file made before
        this relay set auto_vacuum) needs ``VACUUM``: it rewrites the whole file and blocks every
        write while it runs; it also turns auto_vacuum on for next time.
        """
        if full:
            await self._on_writer(lambda: self._pragma("PRAGMA auto_vacuum = INCREMENTAL", "VACUUM"))
        else:
            while await self._on_writer(lambda: self._vacuum_step(step)):
                await asyncio.sleep(STEP_PAUSE)  # let a serving relay's writes in between
        for _ in range(50):  # a serving relay's write in progress makes it give up: try again
            if await self._on_writer(self._checkpoint):
                break
            await asyncio.sleep(STEP_PAUSE)

    def _vacuum_step(self, pages: int) -> bool:
        """One ``incremental_vacuum``; whether free pages are left (only with auto_vacuum on)."""
        conn = self._transaction().conn
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return False
        # executescript steps the pragma to its end; execute() would free one page and stop.
        conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")
        return bool(conn.execute("PRAGMA freelist_count").fetchone()[0])

    def _checkpoint(self) -> bool:
        """Move the whole log into the file and empty it (the file shrinks only then, in WAL mode)."""
        busy = self._transaction().conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return not busy or not busy[0]

    def _pragma(self, *statements: str) -> None:
        conn = self._transaction().conn
        for statement in statements:
            conn.execute(statement).fetchall()

    # -- group commit -------------------------------------------------------------------------

    def _enqueue(self, pending: _Pending) -> None:
        """Queue a grouped unit; one drain of the queue is scheduled on the writer at a time."""
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
        """Run the grouped units waiting now in one ``BEGIN … COMMIT``, each in its own savepoint.

        A unit that raises is rolled back alone; an error that can cost the whole transaction (disk
        full, I/O error, a failed ``COMMIT``) fails every unit of the group, none is answered success.
        """
        batch = self._take_group()
        if not batch:
            return
        try:
            tx = self._transaction()
            tx.conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                self._in_savepoint(tx, pending)
            tx.conn.execute("COMMIT")
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
    def _in_savepoint(tx: SQLiteTx, pending: _Pending) -> None:
        conn = tx.conn
        conn.execute("SAVEPOINT grouped")
        try:
            pending.value = drive(pending.unit(tx))
        except Exception as exc:
            if not conn.in_transaction or unavailable(exc) is not exc:
                raise  # the transaction is lost or cannot commit: the whole group fails
            conn.execute("ROLLBACK TO grouped")
            pending.error = exc
        conn.execute("RELEASE grouped")
