"""What a handler is: a name, the signals it wants, and an async ``run(job, event)``.

Third-party handlers register under the entry-point group ``runway_relay.handlers``; the entry point
names a callable that takes a :class:`HandlerContext` and returns a handler.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from ..settings import Settings
from ..states import Signal

if TYPE_CHECKING:
    from ..storage import SQLiteStore


@dataclass(frozen=True)
class HandlerEvent:
    """The transition a handler run belongs to."""

    signal: Signal
    run_id: int
    attempt: int  # 1 for the first try of this run
    transition_id: int | None


@dataclass
class HandlerContext:
    """What handlers may use: settings, the store, one shared HTTP client and a logger."""

    settings: Settings
    store: SQLiteStore
    http: httpx.AsyncClient
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("runway_relay.handlers"))
    dashboard_url: str | None = None


class PermanentError(Exception):
    """Raise from ``run`` when retrying cannot help; the run ends ``dead`` at once."""


@runtime_checkable
class Handler(Protocol):
    """The handler interface. ``run`` returns a short text kept as the run's output, or ``None``."""

    name: str
    events: frozenset[Signal]
    max_attempts: int

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None: ...


HandlerFactory = Callable[[HandlerContext], Handler]
