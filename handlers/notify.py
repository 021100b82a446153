"""What the notification handlers share: posting to a webhook and reading a job for a message.

Webhook URLs are secrets (whoever has one can post to the channel): they are never logged and never
part of an error message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from ..guard import amount
from ..logs import redact
from ..states import AccountSignal, AnySignal, Signal
from .answers import check_answer, header_retry_after
from .base import HandlerContext, HandlerEvent

TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def events_from(names: Iterable[str]) -> frozenset[AnySignal]:
    """The signals (of jobs and of accounts) named in a setting such as ``RELAY_SLACK_EVENTS``."""
    accounts = {s.value for s in AccountSignal}
    return frozenset(AccountSignal(name) if name in accounts else Signal(name) for name in names)


def required(value: str | None, variable: str, handler: str) -> str:
    """A setting the handler cannot run without; a clear ValueError at start-up otherwise."""
    if not value:
        raise ValueError(f"the {handler} handler is enabled but {variable} is not set")
    return value


async def post(
    http: httpx.AsyncClient,
    url: str,
    *,
    what: str,
    content: bytes,
    headers: dict[str, str],
    retry_after: Callable[[httpx.Response], float | None] = header_retry_after,
) -> httpx.Response:
    """POST and map the answer (:func:`.answers.check_answer`): 2xx returns, else it raises."""
    try:
        response = await http.post(url, content=content, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise RuntimeError(redact(f"{what} unreachable: {type(exc).__name__}: {exc}")) from None
    check_answer(response, what, retry_after=retry_after)
    return response


def prompt_of(job: dict[str, Any], limit: int = 300) -> str:
    """The job's prompt (or its first multishot prompt), shortened to ``limit`` characters."""
    params = job.get("params") or {}
    text = params.get("text_prompt") or params.get("multishot_prompt_1") or ""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def duration_of(job: dict[str, Any]) -> str | None:
    """``"5 s"`` from the job's ``duration`` parameter, if it has one."""
    duration = (job.get("params") or {}).get("duration")
    return f"{duration} s" if duration not in (None, "") else None


def video_url(job: dict[str, Any]) -> str | None:
    """The first artifact's URL."""
    artifacts = job.get("artifacts") or []
    return artifacts[0].get("url") if artifacts else None


def preview_url(job: dict[str, Any]) -> str | None:
    """The first preview image any artifact has."""
    return next((a["preview_url"] for a in job.get("artifacts") or [] if a.get("preview_url")), None)


def dashboard_link(ctx: HandlerContext, job: dict[str, Any]) -> str | None:
    """The dashboard, pointing at the job."""
    return f"{ctx.dashboard_url.rstrip('/')}/#job={job['id']}" if ctx.dashboard_url else None


ACCOUNT_TITLES = {
    AccountSignal.PAUSED.value: "Runway account paused",
    AccountSignal.RESUMED.value: "Runway account resumed",
    AccountSignal.CREDITS_LOW.value: "Runway account low on credits",
    AccountSignal.OUT_OF_ROTATION.value: "Runway account out of rotation",
}


def account_headline(notice: dict[str, Any]) -> str:
    """``Runway account paused: a@x.com``."""
    return f"{ACCOUNT_TITLES.get(str(notice.get('signal')), 'Runway account')}: {notice.get('email')}"


def account_facts(notice: dict[str, Any]) -> list[tuple[str, str]]:
    """The facts of an account notice worth a line each: until when, credits."""
    facts = []
    if notice.get("until"):
        facts.append(("Until", str(notice["until"])))
    credits = notice.get("credits")
    if isinstance(credits, dict) and credits.get("permitted") is not None:
        facts.append(
            ("Credits left", f"{amount(credits.get('left') or 0)} of {amount(credits['permitted'])}")
        )
    return facts


def accounts_link(ctx: HandlerContext) -> str | None:
    """The dashboard's accounts view."""
    return f"{ctx.dashboard_url.rstrip('/')}/#accounts" if ctx.dashboard_url else None


def headline(job: dict[str, Any]) -> str:
    """A short line saying what happened to the job."""
    status = job.get("status")
    titles = {
        "succeeded": "Video ready",
        "failed": "Video failed",
        "rejected": "Video rejected",
        "cancelled": "Video cancelled",
        "submitted": "Video submitted",
    }
    return f"{titles.get(str(status), 'Video ' + str(status))}: {job.get('model')}"


class WebhookNotifier:
    """What the Slack and Discord handlers share: build a message, POST it, map the answer.

    A subclass sets ``name`` and ``label`` and implements :meth:`message`; it may override
    :meth:`retry_after` where the service says how long to wait somewhere other than the header.
    """

    name = "webhook"
    label = "webhook"

    def __init__(self, ctx: HandlerContext, url: str, events: frozenset[Signal]) -> None:
        self.ctx = ctx
        self.url = url
        self.events = events
        self.max_attempts = ctx.settings.handler_max_attempts

    def message(self, job: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The JSON body to post for ``job``."""
        raise NotImplementedError

    def account_message(self, notice: dict[str, Any], dashboard: str | None) -> dict[str, Any]:
        """The JSON body to post for an account notice (``account-paused``…)."""
        raise NotImplementedError

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds a 429 answer asks us to wait."""
        return header_retry_after(response)

    async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
        """Post the message; raises to retry (``RetryAfter`` on 429)."""
        if isinstance(event.signal, AccountSignal):
            body = json.dumps(self.account_message(job, accounts_link(self.ctx))).encode()
        else:
            body = json.dumps(self.message(job, dashboard_link(self.ctx, job))).encode()
        await post(
            self.ctx.http,
            self.url,
            what=f"{self.label} webhook",
            content=body,
            headers={"content-type": "application/json"},
            retry_after=self.retry_after,
        )
        return f"posted to {self.label} ({job.get('status') or event.signal})"
