"""Finding a create that may have landed upstream: pure matching, no I/O.

After a crash between sending ``videos/create`` and recording its answer (or after a 5xx), the relay
must learn whether the task exists before it ever sends the create again. ``GET scheduler/`` lists what
runs now, by ``replyRef``; a task that already ended is only in ``GET tasks/``, whose entries may lack
the ``replyRef``, so they are matched by model, prompt, account and creation time instead
(``useapi-notes.md``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .taskparse import account_of

CLOCK_SKEW = 120.0  # seconds a task's createdAt may precede our send time (clocks disagree)


@dataclass(frozen=True)
class SentCreate:
    """What the relay knows of a create it may have sent."""

    job_id: str
    reply_ref: str
    model: str
    prompt: str | None
    account: str | None
    sent_at: float  # epoch seconds; the create went out at or after this
    seconds: int | None = None  # the duration asked for (the task's ``options.seconds``)
    seed: int | None = None  # the seed asked for, if any (the task's ``options.seed``)


def created_at(task: Mapping[str, Any]) -> float | None:
    """A task's ``createdAt`` in epoch seconds, or ``None`` when missing or unreadable."""
    raw = task.get("createdAt")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _matches(task: Mapping[str, Any], sent: SentCreate) -> bool:
    if task.get("taskType") != sent.model:
        return False
    options = task.get("options") if isinstance(task.get("options"), dict) else {}
    if (options.get("text_prompt") or None) != (sent.prompt or None):
        return False
    if sent.account and account_of(task.get("taskId")) not in (None, sent.account):
        return False
    for asked, listed in ((sent.seconds, options.get("seconds")), (sent.seed, options.get("seed"))):
        if asked is not None and listed is not None and str(listed) != str(asked):
            return False
    when = created_at(task)
    return when is not None and when >= sent.sent_at - CLOCK_SKEW


class Ambiguous(Exception):
    """Several listed tasks could be the create: adopting one might take another job's task."""

    def __init__(self, sent: SentCreate, candidates: list[Mapping[str, Any]]) -> None:
        super().__init__(f"{len(candidates)} recent tasks match {sent.reply_ref}'s model, prompt and time")
        self.earliest = min(candidates, key=lambda t: created_at(t) or 0.0)


def match_created(
    tasks: Iterable[Mapping[str, Any]], sent: SentCreate, known: Collection[str] = ()
) -> Mapping[str, Any] | None:
    """The listed task that is ``sent``'s create, or ``None``.

    A task carrying ``sent``'s replyRef is it. Otherwise the one task created after the send, with
    the same model, prompt, account, duration and seed and no replyRef of its own, that no other job
    owns (``known`` task ids: recorded by a job, or running under another replyRef). Raises
    :class:`Ambiguous` when more than one fits: two jobs asked for the same thing at about the same
    time (a compare group, image-to-video without a prompt), and only their replyRefs tell them apart.
    """
    candidates = []
    for task in tasks:
        task_id = task.get("taskId")
        if not isinstance(task_id, str):
            continue
        ref = task.get("replyRef")
        if ref == sent.reply_ref:
            return task
        if ref or task_id in known or not _matches(task, sent):
            continue
        candidates.append(task)
    if len(candidates) > 1:
        raise Ambiguous(sent, candidates)
    return candidates[0] if candidates else None
