"""Storage: the only package that speaks SQL.

``open_store(RELAY_DB)`` picks the database — a file path for SQLite (the embedded default), a
``postgresql://`` URL for PostgreSQL, which several relays may share — and everything above this package
talks to the :class:`Store` protocol only, never knowing which one it is.
"""

from __future__ import annotations

import sqlite3

from ..errors import StorageUnavailable
from .accounts import avoided, iso_at
from .interface import JobView, Store
from .notices import Notice
from .records import IngestResult, Moved, Routing, SubmitTicket, iso_now
from .retention import PruneBatch
from .sqlite import DatabaseInUse
from .store import SqlStore
from .submits import SCHEDULER_LEASE

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    """Whether ``RELAY_DB`` names a PostgreSQL database."""
    return url.startswith(POSTGRES_SCHEMES)


async def check(url: str) -> str | None:
    """Whether a relay can serve ``RELAY_DB`` now: ``None``, or what is wrong, in words.

    Opens it as ``serve`` will (migrations included) and closes it again, so a mistake stops ``serve``
    with a clear message instead of a traceback at start-up.
    """
    try:
        store = open_store(url)
        await store.open()
    except (StorageUnavailable, DatabaseInUse, ImportError) as exc:
        return str(exc)
    except sqlite3.DatabaseError as exc:  # a file that is not a SQLite database, a corrupt one
        return f"RELAY_DB={url} cannot be used as a SQLite database: {exc}"
    except Exception as exc:  # the database refused the schema (permissions, an older server…)
        return f"RELAY_DB cannot be used: {type(exc).__name__}: {exc}"
    await store.close()
    return None


def served(url: str) -> bool:
    """Whether ``RELAY_DB`` is a SQLite file a relay serves now: tools that write much (``prune``)
    then go through that relay rather than wait in the file's lock beside it."""
    if is_postgres(url):
        return False
    from .sqlite import served as sqlite_served

    return sqlite_served(url)


def open_store(url: str, routing: Routing | None = None, *, origin: str = "", owner: bool = True) -> Store:
    """A store for ``RELAY_DB`` (call ``await store.open()`` before use).

    ``routing`` names the handlers each signal runs; ``origin`` is this relay's id (its notices to
    other relays carry it); ``owner`` is False for tools (``prune``, ``backup``) that open the
    database of a serving relay beside it.
    """
    if is_postgres(url):
        from .postgres import PostgresConnector

        return SqlStore(PostgresConnector(url), routing, origin)
    from .sqlite import SQLiteConnector

    # A tool's writes (prune) need not be fsync'd at each commit: one lost on power failure is done
    # again next time, and each fsync is time a serving relay's writer waits for the file.
    return SqlStore(
        SQLiteConnector(url, owner=owner, synchronous="FULL" if owner else "NORMAL"), routing, origin
    )


__all__ = [
    "SCHEDULER_LEASE",
    "DatabaseInUse",
    "IngestResult",
    "JobView",
    "Moved",
    "Notice",
    "PruneBatch",
    "Routing",
    "Store",
    "SubmitTicket",
    "avoided",
    "is_postgres",
    "iso_at",
    "iso_now",
    "open_store",
    "served",
]
