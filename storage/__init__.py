"""Storage: the only package that speaks SQL.

``open_store(url)`` picks the backend; today that is SQLite (``RELAY_DB`` a file path). Everything above
this package talks to the async methods of :class:`SQLiteStore` and never to SQL.
"""

from __future__ import annotations

from .records import IngestResult, SubmitTicket, iso_now
from .sqlite import Listening, Route, SQLiteStore

Store = SQLiteStore


def open_store(url: str, route: Route | None = None, listening: Listening | None = None) -> SQLiteStore:
    """A store for ``RELAY_DB`` (call ``await store.open()`` before use).

    ``route`` names the handlers a transition runs; ``listening`` tells whether anyone will read the
    job JSON of an update that fires a given signal (default: always build it).
    """
    if url.startswith(("postgresql://", "postgres://")):
        raise ValueError("RELAY_DB: the PostgreSQL backend is not available yet; use a file path")
    return SQLiteStore(url, route, listening)


__all__ = [
    "IngestResult",
    "Listening",
    "Route",
    "SQLiteStore",
    "Store",
    "SubmitTicket",
    "iso_now",
    "open_store",
]
