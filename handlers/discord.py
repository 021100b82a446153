"""``discord``: an embed posted to a Discord webhook (``RELAY_DISCORD_WEBHOOK_URL``).

Sent on the signals in ``RELAY_DISCORD_EVENTS`` (default ``job-succeeded,job-failed``): a title linking
to the dashboard, the prompt, fields (model, status, duration, video link, error), a colour by status
and the preview image. Mentions are disabled, so a prompt cannot ping ``@everyone``. A 429 answer's
``retry_after`` (JSON body, seconds) is honoured.
"""

from __future__ import annotations

from typing import Any

import httpx

from .base import HandlerContext
from .notify import (
    WebhookNotifier,
    account_facts,
    account_headline,
    duration_of,
    events_from,
    header_retry_after,
    headline,
    preview_url,
    prompt_of,
    required,
    video_url,
)

COLOURS = {
    "succeeded": 0x2EB67D,
    "failed": 0xE01E5A,
    "rejected": 0xE01E5A,
    "cancelled": 0x9CA3AF,
}
RUNNING_COLOUR = 0x3B82F6
ACCOUNT_COLOURS = {"account-paused": 0xF59E0B, "account-credits-low": 0xF59E0B, "account-resumed": 0x2EB67D}


def discord_message(job: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
    """The webhook body for ``job``: one embed, no mentions."""
    status = str(job.get("status"))
    fields = [
        {"name": "Model", "value": str(job.get("model"))[:1024], "inline": True},
        {"name": "Status", "value": status, "inline": True},
        {"name": "Duration", "value": duration_of(job) or "default", "inline": True},
    ]
    video = video_url(job)
    if video and len(video) <= 1000:
        fields.append({"name": "Video", "value": f"[open]({video})", "inline": True})
    if job.get("error"):
        fields.append({"name": "Error", "value": str(job["error"])[:1024], "inline": False})
    embed: dict[str, Any] = {
        "title": headline(job)[:256],
        "description": prompt_of(job, 1000) or "*no prompt*",
        "color": COLOURS.get(status, RUNNING_COLOUR),
        "fields": fields,
        "footer": {"text": f"job {job['id']}"},
    }
    if dashboard:
        embed["url"] = dashboard
    if job.get("updated_at"):
        embed["timestamp"] = job["updated_at"]
    preview = preview_url(job)
    if preview:
        embed["image"] = {"url": preview}
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def discord_account_message(notice: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
    """The webhook body for an account notice: one embed, no mentions."""
    facts = [("Account", str(notice.get("email"))), *account_facts(notice)]
    embed: dict[str, Any] = {
        "title": account_headline(notice)[:256],
        "description": str(notice.get("reason") or "")[:4000],
        "color": ACCOUNT_COLOURS.get(str(notice.get("signal")), 0xE01E5A),
        "fields": [{"name": k, "value": v[:1024], "inline": True} for k, v in facts],
        "footer": {"text": f"notice {notice.get('id')}"},
    }
    if dashboard:
        embed["url"] = dashboard
    if notice.get("at"):
        embed["timestamp"] = notice["at"]
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def body_retry_after(response: httpx.Response) -> float | None:
    """Discord says how long to wait in the JSON body (``retry_after``, seconds); else the header."""
    try:
        value = response.json().get("retry_after")
    except (ValueError, AttributeError):
        value = None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return header_retry_after(response)


class DiscordHandler(WebhookNotifier):
    """Posts an embed per configured event; see the module docstring."""

    name = "discord"
    label = "Discord"

    def __init__(self, ctx: HandlerContext) -> None:
        url = required(ctx.settings.discord_webhook_url, "RELAY_DISCORD_WEBHOOK_URL", "discord")
        super().__init__(ctx, url, events_from(ctx.settings.discord_events))

    def message(self, job: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The embed message."""
        return discord_message(job, dashboard)

    def account_message(self, notice: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The embed message about an account."""
        return discord_account_message(notice, dashboard)

    def retry_after(self, response: httpx.Response) -> float | None:
        """Discord's ``retry_after`` from the body, else the header."""
        return body_retry_after(response)
