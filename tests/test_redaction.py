"""Configured secrets never reach a stored error or a log line, even when a receiver echoes them."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from test_scheduler_support import upstream

from runway_relay import logs
from runway_relay.handlers.exec import ExecHandler

from conftest import RelayProcess
from servers import serve_in_thread
from test_handlers_support import SECRET, event_for, handler_context, succeeded_job

API_KEY = "relay-api-key-0123456789"
USEAPI_TOKEN = "useapi-token-0123456789"
TOKENS = ("slack-secret-token-123", "discord-secret-token-456", "forward-url-secret-789")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def forgetful() -> Iterator[None]:
    logs.forget_secrets()
    yield
    logs.forget_secrets()


def test_registered_secrets_are_masked_in_every_form(forgetful: None) -> None:
    url = "https://hooks.slack.com/services/T0AAA/B0BBB/xoxb-slack-secret-token"
    assert logs.redact(f"answered 404 for {url}") == f"answered 404 for {url}"  # nothing registered
    logs.register_secrets(url, SECRET, "short", None)
    for echoed in (
        f"no such hook {url}",
        "no such hook " + url.replace("/", "\\/"),  # inside JSON written by PHP and friends
        "no such hook /services/T0AAA/B0BBB/xoxb-slack-secret-token",
        "invalid token xoxb-slack-secret-token",
        f"bad signature for {SECRET}",
        f"bad signature for {SECRET.removeprefix('whsec_')}",
    ):
        assert "secret" not in logs.redact(echoed), echoed
    assert logs.redact("a short word") == "a short word"  # too short to register


@pytest.mark.anyio
async def test_exec_output_and_errors_are_masked(tmp_path: Path, forgetful: None) -> None:
    logs.register_secrets(USEAPI_TOKEN)
    for status, stream in (("0", "stdout"), ("1", "stderr")):
        # a long first stretch, so the kept tail starts mid-line, then the secret on its own line
        write = f"s.write('x' * 3000 + '\\nok {USEAPI_TOKEN}\\n')"
        code = f"import sys; s = sys.{stream}; {write}; sys.exit({status})"
        command = shlex.join([sys.executable, "-c", code])
        async with handler_context(tmp_path, exec_command=command) as ctx:
            job = await succeeded_job(ctx.store)
            try:
                said = await ExecHandler(ctx).run(job, event_for(job))
            except RuntimeError as exc:
                said = str(exc)
        assert "ok ***" in str(said) and USEAPI_TOKEN not in str(said), said


def _echo(secrets: list[str]) -> Starlette:
    """Slack, Discord and the forward target at once: each refuses, quoting every secret it can."""

    async def refuse(request: Request) -> PlainTextResponse:
        # A token straddles the 300th character, where the error text used to be cut.
        text = "x" * 290 + " " + " ".join([*TOKENS, *secrets])
        return PlainTextResponse(text, status_code=400)

    return Starlette(routes=[Route("/{path:path}", refuse, methods=["POST"])])


def test_a_receiver_echoing_secrets_leaks_none(relay_factory: Any) -> None:
    secrets: list[str] = []
    with serve_in_thread(_echo(secrets)) as echo, upstream(token=USEAPI_TOKEN) as (_sim, sim_url):
        slack = f"{echo}/services/T0AAA/B0BBB/{TOKENS[0]}"
        discord = f"{echo}/api/webhooks/42/{TOKENS[1]}"
        forward = f"{echo}/forward?key={TOKENS[2]}"
        secrets += [slack, discord, forward, SECRET, API_KEY, USEAPI_TOKEN]
        relay: RelayProcess = relay_factory(
            USEAPI_TOKEN=USEAPI_TOKEN,
            USEAPI_BASE_URL=sim_url,
            RELAY_API_KEY=API_KEY,
            RELAY_SLACK_WEBHOOK_URL=slack,
            RELAY_DISCORD_WEBHOOK_URL=discord,
            RELAY_FORWARD_URL=forward,
            RELAY_FORWARD_SECRET=SECRET,
            RELAY_DOWNLOAD_ALLOW_PRIVATE="1",
        )
        auth = {"Authorization": f"Bearer {API_KEY}"}
        job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "x"}, headers=auth)
        assert job.status_code == 201, job.text

        def settled() -> dict[str, Any] | None:
            found = relay.api("GET", f"/api/jobs/{job.json()['id']}", headers=auth).json()
            names = {run["name"] for run in found["handlers"] if run["status"] == "dead"}
            return found if {"slack", "discord", "forward"} <= names else None

        deadline = time.monotonic() + 60
        while (final := settled()) is None:
            assert time.monotonic() < deadline, relay.log()[-3000:]
            time.sleep(0.1)
    errors = " ".join(run["last_error"] or "" for run in final["handlers"])
    assert "HTTP 400" in errors and "***" in errors
    stopped = relay.stop() or relay.log()
    pieces = [token[:10] for token in TOKENS] + [SECRET[6:18], API_KEY[:12], USEAPI_TOKEN[:12]]
    for piece in pieces:
        assert piece not in errors, (piece, errors)
        assert piece not in stopped, piece


def test_upstream_error_messages_are_masked(forgetful: None) -> None:
    from runway_relay.upstream import classify_create

    logs.register_secrets(USEAPI_TOKEN)
    result = classify_create(401, {"error": f"Unauthorized: bad token {USEAPI_TOKEN}"})
    assert result.kind == "rejected" and USEAPI_TOKEN not in result.message and "***" in result.message
