"""Slack, Discord and forward against real local receivers; retries, Retry-After and replay through the
real dispatcher and a real SQLite outbox."""

from __future__ import annotations

import asyncio
import errno
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from runway_relay.dispatcher import Dispatcher
from runway_relay.handlers import (
    BUILTIN,
    PermanentError,
    RetryAfter,
    build_handlers,
    default_names,
)
from runway_relay.handlers.base import parse_retry_after
from runway_relay.handlers.discord import DiscordHandler
from runway_relay.handlers.forward import ForwardHandler
from runway_relay.handlers.slack import SlackHandler
from runway_relay.settings import SettingsError, load_settings
from runway_relay.states import AccountSignal, Signal
from runway_relay.storage import Store
from runway_relay.taskparse import ArtifactRef

from conftest import free_port, relay_env
from servers import serve_in_thread
from test_handlers_support import SECRET, Receiver, event_for, handler_context, succeeded_job

# Slack and Discord also post, by default, when an account stops taking creates or runs low.
NOTIFIED_ACCOUNT_SIGNALS = {AccountSignal.PAUSED, AccountSignal.CREDITS_LOW, AccountSignal.OUT_OF_ROTATION}

pytestmark = pytest.mark.anyio

VIDEO = ArtifactRef("https://cdn.test/videos/v.mp4", 1234, None, "https://cdn.test/p.jpg")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def receiver() -> Any:
    target = Receiver()
    with serve_in_thread(target.app) as url:
        target.url = url  # type: ignore[attr-defined]
        yield target


async def until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)
    return result


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Dispatcher], None]]:
    tasks: list[asyncio.Task[None]] = []
    yield lambda dispatcher: tasks.append(asyncio.create_task(dispatcher.run()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def run_state(store: Store, job_id: str, name: str) -> Callable[[], Any]:
    async def check() -> dict[str, Any]:
        job = await store.get_job(job_id)
        return next(h for h in job["handlers"] if h["name"] == name)

    return check


# -- Slack ------------------------------------------------------------------------------------------


async def test_slack_posts_a_block_kit_message(tmp_path: Path, receiver: Any) -> None:
    async with handler_context(tmp_path, slack_webhook_url=f"{receiver.url}/services/T1/B2/x") as ctx:
        job = await succeeded_job(ctx.store, (VIDEO,))
        handler = SlackHandler(ctx)
        assert await handler.run(job, event_for(job)) == "posted to Slack (succeeded)"
    assert handler.events == {Signal.SUCCEEDED, Signal.FAILED, *NOTIFIED_ACCOUNT_SIGNALS}
    [seen] = receiver.seen
    assert seen.path == "/services/T1/B2/x" and seen.headers["content-type"] == "application/json"
    body = json.loads(seen.body)
    header, intro, facts, actions = body["blocks"]
    assert "Video ready: gen4.5" in header["text"]["text"] and "succeeded" in body["text"]
    assert intro["text"]["text"] == "> A red fox &lt;at&gt; dawn &amp; dusk"
    assert intro["accessory"] == {"type": "image", "image_url": VIDEO.preview_url, "alt_text": "preview"}
    texts = [f["text"] for f in facts["fields"]]
    dashboard = f"http://relay.test/#job={job['id']}"
    assert texts == [
        "*Model*\ngen4.5",
        "*Status*\nsucceeded",
        "*Duration*\n5 s",
        f"*Job*\n<{dashboard}|{job['id']}>",
    ]
    assert [b["url"] for b in actions["elements"]] == [VIDEO.url, dashboard]


async def test_slack_failed_job_shows_the_error_and_events_are_configurable(
    tmp_path: Path, receiver: Any
) -> None:
    async with handler_context(tmp_path, slack_webhook_url=receiver.url, slack_events=("job-failed",)) as ctx:
        handler = SlackHandler(ctx)
        job = {**(await succeeded_job(ctx.store)), "status": "failed", "error": "Out of <credits>"}
        await handler.run(job, event_for(job, Signal.FAILED))
    assert handler.events == {Signal.FAILED}
    blocks = json.loads(receiver.seen[0].body)["blocks"]
    assert {"type": "mrkdwn", "text": "*Error*\nOut of &lt;credits&gt;"} in [b.get("text") for b in blocks]
    assert "Video failed" in blocks[0]["text"]["text"]


async def test_slack_answers_map_to_retry_after_give_up_and_retry(tmp_path: Path, receiver: Any) -> None:
    receiver.answer(429, b"rate_limited", retry_after="120")
    receiver.answer(404, b"no_service")
    receiver.answer(503, b"busy")
    async with handler_context(tmp_path, slack_webhook_url=receiver.url) as ctx:
        job = await succeeded_job(ctx.store)
        handler = SlackHandler(ctx)
        with pytest.raises(RetryAfter) as waited:
            await handler.run(job, event_for(job))
        with pytest.raises(PermanentError, match="HTTP 404: no_service"):
            await handler.run(job, event_for(job))
        with pytest.raises(RuntimeError, match="HTTP 503"):
            await handler.run(job, event_for(job))
    assert waited.value.seconds == 120
    assert receiver.url not in str(waited.value)


async def test_dispatcher_schedules_no_sooner_than_retry_after(
    tmp_path: Path, receiver: Any, running: Any
) -> None:
    receiver.answer(429, b"", retry_after="120")
    async with handler_context(tmp_path, ("slack",), slack_webhook_url=receiver.url) as ctx:
        job = await succeeded_job(ctx.store)
        before = time.time()
        running(Dispatcher(ctx.store, {"slack": SlackHandler(ctx)}, "test"))
        run = await until(
            lambda: _with(
                run_state(ctx.store, job["id"], "slack"),
                lambda r: r["attempts"] == 1 and r["status"] == "pending",
            )
        )
        due = await ctx.store.next_run_due()
    assert due is not None and due >= before + 120
    assert "HTTP 429" in run["last_error"]


async def _with(check: Callable[[], Any], predicate: Callable[[Any], bool]) -> Any:
    value = await check()
    return value if predicate(value) else None


class _RunsOutOfFiles:
    """A handler whose first try meets "too many open files" (a load spike), then succeeds."""

    name = "flaky"
    events = frozenset({Signal.SUCCEEDED})
    max_attempts = 1  # a counted failure would end the run dead at once
    retry_base = 0.01

    def __init__(self) -> None:
        self.tries = 0

    async def run(self, job: dict[str, Any], event: Any) -> str:
        self.tries += 1
        if self.tries == 1:
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError as exc:
                raise RuntimeError("could not connect") from exc  # as httpx wraps it
        return "done on the second try"


async def test_running_out_of_file_descriptors_does_not_count_as_a_try(tmp_path: Path) -> None:
    async with handler_context(tmp_path, ("flaky",)) as ctx:
        store: Any = ctx.store
        handler = _RunsOutOfFiles()
        job = await succeeded_job(store)
        (run,) = await store.claim_runs("test", 1e12, 1, 60)
        dispatcher = Dispatcher(store, {"flaky": handler}, "test")
        await dispatcher._execute(run)  # the first try: EMFILE
        state = await run_state(store, job["id"], "flaky")()
        assert state["status"] == "pending" and state["attempts"] == 0  # not counted, not dead
        assert state["last_error"] == "RuntimeError: could not connect"
        (again,) = await store.claim_runs("test", 2e12, 1, 60)
        await dispatcher._execute(again)
        done = await run_state(store, job["id"], "flaky")()
    assert done["status"] == "done" and handler.tries == 2


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    assert parse_retry_after("-5") == 0.0


# -- Discord ----------------------------------------------------------------------------------------


async def test_discord_posts_an_embed_without_mentions(tmp_path: Path, receiver: Any) -> None:
    receiver.answer(204)
    async with handler_context(tmp_path, discord_webhook_url=f"{receiver.url}/api/webhooks/1/t") as ctx:
        params = {"model": "veo-3.1", "text_prompt": "@everyone look", "duration": 8}
        job = await succeeded_job(ctx.store, (VIDEO,), params)
        await DiscordHandler(ctx).run(job, event_for(job))
    body = json.loads(receiver.seen[0].body)
    assert body["allowed_mentions"] == {"parse": []}
    [embed] = body["embeds"]
    assert embed["title"] == "Video ready: veo-3.1" and embed["color"] == 0x2EB67D
    assert embed["url"] == f"http://relay.test/#job={job['id']}"
    assert embed["description"] == "@everyone look" and embed["image"] == {"url": VIDEO.preview_url}
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields == {
        "Model": "veo-3.1",
        "Status": "succeeded",
        "Duration": "8 s",
        "Video": f"[open]({VIDEO.url})",
    }


async def test_discord_honours_retry_after_in_the_body(tmp_path: Path, receiver: Any) -> None:
    receiver.answer(
        429,
        b'{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}',
        retry_after="1",
    )
    async with handler_context(tmp_path, discord_webhook_url=receiver.url) as ctx:
        job = {**(await succeeded_job(ctx.store)), "status": "failed", "error": "boom"}
        with pytest.raises(RetryAfter) as waited:
            await DiscordHandler(ctx).run(job, event_for(job, Signal.FAILED))
    assert waited.value.seconds == 2.5


# -- forward ----------------------------------------------------------------------------------------


async def test_forward_signs_per_standard_webhooks_with_a_stable_id(tmp_path: Path, receiver: Any) -> None:
    receiver.answer(500, b"down")
    async with handler_context(tmp_path, forward_url=f"{receiver.url}/hook", forward_secret=SECRET) as ctx:
        job = await succeeded_job(ctx.store, (VIDEO,))
        handler = ForwardHandler(ctx)
        with pytest.raises(RuntimeError, match="HTTP 500"):
            await handler.run(job, event_for(job))
        output = await handler.run(job, event_for(job, attempt=2))
        transition = (await ctx.store.get_job(job["id"], events=True))["transitions"][-1]
    assert handler.events == set(Signal) | set(AccountSignal)
    first, second = receiver.seen
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{job['id']}_1"
    assert output is not None and f"msg_{job['id']}_1" in output
    payload = Webhook(SECRET).verify(second.body, second.headers)
    assert payload["type"] == "job.succeeded" and payload["timestamp"] == transition["at"]
    assert payload["data"]["id"] == job["id"] and payload["data"]["artifacts"][0]["url"] == VIDEO.url
    assert Webhook(SECRET).verify(first.body, first.headers) == payload
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(second.body, second.headers)


async def test_forward_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    async with handler_context(tmp_path, forward_url="http://hooks.test/x") as ctx:
        with pytest.raises(ValueError, match="RELAY_FORWARD_SECRET"):
            ForwardHandler(ctx)
    async with handler_context(tmp_path, handlers=("slack",)) as ctx:
        with pytest.raises(ValueError, match="RELAY_SLACK_WEBHOOK_URL is not set"):
            build_handlers(ctx)
    with pytest.raises(SettingsError, match="RELAY_FORWARD_SECRET is not"):
        load_settings({"RELAY_FORWARD_URL": "https://hooks.test/x"})
    with pytest.raises(SettingsError, match="whsec_"):
        load_settings({"RELAY_FORWARD_URL": "https://hooks.test/x", "RELAY_FORWARD_SECRET": "short"})
    with pytest.raises(SettingsError, match="job-done"):
        load_settings({"RELAY_SLACK_EVENTS": "job-succeeded,job-done"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RELAY_FORWARD_URL": "https://hooks.test/x"}, "RELAY_FORWARD_SECRET"),
        ({"RELAY_EXEC": "/nonexistent/tool --x"}, "not an executable"),
    ],
)
def test_serve_exits_2_on_a_handler_configuration_mistake(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "runway_relay", "serve", "--port", str(free_port())],
        env=relay_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 2 and message in answer.stderr


def test_settings_present_enable_their_handlers_and_secrets_stay_out_of_repr() -> None:
    settings = load_settings(
        {
            "RELAY_SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/SECRET1",
            "RELAY_FORWARD_URL": "https://hooks.test/SECRET2",
            "RELAY_FORWARD_SECRET": SECRET,
            "RELAY_EXEC_TIMEOUT": "12",
        }
    )
    assert default_names(settings, set(BUILTIN)) == ("download", "resubmit", "slack", "forward")
    assert settings.exec_timeout == 12 and settings.slack_events[:2] == ("job-succeeded", "job-failed")
    assert "account-paused" in settings.slack_events
    assert not any(secret in repr(settings) for secret in ("SECRET1", "SECRET2", SECRET))


# -- retries and replay -----------------------------------------------------------------------------


async def test_a_dead_run_replays_and_completes_once_the_receiver_recovers(
    tmp_path: Path, receiver: Any, running: Any
) -> None:
    receiver.answer(500, b"down")
    receiver.answer(502, b"still down")
    async with handler_context(
        tmp_path, ("forward",), forward_url=receiver.url, forward_secret=SECRET
    ) as ctx:
        handler = ForwardHandler(ctx)
        handler.retry_base = 0.05  # type: ignore[attr-defined]  # the per-handler backoff base
        dispatcher = Dispatcher(ctx.store, {"forward": handler}, "test")
        job = await succeeded_job(ctx.store)
        running(dispatcher)
        state = run_state(ctx.store, job["id"], "forward")
        dead = await until(lambda: _with(state, lambda r: r["status"] == "dead"))
        assert dead["attempts"] == 2 and "HTTP 502: still down" in dead["last_error"]
        await ctx.store.replay(job["id"], "forward")
        dispatcher.wake()
        done = await until(lambda: _with(state, lambda r: r["status"] == "done"))
    assert done["attempts"] == 1 and done["last_error"] is None
    assert len(receiver.seen) == 3
    assert len({seen.headers["webhook-id"] for seen in receiver.seen}) == 1
    assert (
        Webhook(SECRET).verify(receiver.seen[-1].body, receiver.seen[-1].headers)["type"] == "job.succeeded"
    )
