"""Account notices through the real dispatcher and store to Slack, Discord and forward receivers on
loopback: the message each sends, retries of the notice outbox, and the signed forward envelope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from runway_relay.dispatcher import Dispatcher
from runway_relay.guard import AccountPolicy, ModerationRule
from runway_relay.handlers import HandlerContext, HandlerEvent
from runway_relay.handlers.discord import DiscordHandler, discord_account_message
from runway_relay.handlers.forward import ForwardHandler
from runway_relay.handlers.slack import SlackHandler, slack_account_message
from runway_relay.states import AccountSignal, Signal, Status
from runway_relay.storage import Routing, Store, open_store
from runway_relay.taskparse import TaskUpdate

from servers import serve_in_thread
from test_handlers_support import SECRET, Receiver, settings_for

pytestmark = pytest.mark.anyio

PAUSED = {
    "id": 7,
    "signal": "account-paused",
    "email": "a@x.test",
    "at": "2026-01-05T10:00:00.000Z",
    "reason": "3 moderation failures within 1h (RELAY_MODERATION_PAUSE=3/1h); paused 1h",
    "until": "2026-01-05T11:00:00Z",
}
LOW = {
    "id": 8,
    "signal": "account-credits-low",
    "email": "b@x.test",
    "at": "2026-01-05T10:00:00.000Z",
    "reason": "150 credits left of 2,250 (RELAY_CREDITS_LOW=10%)",
    "credits": {"permitted": 2250, "used": 2100, "left": 150},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_slack_says_what_happened_to_the_account_and_links_the_accounts_view() -> None:
    message = slack_account_message(PAUSED, "http://relay.test/#accounts")
    assert message["text"].startswith("Runway account paused: a@x.test: 3 moderation failures")
    text = json.dumps(message["blocks"])
    assert "Until" in text and "2026-01-05T11:00:00Z" in text and "http://relay.test/#accounts" in text
    low = json.dumps(slack_account_message(LOW, None)["blocks"])
    assert "Credits left" in low and "150 of 2,250" in low and "actions" not in low


def test_discord_embeds_the_notice_without_mentions() -> None:
    message = discord_account_message({**PAUSED, "reason": "@everyone look"}, "http://relay.test/#accounts")
    embed = message["embeds"][0]
    assert embed["title"] == "Runway account paused: a@x.test" and embed["url"].endswith("#accounts")
    assert message["allowed_mentions"] == {"parse": []} and embed["timestamp"] == PAUSED["at"]
    assert {"name": "Until", "value": PAUSED["until"], "inline": True} in embed["fields"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    routing = Routing({AccountSignal.PAUSED: ("slack", "discord", "forward")})
    s = open_store(str(tmp_path / "relay.db"), routing, origin="test")
    s.policy = AccountPolicy(ModerationRule(1, 3600, 3600))  # the first moderation failure pauses
    await s.open()
    yield s
    await s.close()


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.02)


async def test_a_pause_reaches_slack_discord_and_forward_once_through_the_outbox(
    store: Store, tmp_path: Path
) -> None:
    slack, discord, target = Receiver(), Receiver(), Receiver()
    slack.answer(500, b"slack is down")  # the notice run retries, like a job run
    with (
        serve_in_thread(slack.app) as slack_url,
        serve_in_thread(discord.app) as discord_url,
        serve_in_thread(target.app) as target_url,
    ):
        settings = settings_for(
            tmp_path,
            slack_webhook_url=f"{slack_url}/services/x",
            discord_webhook_url=f"{discord_url}/api/webhooks/1/x",
            forward_url=f"{target_url}/hooks",
            forward_secret=SECRET,
            slack_events=("account-paused",),
            discord_events=("account-paused",),
        )
        async with httpx.AsyncClient(timeout=10) as http:
            ctx = HandlerContext(settings, store, http, dashboard_url="http://relay.test/")
            slack_handler = SlackHandler(ctx)
            slack_handler.retry_base = 0.05  # type: ignore[attr-defined]
            handlers = {
                "slack": slack_handler,
                "discord": DiscordHandler(ctx),
                "forward": ForwardHandler(ctx),
            }
            job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None, "a@x.test")
            update = TaskUpdate("t", Status.FAILED, "FAILED", None, None, "flagged by moderation", True, None)
            result = await store.ingest_poll(job.job_id, 1, update, "{}")
            assert [n.signal for n in result.notices] == [AccountSignal.PAUSED]
            dispatcher = Dispatcher(store, handlers, "test")
            task = asyncio.create_task(dispatcher.run())
            try:
                notices = await until(lambda: _settled(store), timeout=15)  # every notice run done
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    runs = {h["name"]: h for h in notices[0]["handlers"]}
    assert {n: r["status"] for n, r in runs.items()} == {
        "slack": "done",
        "discord": "done",
        "forward": "done",
    }
    assert runs["slack"]["attempts"] == 2
    paused = [json.loads(s.body) for s in slack.seen if "account paused" in json.loads(s.body)["text"]]
    assert len(paused) == 2 and paused[0] == paused[1]  # the failed try and its retry: one notice
    assert len(discord.seen) == 1 and "a@x.test" in json.loads(discord.seen[0].body)["embeds"][0]["title"]
    (delivery,) = target.seen
    event = Webhook(SECRET).verify(delivery.body, delivery.headers)
    assert event["type"] == "account.paused" and event["data"]["email"] == "a@x.test"
    assert delivery.headers["webhook-id"] == f"msg_account_{notices[0]['id']}"
    assert event["timestamp"] == notices[0]["at"]


async def _settled(store: Store) -> list[dict[str, Any]] | None:
    notices = await store.notices()
    if notices and all(h["status"] == "done" for h in notices[0]["handlers"]):
        return notices
    return None


async def test_a_handler_without_account_signals_never_gets_a_notice(store: Store, tmp_path: Path) -> None:
    class JobsOnly:
        name = "jobs-only"
        events = frozenset({Signal.FAILED})
        max_attempts = 1

        async def run(self, job: dict[str, Any], event: HandlerEvent) -> str | None:
            raise AssertionError("never called for an account")

    dispatcher = Dispatcher(store, {"jobs-only": JobsOnly()}, "test")
    assert [outbox.kind for outbox in dispatcher.outboxes] == ["job"]
