"""``slack``: a Block Kit message to a Slack incoming webhook (``RELAY_SLACK_WEBHOOK_URL``).

Sent on the signals in ``RELAY_SLACK_EVENTS`` (default ``job-succeeded,job-failed`` and the account
signals ``account-paused,account-credits-low,account-out-of-rotation``). For a job: model, prompt
excerpt, duration, status, the error of a failed job, a preview image when there is one, and buttons
to the video and to the dashboard. For an account: what happened, why, until when, and a button to
the dashboard's accounts. A 429 answer's ``Retry-After`` is honoured.
"""

from __future__ import annotations

from typing import Any

from .base import HandlerContext
from .notify import (
    WebhookNotifier,
    account_facts,
    account_headline,
    duration_of,
    events_from,
    headline,
    preview_url,
    prompt_of,
    required,
    video_url,
)

_EMOJI = {
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "rejected": ":no_entry:",
    "cancelled": ":white_circle:",
}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _button(text: str, url: str | None) -> dict[str, Any] | None:
    if not url or len(url) > 3000:
        return None
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "url": url}


def slack_message(job: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
    """The webhook body for ``job``: a fallback ``text`` and the Block Kit ``blocks``."""
    status = str(job.get("status"))
    title = f"{_EMOJI.get(status, ':hourglass_flowing_sand:')} {headline(job)}"
    prompt = prompt_of(job)
    intro: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"> {escape(prompt)}" if prompt else "_no prompt_"},
    }
    preview = preview_url(job)
    if preview:
        intro["accessory"] = {"type": "image", "image_url": preview, "alt_text": "preview"}
    job_ref = f"<{dashboard}|{job['id']}>" if dashboard else f"`{job['id']}`"
    facts = [("Model", escape(str(job.get("model")))), ("Status", status)]
    facts += [("Duration", duration_of(job) or "default"), ("Job", job_ref)]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        intro,
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts]},
    ]
    if job.get("error"):
        error = escape(str(job["error"]))[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n{error}"}})
    buttons = [b for b in (_button("Open video", video_url(job)), _button("Dashboard", dashboard)) if b]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": f"{headline(job)} ({status})", "blocks": blocks}


_ACCOUNT_EMOJI = {
    "account-paused": ":double_vertical_bar:",
    "account-resumed": ":arrow_forward:",
    "account-credits-low": ":warning:",
    "account-out-of-rotation": ":no_entry:",
}


def slack_account_message(notice: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
    """The webhook body for an account notice."""
    title = f"{_ACCOUNT_EMOJI.get(str(notice.get('signal')), ':bell:')} {account_headline(notice)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape(str(notice.get("reason") or ""))[:2900]},
        },
    ]
    facts = [("Account", escape(str(notice.get("email")))), *account_facts(notice)]
    blocks.append(
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts]}
    )
    button = _button("Accounts", dashboard)
    if button:
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": f"{account_headline(notice)}: {notice.get('reason')}", "blocks": blocks}


class SlackHandler(WebhookNotifier):
    """Posts a message per configured event; see the module docstring."""

    name = "slack"
    label = "Slack"

    def __init__(self, ctx: HandlerContext) -> None:
        url = required(ctx.settings.slack_webhook_url, "RELAY_SLACK_WEBHOOK_URL", "slack")
        super().__init__(ctx, url, events_from(ctx.settings.slack_events))

    def message(self, job: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The Block Kit message."""
        return slack_message(job, dashboard)

    def account_message(self, notice: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The Block Kit message about an account."""
        return slack_account_message(notice, dashboard)
