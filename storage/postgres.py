"""The PostgreSQL connector: psycopg 3 (async) over a psycopg_pool pool, for several relays on one database.

Each unit runs in a transaction of its own on a pooled connection, one round trip per statement
(psycopg's pipeline mode was measured slower for these short transactions: ``bench/RESULTS.md``).
Concurrent units commit in parallel and PostgreSQL flushes their commits to the WAL together, which
is what shares commits between callbacks here (``grouped`` matters to SQLite only). A unit that
lost a deadlock or a serialization conflict to another relay is run again from the start (it has no
effect outside the database). Queries keep the store's ``?`` placeholders and are sent as ``$1,
$2…`` through a raw (server-side binding) cursor, which psycopg prepares once they repeat.

:meth:`PostgresConnector.listen` holds one more connection that ``LISTEN`` s for what other relays
:meth:`~.connector.Tx.notify`; when that connection breaks it reconnects, and tells the listener
(``None``) that notices may have been missed so it can catch up by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from ..backoff import exponential
from ..errors import StorageUnavailable
from .connector import Args, Notice, Unit

try:
    import psycopg
    from psycopg import errors as pg_errors
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "RELAY_DB is a postgresql:// URL but the PostgreSQL driver is not installed: "
        "pip install 'runway-relay[postgres]'"
    ) from exc

log = logging.getLogger("runway_relay.storage")

R = TypeVar("R")
CHANNEL = "runway_relay"
SCHEMA_LOCK = 0x52454C4159  # pg_advisory_xact_lock key of the migrations ("RELAY")
RETRIES = 8  # deadlocks and serialization failures
_PLACEHOLDER = re.compile(r"'[^']*'|\?")
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)
_UNAVAILABLE = (
    pg_errors.ReadOnlySqlTransaction,
    pg_errors.DiskFull,
    pg_errors.InsufficientResources,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
)


@functools.lru_cache(maxsize=2048)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2…`` (quoted literals are left alone)."""
    counter = iter(range(1, 10_000))

    def swap(match: re.Match[str]) -> str:
        return f"${next(counter)}" if match[0] == "?" else match[0]

    return _PLACEHOLDER.sub(swap, sql)


def _args(args: Args) -> list[Any]:
    # The schema keeps flags as integers, as SQLite does; psycopg would send a bool as boolean.
    return [int(a) if a.__class__ is bool else a for a in args]


def describe(url: str) -> str:
    """``host:port/dbname`` of a connection URL, without the password (for messages and logs)."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (an unreadable RELAY_DB URL)"
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _table(name: str) -> str:
    """A table name the store chose, checked before it is spelled into VACUUM (no placeholders there)."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a table name: {name!r}")
    return name


async def _database_size(tx: Any) -> int:
    row = await tx.one("select pg_database_size(current_database()) as n")
    return int(row["n"]) if row else 0


class PostgresTx:
    """A :class:`~.connector.Tx` over one pooled connection."""

    dialect = "postgresql"
    for_update = " for update"
    skip_locked = " for update skip locked"
    now = "extract(epoch from clock_timestamp())::float8"
    ended_jobs_index = ""

    def __init__(
        self, conn: psycopg.AsyncConnection[dict[str, Any]], pipeline: psycopg.AsyncPipeline | None = None
    ) -> None:
        self.conn = conn
        self.pipeline = pipeline

    async def run(self, sql: str, args: Args = ()) -> None:
        await self.conn.execute(numbered(sql), _args(args))

    async def execute(self, sql: str, args: Args = ()) -> int:
        cursor = await self.conn.execute(numbered(sql), _args(args))
        if self.pipeline is not None:
            await self.pipeline.sync()  # the row count is known only once the answer is in
        return cursor.rowcount

    async def rows(self, sql: str, args: Args = ()) -> list[dict[str, Any]]:
        cursor = await self.conn.execute(numbered(sql), _args(args))
        return await cursor.fetchall()

    async def one(self, sql: str, args: Args = ()) -> dict[str, Any] | None:
        cursor = await self.conn.execute(numbered(sql), _args(args))
        return await cursor.fetchone()

    async def insert(self, sql: str, args: Args = ()) -> int:
        cursor = await self.conn.execute(numbered(sql + " returning id"), _args(args))
        row = await cursor.fetchone()
        return int(row["id"]) if row else 0

    async def notify(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":"))
        await self.conn.execute("select pg_notify($1, $2)", [CHANNEL, payload])

    async def lock_schema(self) -> None:
        await self.conn.execute("select pg_advisory_xact_lock($1)", [SCHEMA_LOCK])
        if self.pipeline is not None:
            await self.pipeline.sync()


class PostgresConnector:
    """See the module docstring."""

    exclusive = False

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 12, timeout: float = 10.0) -> None:
        self.url = url
        self.where = describe(url)
        self._pool = AsyncConnectionPool(
            url,
            kwargs={"autocommit": True, "row_factory": dict_row, "cursor_factory": psycopg.AsyncRawCursor},
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            open=False,
            name="runway-relay",
        )
        self._listener: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:  # one plain attempt first: a wrong URL or a server that is down fails fast, and says why
            probe = await psycopg.AsyncConnection.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
            message = f"cannot connect to PostgreSQL at {self.where}: {reason} (check RELAY_DB)"
            raise StorageUnavailable(message) from None
        await probe.close()
        try:
            await self._pool.open(wait=True, timeout=15.0)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            await self._pool.close()
            raise StorageUnavailable(
                f"cannot connect to PostgreSQL at {self.where}: is the server running, and does the "
                "database exist? (check RELAY_DB)"
            ) from exc

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._pool.close()

    async def write(self, unit: Unit[R], *, grouped: bool = False) -> R:
        for attempt in range(1, RETRIES + 1):
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    return await unit(PostgresTx(conn))
            except _RETRYABLE:
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(exponential(attempt, base=0.005, cap=0.2))
            except (PoolTimeout, psycopg.OperationalError, *_UNAVAILABLE) as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")

    async def read(self, unit: Unit[R]) -> R:
        try:
            async with self._pool.connection() as conn:
                return await unit(PostgresTx(conn))
        except (PoolTimeout, psycopg.OperationalError, *_UNAVAILABLE) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        what = type(exc).__name__
        return StorageUnavailable(f"PostgreSQL at {self.where} cannot take writes now ({what}); retry later")

    # -- size and space -----------------------------------------------------------------------

    async def size(self) -> int:
        """Bytes the database takes on the server."""
        return await self.read(_database_size)

    async def reclaim(self, tables: Sequence[str] = (), *, full: bool = False, step: int = 0) -> None:
        """``VACUUM (ANALYZE)`` the ``tables``: the space of deleted rows is reused (the files do not
        shrink; ``VACUUM FULL`` would, but it locks each table, so it is left to the operator). Plain
        VACUUM runs beside the relays' writes. ``full`` is accepted and means the same here."""
        if not tables:
            return
        names = ", ".join(_table(t) for t in tables)
        try:  # pooled connections are in autocommit mode: VACUUM cannot run inside a transaction
            async with self._pool.connection() as conn:
                await conn.execute(f"vacuum (analyze) {names}")
        except (PoolTimeout, psycopg.OperationalError, *_UNAVAILABLE) as exc:
            raise self._unavailable(exc) from exc

    # -- notices from the other relays --------------------------------------------------------

    async def listen(self, on_notice: Notice) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(on_notice), name="relay-pg-listen")

    async def _listen(self, on_notice: Notice) -> None:
        tries = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
                async with conn:
                    await conn.execute(f"listen {CHANNEL}")
                    if tries:
                        log.info("listening to the other relays again (%s)", self.where)
                        on_notice(None)  # what was said while we were away is lost: catch up
                    tries = 0
                    async for notice in conn.notifies():
                        on_notice(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                tries += 1
                wait = exponential(tries, base=0.5, cap=10.0)
                log.warning(
                    "lost the notification connection to %s (%s); polling until it is back in %.1f s",
                    self.where,
                    type(exc).__name__,
                    wait,
                )
                on_notice(None)
                await asyncio.sleep(wait)
