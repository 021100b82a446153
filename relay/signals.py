"""The named blinker signals of a job's life (contract §7) and of an account's, all in one namespace.

Job signals are sent AFTER the transition is committed, with ``sender`` the relay app and keyword
arguments ``job`` (the job JSON), ``signal`` (the :class:`~runway_relay.states.Signal`) and
``transition_id``. Account signals are sent after the notice is committed, with ``notice`` (the
notice JSON: ``id``, ``signal``, ``email``, ``at``, ``reason`` and what else the notice tells),
``signal`` (the :class:`~runway_relay.states.AccountSignal`) and ``notice_id``.

Receivers run in the event loop and must not block; durable work belongs in a handler (the outbox row
is the record, the signal only the trigger).
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import NamedSignal, Namespace

from .states import AccountSignal, AnySignal, Signal

namespace = Namespace()

job_submitted = namespace.signal("job-submitted", doc="The upstream accepted the create.")
job_progress = namespace.signal("job-progress", doc="Status or progress moved forward.")
job_succeeded = namespace.signal("job-succeeded", doc="The video is ready upstream.")
job_failed = namespace.signal("job-failed", doc="The task failed or the create was rejected.")
job_cancelled = namespace.signal("job-cancelled", doc="A user cancelled the job.")
account_paused = namespace.signal(
    "account-paused",
    doc="Too many moderation failures: the account takes no new creates until the pause ends.",
)
account_resumed = namespace.signal("account-resumed", doc="A pause or an exclusion was lifted by hand.")
account_credits_low = namespace.signal(
    "account-credits-low", doc="The account's credits fell below RELAY_CREDITS_LOW (once per crossing)."
)
account_out_of_rotation = namespace.signal(
    "account-out-of-rotation", doc="The account's session failed again and again: it takes no creates."
)

_BY_NAME: dict[AnySignal, NamedSignal] = {
    Signal.SUBMITTED: job_submitted,
    Signal.PROGRESS: job_progress,
    Signal.SUCCEEDED: job_succeeded,
    Signal.FAILED: job_failed,
    Signal.CANCELLED: job_cancelled,
    AccountSignal.PAUSED: account_paused,
    AccountSignal.RESUMED: account_resumed,
    AccountSignal.CREDITS_LOW: account_credits_low,
    AccountSignal.OUT_OF_ROTATION: account_out_of_rotation,
}


def signal_for(signal: AnySignal) -> NamedSignal:
    """The blinker signal object for a job or account signal."""
    return _BY_NAME[signal]


def send(sender: Any, signal: Signal, job: dict[str, Any], transition_id: int | None) -> None:
    """Fire ``signal`` for ``job``; a failing receiver is logged, never breaks the caller."""
    try:
        signal_for(signal).send(sender, job=job, signal=signal, transition_id=transition_id)
    except Exception:
        logging.getLogger("runway_relay.signals").exception(
            "signal receiver failed signal=%s job=%s", signal.value, job.get("id")
        )


def send_account(sender: Any, signal: AccountSignal, notice: dict[str, Any]) -> None:
    """Fire an account signal for ``notice``; a failing receiver is logged, never breaks the caller."""
    try:
        signal_for(signal).send(sender, notice=notice, signal=signal, notice_id=notice.get("id"))
    except Exception:
        logging.getLogger("runway_relay.signals").exception(
            "signal receiver failed signal=%s account=%s", signal.value, notice.get("email")
        )
