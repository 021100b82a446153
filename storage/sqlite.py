"""The SQLite backend (sqlite-utils, WAL, one writer thread).

Every public method is ``async``; its body runs on one dedicated thread that owns the connection, so
writes are serialised (no "database is locked" between our own tasks) and the event loop never blocks
on disk. Each write that belongs together happens in ONE transaction. The methods are grouped by
concern in the mixin modules beside this one.
"""

from __future__ import annotations

from .base import Listening, Route, token_hash
from .catalog import CatalogMixin
from .insights import InsightsMixin
from .jobs import JobsMixin
from .outbox import OutboxMixin
from .submits import SubmitMixin
from .updates import UpdatesMixin


class SQLiteStore(JobsMixin, SubmitMixin, UpdatesMixin, OutboxMixin, CatalogMixin, InsightsMixin):
    """Jobs, attempts, events, transitions, handler runs and artifacts in one SQLite file."""


__all__ = ["Listening", "Route", "SQLiteStore", "token_hash"]
