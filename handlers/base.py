"""What a handler is: a name, the signals it wants, and an async ``run(job, event)``.

Third-party handlers register under the entry-point group ``runway_relay.handlers``; the entry point
names a callable that takes a :class:`HandlerContext` and returns a handler.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from ..settings import Settings
from ..states import AnySignal

if TYPE_CHECKING:
    from ..storage import JobView


@dataclass(frozen=True)
class HandlerEvent:
    """The transition (or account notice) a handler run belongs to.

    With an :class:`~runway_relay.states.AccountSignal` the run is about an account, not a job:
    ``run`` gets the notice JSON (``id``, ``signal``, ``email``, ``at``, ``reason``…) instead of a job,
    and ``transition_id`` is ``None``.
    """

    signal: AnySignal
    run_id: int
    attempt: int  # 1 for the first try of this run
    transition_id: int | None


Resubmit = Callable[[str, int], Awaitable[int | None]]


@dataclass
class HandlerContext:
    """What handlers may use: settings, a narrow view of the store, one shared HTTP client, a logger.

    ``store`` reads jobs and records artifacts, nothing more. ``resubmit(job_id, max_attempts)`` opens a
    failed job's next attempt through the relay (announced like any other move) and returns its number,
    or ``None`` when the job has no attempts left or moved on.
    """

    settings: Settings
    store: JobView
    http: httpx.AsyncClient
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("runway_relay.handlers"))
    dashboard_url: str | None = None
    resubmit: Resubmit | None = None


class PermanentError(Exception):
    """Raise from ``run`` when retrying cannot help; the run ends ``dead`` at once."""


class RetryAfter(Exception):
    """Raise from ``run`` when the receiver asked to wait (HTTP 429 ``Retry-After``).

    The dispatcher schedules the next try no sooner than ``seconds`` from now (and no sooner than
    its own backoff); the try still counts towards ``max_attempts``.
    """

    def __init__(self, seconds: float, message: str | None = None) -> None:
        self.seconds = max(0.0, float(seconds))
        super().__init__(message or f"rate limited; asked to retry after {self.seconds:g} s")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@runtime_checkable
class Handler(Protocol):
    """The handler interface. ``run`` returns a short text kept as the run's output, or ``None``.

    A handler may also set ``after``: names of handlers whose runs for the same event must finish
    (done or dead) before its own run starts. A handler whose ``events`` include account signals
    (``account-paused``…) gets, for those, the notice JSON as its first argument.
    """

    name: str
    events: frozenset[AnySignal]
    max_attempts: int

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None: ...


HandlerFactory = Callable[[HandlerContext], Handler]
