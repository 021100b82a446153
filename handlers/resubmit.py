"""``resubmit``: give a failed job another attempt, for transient failures only.

Never for moderation failures (Runway counts those against the account) nor for rejected creates
(400-class: the same request would be refused again). At most ``RELAY_RESUBMIT_MAX`` new attempts.
"""

from __future__ import annotations

from typing import Any

from ..states import Signal
from .base import HandlerContext, HandlerEvent, PermanentError


class ResubmitHandler:
    """Re-queues the job as its next attempt; the scheduler does the rest."""

    name = "resubmit"
    events = frozenset({Signal.FAILED})
    max_attempts = 3

    def __init__(self, ctx: HandlerContext) -> None:
        self.ctx = ctx

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Re-submit when allowed; the output says why not otherwise."""
        limit = self.ctx.settings.resubmit_max
        if job["status"] != "failed":
            return f"not re-submitted: the job is {job['status']}"
        if job.get("error_kind") == "moderation":
            return "not re-submitted: moderation failure"
        if job["attempt"] > limit:
            return f"not re-submitted: {limit} re-submission(s) already used"
        if self.ctx.resubmit is None:
            raise PermanentError("this relay cannot re-submit jobs (no resubmit in the handler context)")
        attempt = await self.ctx.resubmit(job["id"], limit)
        if attempt is None:
            return "not re-submitted: the job moved on"
        return f"re-submitted as attempt {attempt}"
