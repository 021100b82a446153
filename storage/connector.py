"""The narrow seam between the store's logic and a database (procrastinate calls it a connector).

Every query of the relay is written once, as an ``async`` *unit* that takes a :class:`Tx` and runs
plain SQL with ``?`` placeholders through it. A :class:`Connector` runs units: SQLite on its one writer
thread, PostgreSQL on a pool of async connections. Nothing above this module knows which one it is.

The few places where the two SQL dialects differ are attributes of the transaction, spelled into the
SQL where they are needed: ``tx.for_update`` (lock the rows read, for a read-modify-write),
``tx.skip_locked`` (claim rows nobody else holds) and ``tx.now`` (the database's clock, in epoch
seconds, so relays on several machines agree on when a lease ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

R = TypeVar("R")
Args = Sequence[Any]


class Tx(Protocol):
    """One transaction (or, for reads, one connection) as the store's logic sees it."""

    dialect: str  # "sqlite" or "postgresql": for the migration runner and error texts only
    for_update: str  # appended to a SELECT whose rows the unit will update
    skip_locked: str  # appended to a SELECT that claims rows another relay may be claiming too
    now: str  # an SQL expression: the database's clock in epoch seconds
    # ``from jobs{tx.ended_jobs_index}``: SQLite's planner prefers the status index and sorts, which
    # at 100k finished jobs costs 50 ms a query; PostgreSQL finds the partial index (m008) itself.
    ended_jobs_index: str

    async def execute(self, sql: str, args: Args = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        ...

    async def run(self, sql: str, args: Args = ()) -> None:
        """Run one statement whose outcome the unit does not look at (an error still raises)."""
        ...

    async def rows(self, sql: str, args: Args = ()) -> list[dict[str, Any]]:
        """Run a query; every row as a dict keyed by column name."""
        ...

    async def one(self, sql: str, args: Args = ()) -> dict[str, Any] | None:
        """The first row of a query, or ``None``."""
        ...

    async def insert(self, sql: str, args: Args = ()) -> int:
        """Run an ``INSERT`` into a table whose key is ``id``; returns the new row's id."""
        ...

    async def notify(self, message: dict[str, Any]) -> None:
        """Tell the other relays sharing this database, once (and only if) this transaction commits."""
        ...

    async def lock_schema(self) -> None:
        """Hold the schema lock until the end of this transaction (migrations run under it)."""
        ...


Unit = Callable[[Tx], Awaitable[R]]
Notice = Callable[[str | None], None]  # None: notices may have been missed


class Connector(Protocol):
    """Runs units against one database."""

    url: str
    exclusive: bool  # True when one process owns the database (SQLite): nobody else can hold a lease

    async def open(self) -> None:
        """Connect (migrations are the store's business, not the connector's)."""
        ...

    async def close(self) -> None:
        """Wait for work in progress and disconnect."""
        ...

    async def write(self, unit: Unit[R], *, grouped: bool = False) -> R:
        """Run ``unit`` in one transaction; answered only once it is durably committed.

        ``grouped``: the unit may share its transaction (and its fsync) with others that arrive at the
        same time, each in a savepoint of its own, so one that raises is rolled back alone.
        """
        ...

    async def read(self, unit: Unit[R]) -> R:
        """Run a read-only ``unit`` (it sees committed data; it must not write)."""
        ...

    async def size(self) -> int:
        """Bytes the database takes on disk (SQLite: the file and its log; PostgreSQL: the database)."""
        ...

    async def reclaim(self, tables: Sequence[str] = (), *, full: bool = False, step: int = 256) -> None:
        """After deletes: give freed space back (SQLite, in small steps; ``full``: one blocking
        VACUUM) or make it reusable (PostgreSQL: plain ``VACUUM (ANALYZE)`` of ``tables``)."""
        ...

    async def listen(self, on_notice: Notice) -> None:
        """Deliver what other processes :meth:`Tx.notify` (as JSON text) to ``on_notice``, until
        :meth:`close`; ``None`` when notices may have been lost (a broken connection)."""
        ...


def drive(awaitable: Awaitable[R]) -> R:
    """Run a unit whose awaits never suspend (every SQLite call completes at once) to its end.

    This lets the SQLite connector run the same ``async`` units as PostgreSQL, synchronously, on the
    thread that owns the connection, with no event loop there.
    """
    coroutine = awaitable.__await__()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a storage unit awaited something other than the database; units may only query")
