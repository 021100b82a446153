"""The named blinker signals of a job's life (contract §7), all in one namespace.

Each is sent AFTER the transition is committed, with ``sender`` the relay app and keyword arguments
``job`` (the job JSON), ``signal`` (the :class:`~runway_relay.states.Signal`) and ``transition_id``.
Receivers run in the event loop and must not block; durable work belongs in a handler (the outbox row
is the record, the signal only the trigger).
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

from .states import Signal

namespace = Namespace()

job_submitted = namespace.signal("job-submitted", doc="The upstream accepted the create.")
job_progress = namespace.signal("job-progress", doc="Status or progress moved forward.")
job_succeeded = namespace.signal("job-succeeded", doc="The video is ready upstream.")
job_failed = namespace.signal("job-failed", doc="The task failed or the create was rejected.")
job_cancelled = namespace.signal("job-cancelled", doc="A user cancelled the job.")

_BY_NAME = {
    Signal.SUBMITTED: job_submitted,
    Signal.PROGRESS: job_progress,
    Signal.SUCCEEDED: job_succeeded,
    Signal.FAILED: job_failed,
    Signal.CANCELLED: job_cancelled,
}


def signal_for(signal: Signal) -> NamedSignal:
    """The blinker signal object for a transition signal."""
    return _BY_NAME[signal]


def send(sender: Any, signal: Signal, job: dict[str, Any], transition_id: int | None) -> None:
    """Fire ``signal`` for ``job``; a failing receiver is logged, never breaks the caller."""
    try:
        signal_for(signal).send(sender, job=job, signal=signal, transition_id=transition_id)
    except Exception:
        logging.getLogger("runway_relay.signals").exception(
            "signal receiver failed signal=%s job=%s", signal.value, job.get("id")
        )
