"""The job state machine: pure, no I/O.

A job's position is ``(attempt, rank(status), progress)`` and it only ever moves forward in that order.
Upstream callbacks (and polls) may repeat or arrive out of order; :func:`on_update` classifies each one as
``applied`` (the job moves forward), ``duplicate`` (nothing new) or ``stale`` (older than what we know).
Terminal states are final within an attempt; only the relay itself (the ``resubmit`` handler) opens a new
attempt after a failure, and callbacks of a superseded attempt are stale from then on.

Allowed moves, in one place::

    queued ──► submitted ──► pending ──► throttled ──► running ──► succeeded | failed
       │            └──────────┴────────────┴─────────────┴──────► (any later one)
       ├──► rejected                       (upstream refused the create: 400/401/402)
       └──► cancelled  ◄── from any non-terminal state
    failed ──► queued (attempt + 1)         (resubmit)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """Every status a job can have, in the order a job normally moves through them."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    PENDING = "pending"
    THROTTLED = "throttled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Outcome(StrEnum):
    """What an incoming update did to the job."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"


class Signal(StrEnum):
    """The transition signals handlers subscribe to (contract §7)."""

    SUBMITTED = "job-submitted"
    PROGRESS = "job-progress"
    SUCCEEDED = "job-succeeded"
    FAILED = "job-failed"
    CANCELLED = "job-cancelled"


class AccountSignal(StrEnum):
    """What happened to a Runway account (see :mod:`runway_relay.guard`); handlers may subscribe too."""

    PAUSED = "account-paused"  # too many moderation failures: no new creates until the pause ends
    RESUMED = "account-resumed"  # lifted by hand (POST /api/accounts/{email}/resume)
    CREDITS_LOW = "account-credits-low"  # below RELAY_CREDITS_LOW (once per crossing)
    OUT_OF_ROTATION = "account-out-of-rotation"  # its session failed again and again


AnySignal = Signal | AccountSignal


class RunStatus(StrEnum):
    """Where one handler run stands in the outbox."""

    PENDING = "pending"  # waiting to be claimed (first try, or a retry at ``next_at``)
    RUNNING = "running"  # claimed by a relay, under its lease
    DONE = "done"
    DEAD = "dead"  # gave up (permanent error or out of attempts); replayable


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.REJECTED})
ACTIVE = frozenset({Status.SUBMITTED, Status.PENDING, Status.THROTTLED, Status.RUNNING})

_RANK = {
    Status.QUEUED: 0,
    Status.SUBMITTED: 1,
    Status.PENDING: 2,
    Status.THROTTLED: 3,
    Status.RUNNING: 4,
    Status.SUCCEEDED: 5,
    Status.FAILED: 5,
    Status.CANCELLED: 5,
    Status.REJECTED: 5,
}

UPSTREAM_STATUS = {
    "PENDING": Status.PENDING,
    "THROTTLED": Status.THROTTLED,
    "RUNNING": Status.RUNNING,
    "SUCCEEDED": Status.SUCCEEDED,
    "FAILED": Status.FAILED,
}

_SIGNAL_FOR = {
    Status.SUCCEEDED: Signal.SUCCEEDED,
    Status.FAILED: Signal.FAILED,
    Status.REJECTED: Signal.FAILED,
    Status.CANCELLED: Signal.CANCELLED,
}

# Progress steps smaller than this are treated as the same progress (string/float round trips).
_PROGRESS_EPSILON = 1e-9


class TransitionError(ValueError):
    """The relay asked for a move the state machine does not allow (e.g. cancel a finished job)."""


@dataclass(frozen=True)
class JobState:
    """Where a job stands. ``progress`` is 0.0–1.0."""

    status: Status
    attempt: int = 1
    progress: float = 0.0

    @property
    def terminal(self) -> bool:
        """True once nothing but a resubmit can move this attempt."""
        return self.status in TERMINAL


@dataclass(frozen=True)
class Decision:
    """The state machine's answer: how the update is recorded and, when applied, the new state."""

    outcome: Outcome
    state: JobState
    signal: Signal | None = None

    @property
    def applied(self) -> bool:
        """True when the job moved."""
        return self.outcome is Outcome.APPLIED


def rank(status: Status) -> int:
    """Position of ``status`` in the forward order (all terminal states share the top rank)."""
    return _RANK[status]


def clamp_progress(value: float | None) -> float | None:
    """A finite progress in 0.0–1.0, or ``None`` when the value says nothing usable."""
    if value is None or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, value))


def _signal_for_move(old: Status, new: Status) -> Signal:
    if new in _SIGNAL_FOR:
        return _SIGNAL_FOR[new]
    if old is Status.QUEUED:
        return Signal.SUBMITTED
    return Signal.PROGRESS


def on_update(current: JobState, attempt: int, status: Status, progress: float | None = None) -> Decision:
    """Decide what an upstream update (callback or poll) for ``attempt`` does to ``current``."""
    progress = clamp_progress(progress)
    if status is Status.SUCCEEDED:
        progress = 1.0
    if attempt != current.attempt:
        return Decision(Outcome.STALE, current)
    if current.terminal:
        same = status is current.status and (progress is None or progress <= current.progress)
        return Decision(Outcome.DUPLICATE if same else Outcome.STALE, current)
    old_rank, new_rank = rank(current.status), rank(status)
    if new_rank < old_rank:
        return Decision(Outcome.STALE, current)
    new_progress = current.progress if progress is None else max(current.progress, progress)
    if new_rank > old_rank:
        new_state = JobState(status, current.attempt, new_progress)
        return Decision(Outcome.APPLIED, new_state, _signal_for_move(current.status, status))
    if progress is None or progress <= current.progress + _PROGRESS_EPSILON:
        older = progress is not None and progress < current.progress - _PROGRESS_EPSILON
        return Decision(Outcome.STALE if older else Outcome.DUPLICATE, current)
    return Decision(Outcome.APPLIED, JobState(status, current.attempt, progress), Signal.PROGRESS)


def on_submitted(current: JobState) -> Decision:
    """The create call was accepted. A callback may already have moved the job further."""
    if current.status is Status.QUEUED:
        return Decision(Outcome.APPLIED, JobState(Status.SUBMITTED, current.attempt, 0.0), Signal.SUBMITTED)
    return Decision(Outcome.DUPLICATE, current)


def on_rejected(current: JobState) -> Decision:
    """The upstream refused the create (400/401/402): the job ends ``rejected``."""
    if current.status is not Status.QUEUED:
        raise TransitionError(f"a {current.status} job cannot be rejected")
    return Decision(
        Outcome.APPLIED, JobState(Status.REJECTED, current.attempt, current.progress), Signal.FAILED
    )


def on_cancel(current: JobState) -> Decision:
    """The user cancelled the job."""
    if current.terminal:
        raise TransitionError(f"the job already ended ({current.status}); nothing to cancel")
    return Decision(
        Outcome.APPLIED, JobState(Status.CANCELLED, current.attempt, current.progress), Signal.CANCELLED
    )


def on_resubmit(current: JobState) -> Decision:
    """Open the next attempt of a failed job; it waits in the queue for a slot."""
    if current.status is not Status.FAILED:
        raise TransitionError(f"only a failed job can be re-submitted, this one is {current.status}")
    return Decision(Outcome.APPLIED, JobState(Status.QUEUED, current.attempt + 1, 0.0))
