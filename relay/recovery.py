"""Did a create land upstream? The lookups the scheduler makes before it ever sends one twice.

``GET scheduler/`` names what runs now by ``replyRef``; ``GET tasks/`` also has what already ended
(matched by :func:`~.tasklookup.match_created`). A lookup that cannot be made is an answer too:
"unknown", and the create is not sent again until a lookup works.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from .errors import UpstreamError
from .storage import Store
from .tasklookup import Ambiguous, SentCreate, match_created
from .upstream import Upstream

log = logging.getLogger("runway_relay.scheduler")

BY_REPLY_REF = "by replyRef in GET scheduler/"


AMBIGUOUS_WAIT = 60.0  # seconds after a create during which several matching tasks are not guessed at


@dataclass(frozen=True)
class Found:
    """What a lookup learnt: the task (when it exists), where it was seen, and whether the lookup worked."""

    task: dict[str, Any] | None
    where: str = ""
    looked: bool = True


def sent_create(row: dict[str, Any], reply_ref: str) -> SentCreate:
    """A :class:`SentCreate` from a job row (``params``, ``account``, ``submitting_since``)."""
    params = json.loads(row["params"]) if isinstance(row["params"], str) else dict(row["params"])
    return SentCreate(
        job_id=row["id"],
        reply_ref=reply_ref,
        model=str(params.get("model")),
        prompt=params.get("text_prompt"),
        account=row.get("account") or params.get("email"),
        sent_at=float(row.get("submitting_since") or 0.0),
        seconds=_integer(params.get("duration")),
        seed=_integer(params.get("seed")),
    )


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Finder:
    """Looks a create up: first among running tasks, then among recent ones."""

    def __init__(self, upstream: Upstream, store: Store) -> None:
        self.upstream = upstream
        self.store = store

    async def running(self) -> dict[str, dict[str, Any]]:
        """``GET scheduler/`` by replyRef (raises :class:`UpstreamError` when it cannot be read)."""
        tasks = await self.upstream.scheduler()
        return {str(t["replyRef"]): t for t in tasks if t.get("replyRef") and t.get("taskId")}

    async def find(self, sent: SentCreate, running: dict[str, dict[str, Any]] | None = None) -> Found:
        """Look ``sent`` up (``running``: a ``GET scheduler/`` answer already in hand)."""
        try:
            if running is None:
                running = await self.running()
            if sent.reply_ref in running:
                return Found(running[sent.reply_ref], BY_REPLY_REF)
            recent = await self.upstream.recent_tasks(sent.account)
        except UpstreamError as exc:
            await self.store.record_lookup(
                sent.job_id, "error", f"looking the create up failed: {exc.message}"
            )
            return Found(None, looked=False)
        known = await self.store.known_task_ids([str(t.get("taskId")) for t in recent if t.get("taskId")])
        known |= {str(t["taskId"]) for ref, t in running.items() if ref != sent.reply_ref}
        try:
            task = match_created(recent, sent, known - {""})
        except Ambiguous as exc:
            if time.time() - sent.sent_at < AMBIGUOUS_WAIT:  # the others' answers may yet tell them apart
                await self.store.record_lookup(sent.job_id, "error", f"{exc}; looking again later")
                return Found(None, looked=False)
            # Still undecided: the tasks asked for the same thing, so take the earliest; the job left
            # over then sees one candidate fewer (the adopted task is known from now on).
            await self.store.record_lookup(sent.job_id, "ambiguous", f"{exc}; adopted the earliest")
            task = exc.earliest
        if task is not None:
            how = "replyRef" if task.get("replyRef") == sent.reply_ref else "model, prompt and time"
            return Found(dict(task), f"by {how} in GET tasks/ (it had ended already)")
        detail = f"{sent.reply_ref} is neither running nor among the recent tasks upstream"
        await self.store.record_lookup(sent.job_id, "not-found", detail)
        return Found(None)
