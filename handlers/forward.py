"""``forward``: POST every job and account event to ``RELAY_FORWARD_URL``, signed per Standard Webhooks.

Body: ``{"type": "job.succeeded", "timestamp": "<when the transition happened>", "data": <job JSON>}``;
for an account, ``{"type": "account.paused", "timestamp": "<when>", "data": <notice JSON: id, signal,
email, at, reason, until…>}``. Headers: ``webhook-id`` (``msg_<job id>_<transition id>``, or
``msg_account_<notice id>``: the same for every retry and replay of one event, so receivers can
dedupe), ``webhook-timestamp`` (when this delivery was signed) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256>`` with ``RELAY_FORWARD_SECRET``), made with the ``standardwebhooks`` package.
Verify on the receiving side with ``Webhook(secret).verify(body, headers)``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from ..states import AccountSignal, AnySignal, Signal
from .base import HandlerContext, HandlerEvent
from .notify import post, required

EVENT_TYPES: dict[AnySignal, str] = {
    Signal.SUBMITTED: "job.submitted",
    Signal.PROGRESS: "job.progress",
    Signal.SUCCEEDED: "job.succeeded",
    Signal.FAILED: "job.failed",
    Signal.CANCELLED: "job.cancelled",
    AccountSignal.PAUSED: "account.paused",
    AccountSignal.RESUMED: "account.resumed",
    AccountSignal.CREDITS_LOW: "account.credits_low",
    AccountSignal.OUT_OF_ROTATION: "account.out_of_rotation",
}


def message_id(job_id: str, event: HandlerEvent) -> str:
    """A stable ``webhook-id`` for one event of one job (or, for an account, of one notice)."""
    if isinstance(event.signal, AccountSignal):
        return f"msg_account_{job_id}"
    if event.transition_id is not None:
        return f"msg_{job_id}_{event.transition_id}"
    return f"msg_{job_id}_run{event.run_id}"


class ForwardHandler:
    """Signs and posts each event; see the module docstring."""

    name = "forward"
    events: frozenset[AnySignal] = frozenset(Signal) | frozenset(AccountSignal)

    def __init__(self, ctx: HandlerContext) -> None:
        """Refuses to start (``ValueError``) without a URL or without a valid secret."""
        self.ctx = ctx
        self.url = required(ctx.settings.forward_url, "RELAY_FORWARD_URL", "forward")
        secret = ctx.settings.forward_secret
        if not secret:
            raise ValueError(
                "the forward handler is enabled but RELAY_FORWARD_SECRET is not set; forwarded events "
                "are always signed (use whsec_ followed by base64 of 24-64 random bytes)"
            )
        try:
            self.webhook = Webhook(secret)
        except Exception:
            raise ValueError("RELAY_FORWARD_SECRET is not a valid whsec_… secret") from None
        self.max_attempts = ctx.settings.handler_max_attempts

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Post the signed event; raises to retry (``RetryAfter`` on 429)."""
        msg_id = message_id(str(job["id"]), event)
        if isinstance(event.signal, AccountSignal):  # ``job`` is the account notice
            occurred = str(job.get("at") or datetime.now(UTC).isoformat())
        else:
            occurred = await self._occurred_at(job, event)
        payload = {"type": EVENT_TYPES[event.signal], "timestamp": occurred, "data": job}
        body = json.dumps(payload, separators=(",", ":"))
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.webhook.sign(msg_id, now, body),
        }
        response = await post(
            self.ctx.http, self.url, what="forward URL", content=body.encode(), headers=headers
        )
        return f"forwarded {payload['type']} as {msg_id} (HTTP {response.status_code})"

    async def _occurred_at(self, job: dict[str, Any], event: HandlerEvent) -> str:
        """When the transition happened (stable across retries); the job's last update otherwise."""
        if event.transition_id is not None:
            full = await self.ctx.store.get_job(job["id"], events=True)
            for transition in full.get("transitions", []):
                if transition["id"] == event.transition_id:
                    return str(transition["at"])
        return str(job.get("updated_at") or datetime.now(UTC).isoformat())
