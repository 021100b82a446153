"""The account guards' state on real databases (SQLite and PostgreSQL): moderation window and pause,
resume, credits crossings, failed sessions, notices and their runs, jobs no account will take."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runway_relay.errors import NotFound
from runway_relay.guard import AccountPolicy, CreditsRule, ModerationRule
from runway_relay.states import AccountSignal, RunStatus, Signal, Status
from runway_relay.storage import SCHEDULER_LEASE, Routing, Store, SubmitTicket, open_store
from runway_relay.taskparse import TaskUpdate

pytestmark = pytest.mark.anyio

ROUTING = Routing({Signal.FAILED: ("slack",), AccountSignal.PAUSED: ("slack", "forward")})
POLICY = AccountPolicy(ModerationRule(3, 3600.0, 3600.0), CreditsRule(100), session_strikes=3)
MODERATED = TaskUpdate(
    "user:1-runwayml:a@x.test-task:1",
    Status.FAILED,
    "FAILED",
    None,
    None,
    "Your prompt was flagged by moderation",
    True,
    None,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def opened(db_url: str, origin: str) -> Store:
    store = open_store(db_url, ROUTING, origin=origin)
    store.policy = POLICY
    await store.open()
    return store


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await opened(db_url, "relay-a")
    await s.save_accounts({"a@x.test": 2, "b@x.test": 2})
    yield s
    await s.close()


async def moderated(store: Store, email: str = "a@x.test") -> Any:
    """A job on ``email`` that fails by moderation; the ingest result."""
    job = await store.create_job(
        "gen4.5", {"model": "gen4.5", "text_prompt": "x", "email": email}, None, email
    )
    return await store.ingest_poll(job.job_id, 1, MODERATED, "{}")


async def state(store: Store, email: str) -> dict[str, Any]:
    return next(row for row in await store.account_states() if row["email"] == email)


async def test_the_third_moderation_failure_pauses_the_account_once(store: Store) -> None:
    assert (await moderated(store)).notices == ()
    assert (await moderated(store)).notices == ()
    third = await moderated(store)
    assert len(third.notices) == 1
    notice = third.notices[0]
    assert notice.signal is AccountSignal.PAUSED and notice.email == "a@x.test"
    assert notice.detail["failures"] == 3 and "3 moderation failures within 1h" in notice.detail["reason"]
    paused = await state(store, "a@x.test")
    assert paused["paused_until"] > paused["paused_at"] and paused["paused_reason"] == notice.detail["reason"]
    assert "moderation" in paused["last_error"]
    assert (await moderated(store)).notices == ()  # already paused: one pause, one notice
    assert (await state(store, "b@x.test"))["paused_until"] is None  # the other account is untouched
    runs = await store.claim_notice_runs("relay-a", 1e12, 10, 30)
    assert sorted(r["handler"] for r in runs) == ["forward", "slack"]
    assert {r["notice"]["signal"] for r in runs} == {"account-paused"}
    assert runs[0]["notice"]["email"] == "a@x.test" and runs[0]["notice"]["until"].endswith("Z")


async def test_a_repeated_moderated_callback_counts_once(store: Store) -> None:
    job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None, "a@x.test")
    first = await store.ingest_poll(job.job_id, 1, MODERATED, "{}")
    again = await store.ingest_poll(job.job_id, 1, MODERATED, "{}")
    assert first.outcome == "applied" and again.outcome == "duplicate"
    overview = {a["email"]: a for a in await store.account_overview(time.time(), 0)}
    assert len(overview["a@x.test"]["moderation_failures"]) == 1
    later = await store.account_overview(time.time() + 2 * 3600, 0)  # out of the window by then
    assert [len(a["moderation_failures"]) for a in later if a["email"] == "a@x.test"] == [0]


async def test_resume_lifts_the_pause_and_starts_counting_afresh(store: Store) -> None:
    for _ in range(3):
        await moderated(store)
    lifted, notices = await store.resume_account(
        "a@x.test", (await state(store, "a@x.test"))["paused_at"] + 1
    )
    assert len(lifted) == 1 and "the pause (3 moderation failures" in lifted[0]
    assert [n.signal for n in notices] == [AccountSignal.RESUMED]
    resumed = await state(store, "a@x.test")
    assert resumed["paused_until"] is None and resumed["moderation_since"]
    assert (await store.resume_account("a@x.test", 0.0)) == ([], [])  # nothing left to lift: no notice
    with pytest.raises(NotFound):
        await store.resume_account("nobody@x.test", 0.0)


async def test_without_a_guard_failures_are_counted_but_nothing_pauses(db_url: str) -> None:
    store = await opened(db_url, "relay-a")
    store.policy = AccountPolicy(None)
    try:
        for _ in range(5):
            assert (await moderated(store)).notices == ()
        assert (await state(store, "a@x.test"))["paused_until"] is None
    finally:
        await store.close()


async def test_credits_low_fires_once_per_crossing(store: Store) -> None:
    assert await store.record_credits("a@x.test", 1000, 500, 1.0) == []
    low = await store.record_credits("a@x.test", 1000, 950, 2.0)
    assert [n.signal for n in low] == [AccountSignal.CREDITS_LOW]
    assert low[0].detail["credits"] == {"permitted": 1000, "used": 950, "left": 50}
    assert "50 credits left of 1,000 (RELAY_CREDITS_LOW=100)" in low[0].detail["reason"]
    assert await store.record_credits("a@x.test", 1000, 990, 3.0) == []  # still low
    assert await store.record_credits("a@x.test", 2000, 990, 4.0) == []  # topped up: re-armed
    again = await store.record_credits("a@x.test", 2000, 1950, 5.0)
    assert len(again) == 1
    row = await state(store, "a@x.test")
    assert (row["credits_permitted"], row["credits_used"], row["credits_at"]) == (2000, 1950, 5.0)


async def test_failed_sessions_take_the_account_out_of_rotation_once(store: Store) -> None:
    assert await store.record_account_error("b@x.test", "Unauthorized", 1.0, strike=True) == []
    await store.record_session_ok("b@x.test")  # a create went through: start again
    assert await store.record_account_error("b@x.test", "Unauthorized", 2.0, strike=True) == []
    assert await store.record_account_error("b@x.test", "Unauthorized", 3.0, strike=True) == []
    out = await store.record_account_error("b@x.test", "Unauthorized", 4.0, strike=True)
    assert [n.signal for n in out] == [AccountSignal.OUT_OF_ROTATION]
    assert await store.record_account_error("b@x.test", "Unauthorized", 5.0, strike=True) == []
    row = await state(store, "b@x.test")
    assert row["out_of_rotation"].startswith("3 failed sessions in a row, the last: Unauthorized")
    assert await store.record_account_error("b@x.test", "HTTP 500", 6.0) == []  # not a strike
    assert (await state(store, "b@x.test"))["last_error"] == "HTTP 500"
    lifted, notices = await store.resume_account("b@x.test", 7.0)
    assert lifted and notices and (await state(store, "b@x.test"))["out_of_rotation"] is None


async def test_a_job_that_refused_for_credits_remembers_the_account(store: Store) -> None:
    await store.lead(SCHEDULER_LEASE, "relay-a", 60)
    job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    for email in ("a@x.test", "b@x.test"):
        ticket = await store.begin_submit(job.job_id, email, "relay-a")
        assert isinstance(ticket, SubmitTicket)
        await store.record_deferred(ticket, 0.0, "402: not enough credits", avoid=email)
    queued, _ = await store.queue_view(1e12)
    assert json.loads(queued[0]["avoid_accounts"]) == ["a@x.test", "b@x.test"]
    moved = await store.record_stranded(job.job_id, "no Runway account can take this job: …")
    assert moved is not None and moved.row["status"] == "rejected" and moved.signal is Signal.FAILED
    job_json = await store.get_job(job.job_id, events=True)
    assert job_json["error"].startswith("no Runway account") and job_json["error_kind"] == "rejected"
    assert await store.record_stranded(job.job_id, "again") is None  # it ended already


async def test_notice_runs_are_claimed_renewed_and_finished_like_job_runs(store: Store) -> None:
    for _ in range(3):
        await moderated(store)
    runs = await store.claim_notice_runs("relay-a", 1e12, 10, 30, ["slack"])
    assert [r["handler"] for r in runs] == ["slack"]
    assert await store.claim_notice_runs("relay-b", 1e12, 10, 30, ["slack"]) == []  # held
    assert await store.renew_notice_runs("relay-a", [runs[0]["id"]], 30) == {runs[0]["id"]}
    assert await store.renew_notice_runs("relay-b", [runs[0]["id"]], 30) == set()
    assert await store.finish_notice_run(runs[0]["id"], "relay-a", RunStatus.PENDING, error="x", next_at=5.0)
    assert await store.next_notice_due(["slack"]) == 5.0
    again = await store.claim_notice_runs("relay-a", 1e12, 10, 30, ["slack"])
    assert again[0]["attempts"] == 2
    assert await store.finish_notice_run(again[0]["id"], "relay-a", RunStatus.DONE, output="posted")
    listed = await store.notices("a@x.test")
    assert listed[0]["signal"] == "account-paused"
    assert {h["name"]: h["status"] for h in listed[0]["handlers"]} == {"slack": "done", "forward": "pending"}


async def test_overview_counts_slots_and_jobs_today(store: Store) -> None:
    await store.lead(SCHEDULER_LEASE, "relay-a", 60)
    for n in range(3):
        job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": str(n)}, None)
        ticket = await store.begin_submit(job.job_id, "a@x.test", "relay-a")
        assert ticket is not None
        if n < 2:
            await store.record_submitted(ticket, f"user:1-runwayml:a@x.test-task:{n}", "a@x.test", "{}")
    overview = {a["email"]: a for a in await store.account_overview(1e12, 0)}
    assert overview["a@x.test"]["slots_in_use"] == 3  # two running, one create in flight
    assert overview["a@x.test"]["jobs_today"] == 2 and overview["b@x.test"]["jobs_today"] == 0
    assert overview["b@x.test"]["slots_in_use"] == 0


async def test_two_relays_on_one_postgresql_database_pause_an_account_once(pg_url: str) -> None:
    relays = [await opened(pg_url, f"relay-{n}") for n in range(4)]
    try:
        await relays[0].save_accounts({"a@x.test": 5})
        jobs = []
        for n in range(12):
            job = await relays[0].create_job(
                "gen4.5", {"model": "gen4.5", "text_prompt": str(n)}, None, "a@x.test"
            )
            jobs.append(job.job_id)
        results = await asyncio.gather(
            *(relays[n % 4].ingest_poll(job_id, 1, MODERATED, "{}") for n, job_id in enumerate(jobs))
        )
        notices = [notice for result in results for notice in result.notices]
        assert len(notices) == 1 and notices[0].signal is AccountSignal.PAUSED
        assert len(await relays[1].notices("a@x.test")) == 1
    finally:
        for store in relays:
            await store.close()
