"""The useapi.net client: answers classified (pure), bodies kept without secrets, real calls to the
simulator, and the simulator's knobs the scheduler tests rely on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runway_relay.errors import UpstreamError
from runway_relay.simulator import create_app
from runway_relay.upstream import CreateKind, Upstream, classify_create, stored_body

from conftest import free_port
from servers import serve_in_thread

TASK = {"taskId": "user:1-runwayml:a@x.com-task:0f0e", "status": "PENDING"}
RUNWAY_429 = "You have too many tasks running or pending. Please wait for some of them to finish."


@pytest.mark.parametrize(
    ("status", "body", "kind", "account"),
    [
        (200, {"task": TASK}, CreateKind.ACCEPTED, "a@x.com"),
        (200, TASK, CreateKind.ACCEPTED, "a@x.com"),
        (200, {"task": {"status": "PENDING"}}, CreateKind.TRANSIENT, None),
        (200, "<html>ok</html>", CreateKind.TRANSIENT, None),
        (
            429,
            {"error": "Account b@x.com is busy executing 2 tasks", "runningTasks": {"b@x.com": []}},
            CreateKind.BUSY,
            "b@x.com",
        ),
        (429, {"error": "Account c@x.com is busy executing 3 tasks"}, CreateKind.BUSY, "c@x.com"),
        (429, {"error": RUNWAY_429}, CreateKind.THROTTLED, None),
        (429, "Too Many Requests", CreateKind.THROTTLED, None),
        (400, {"error": "Parameter duration (7) is not supported", "code": 400}, CreateKind.REJECTED, None),
        (401, {"error": "Unauthorized", "code": 401}, CreateKind.REJECTED, None),
        (402, {"error": "You do not have enough credits to run this task."}, CreateKind.REJECTED, None),
        (500, {"error": "You do not have enough credits to run this task."}, CreateKind.REJECTED, None),
        (403, "Forbidden", CreateKind.REJECTED, None),
        (500, {"error": "Internal"}, CreateKind.TRANSIENT, None),
        (502, "<html>Bad gateway</html>", CreateKind.TRANSIENT, None),
        (503, None, CreateKind.TRANSIENT, None),
        (404, {"error": "Not found"}, CreateKind.TRANSIENT, None),
    ],
)
def test_classify_create(status: int, body: Any, kind: CreateKind, account: str | None) -> None:
    result = classify_create(status, body)
    assert result.kind is kind
    assert result.account == account
    if kind is CreateKind.REJECTED and isinstance(body, dict):
        assert result.message == body["error"]  # the upstream message is kept as it was


def test_stored_bodies_hold_no_callback_token_and_no_credentials() -> None:
    body = {
        "error": "Account a@x.com is busy executing 1 tasks",
        "runningTasks": {
            "a@x.com": [{"replyUrl": "https://relay.example/callbacks/S3CRET-token_1", "replyRef": "j.1"}]
        },
        "password": "hunter2",
        "jwt": {"token": "eyJ-session"},
    }
    kept = stored_body(body)
    assert kept is not None
    for secret in ("S3CRET-token_1", "hunter2", "eyJ-session"):
        assert secret not in kept
    assert "/callbacks/***" in kept and json.loads(kept)["runningTasks"]["a@x.com"][0]["replyRef"] == "j.1"
    assert stored_body(None) is None
    assert len(stored_body("x" * 10_000) or "") == 4000
    assert "T0KEN" not in (stored_body("see http://h/callbacks/T0KEN?x=1") or "")


@pytest.fixture(scope="module")
def simulated() -> Iterator[str]:
    app = create_app(accounts={"a@x.com": 3, "b@x.com": 1}, token="right", step_seconds=3600)
    with serve_in_thread(app) as url:
        yield url


def call(url: str, token: str, method: str, *args: Any) -> Any:
    async def run() -> Any:
        async with httpx.AsyncClient() as client:
            return await getattr(Upstream(client, url, token), method)(*args)

    return asyncio.run(run())


def test_accounts_keep_email_and_max_jobs_only(simulated: str) -> None:
    assert call(simulated, "right", "accounts") == {"a@x.com": 3, "b@x.com": 1}


def test_create_scheduler_cancel_and_upload_against_the_simulator(simulated: str) -> None:
    body = {"model": "gen4.5", "text_prompt": "x", "email": "b@x.com", "replyRef": "job-1.1"}
    accepted = call(simulated, "right", "create", body)
    assert accepted.kind is CreateKind.ACCEPTED and accepted.account == "b@x.com"
    busy = call(simulated, "right", "create", {**body, "replyRef": "job-2.1"})
    assert busy.kind is CreateKind.BUSY and busy.account == "b@x.com"
    running = call(simulated, "right", "scheduler")
    assert [t["replyRef"] for t in running] == ["job-1.1"]
    call(simulated, "right", "cancel", running[0]["taskId"])
    with pytest.raises(UpstreamError, match="Unable to locate running"):
        call(simulated, "right", "cancel", running[0]["taskId"])
    asset = call(simulated, "right", "upload_asset", "frame.png", b"\x89PNG...", "image/png", "a@x.com")
    assert "-runwayml:a@x.com-asset:" in asset["assetId"]


def test_errors_become_results_or_upstream_errors(simulated: str) -> None:
    rejected = call(simulated, "wrong", "create", {"model": "gen4.5"})
    assert rejected.kind is CreateKind.REJECTED and rejected.status == 401
    with pytest.raises(UpstreamError) as caught:
        call(simulated, "wrong", "accounts")
    assert caught.value.status == 401
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = call(nowhere, "right", "create", {"model": "gen4.5"})
    assert unreachable.kind is CreateKind.TRANSIENT and unreachable.status is None
    with pytest.raises(UpstreamError, match="ConnectError"):
        call(nowhere, "right", "scheduler")


def test_simulator_knobs_for_errors_capacity_and_stats() -> None:
    app = create_app(accounts={"k@x.com": 3}, runway_capacity=2, step_seconds=3600, create_delay=0.2)
    with serve_in_thread(app) as url:
        body = {"model": "gen4.5", "replyRef": "k.1"}
        once = [call(url, "t", "create", {**body, "text_prompt": "[error500] a"}).status for _ in range(2)]
        assert once == [500, 200]  # a 500 once per replyRef, nothing created by it
        lost = call(url, "t", "create", {**body, "replyRef": "k.2", "text_prompt": "[accept500] b"})
        assert lost.kind is CreateKind.TRANSIENT  # ... while this one exists upstream all the same
        assert [t["replyRef"] for t in call(url, "t", "scheduler")] == ["k.1", "k.2"]
        refused = call(url, "t", "create", {**body, "replyRef": "k.3", "text_prompt": "c"})
        assert refused.kind is CreateKind.THROTTLED  # Runway's own limit is 2 < maxJobs 3
        stats = httpx.get(f"{url}/sim/stats").json()
        assert stats["creates"] == ["k.1", "k.2"] and stats["rejected_429"] == 1
        assert [e["status"] for e in stats["create_log"]] == [500, 200, 500, 429]


def test_simulator_throttle_marker_refuses_once() -> None:
    with serve_in_thread(create_app(step_seconds=3600)) as url:
        body = {"model": "gen4.5", "text_prompt": "[throttle] x", "replyRef": "t.1"}
        kinds = [call(url, "t", "create", body).kind for _ in range(2)]
        assert kinds == [CreateKind.THROTTLED, CreateKind.ACCEPTED]
