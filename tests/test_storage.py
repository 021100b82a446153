"""The store on real databases (a SQLite file and a PostgreSQL database): one transaction per
callback, outbox rows once per transition, leases, and the schema."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runway_relay.errors import Conflict, NotFound
from runway_relay.states import RunStatus, Signal
from runway_relay.storage import SCHEDULER_LEASE, Routing, Store, SubmitTicket, open_store
from runway_relay.storage.connector import Tx
from runway_relay.storage.migrations import MIGRATIONS, applied
from runway_relay.taskparse import parse_task

pytestmark = pytest.mark.anyio

ROUTING = Routing(
    {Signal.SUCCEEDED: ("download",), Signal.SUBMITTED: ("notify",), Signal.FAILED: ("notify",)},
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = open_store(db_url, ROUTING, origin="relay-a")
    await s.open()
    await s.lead(SCHEDULER_LEASE, "relay-a", 60)
    yield s
    await s.close()


def task(status: str, progress: object = None, ref: str | None = None, **extra: object) -> dict:
    body = {"taskId": "user:1-runwayml:a@b.c-task:1", "status": status, **extra}
    if progress is not None:
        body["progressRatio"] = progress
    if ref is not None:
        body["replyRef"] = ref
    return body


async def submitted(store: Store, task_id: str = "user:1-runwayml:a@b.c-task:1") -> tuple[dict, SubmitTicket]:
    moved = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    ticket = await store.begin_submit(moved.job_id, None, "relay-a")
    assert ticket is not None
    await store.record_submitted(ticket, task_id, "a@b.c", "{}")
    return moved.row, ticket


async def scalar(store: Store, sql: str, args: list[Any] | None = None) -> Any:
    async def unit(tx: Tx) -> Any:
        row = await tx.one(sql, args or [])
        return next(iter(row.values())) if row else None

    return await store.connector.read(unit)  # type: ignore[attr-defined]


async def ingest(store: Store, token: str, body: dict) -> str:
    return (await store.ingest_callback(token, parse_task(body), json.dumps(body))).outcome


async def test_schema_is_versioned(store: Store) -> None:
    assert await applied(store.connector) == [m.name for m in MIGRATIONS]  # type: ignore[attr-defined]


async def test_callbacks_apply_once_and_never_regress(store: Store) -> None:
    job, ticket = await submitted(store)
    token = ticket.token
    assert await ingest(store, token, task("RUNNING", "0.5", ticket.reply_ref)) == "applied"
    assert await ingest(store, token, task("RUNNING", 0.5)) == "duplicate"
    assert await ingest(store, token, task("PENDING", "0")) == "stale"
    done = task("SUCCEEDED", 1, artifacts=[{"url": "http://x/v.mp4", "fileSize": "10"}])
    assert await ingest(store, token, done) == "applied"
    assert await ingest(store, token, done) == "duplicate"
    assert await ingest(store, token, task("RUNNING", "0.9")) == "stale"
    view = await store.get_job(job["id"], events=True)
    assert view["status"] == "succeeded" and view["progress"] == 1.0
    assert view["artifacts"][0]["url"] == "http://x/v.mp4"
    outcomes = [e["outcome"] for e in view["events"] if e["source"] == "callback"]
    assert outcomes == ["applied", "duplicate", "stale", "applied", "duplicate", "stale"]
    names = [(h["name"], h["signal"]) for h in view["handlers"]]
    assert names.count(("download", "job-succeeded")) == 1


async def test_a_write_returns_exactly_what_it_moved(store: Store) -> None:
    job, ticket = await submitted(store)
    tick = task("RUNNING", "0.4")
    result = await store.ingest_callback(ticket.token, parse_task(tick), json.dumps(tick))
    moved = result.moved
    assert moved is not None and moved.status_changed and moved.signal is Signal.PROGRESS
    assert moved.previous == "submitted" and moved.row["status"] == "running"
    assert moved.brief()["account"] == "a@b.c" and moved.transition_id
    again = task("RUNNING", "0.6")
    second = (await store.ingest_callback(ticket.token, parse_task(again), json.dumps(again))).moved
    assert second is not None and not second.status_changed and second.row["progress"] == 0.6
    assert (await store.ingest_callback(ticket.token, parse_task(again), "{}")).moved is None
    job_json = await store.job_json(second.row)
    assert job_json["progress"] == 0.6 and job_json["id"] == job["id"]


async def test_unknown_token_and_wrong_reply_ref_store_nothing(store: Store) -> None:
    _, ticket = await submitted(store)
    before = await scalar(store, "select count(*) from events")
    with pytest.raises(NotFound):
        await ingest(store, "forged-token", task("SUCCEEDED"))
    with pytest.raises(NotFound):
        await ingest(store, ticket.token, task("SUCCEEDED", ref="someone-else.1"))
    assert await scalar(store, "select count(*) from events") == before


async def test_text_postgresql_refuses_is_stored_safely(store: Store) -> None:
    _, ticket = await submitted(store)
    body = task("RUNNING", "0.3", progressText="half\x00way \ud800")
    raw = json.dumps(body)
    assert (await store.ingest_callback(ticket.token, parse_task(body), raw)).outcome == "applied"
    text = await scalar(store, "select progress_text from jobs where id = ?", [ticket.job_id])
    assert "\x00" not in text and text.startswith("half")


async def test_resubmit_makes_old_attempt_stale(store: Store) -> None:
    job, ticket = await submitted(store)
    await ingest(store, ticket.token, task("FAILED", error="Internal error"))
    again = await store.resubmit(job["id"], max_attempts=1)
    assert again is not None and again.row["attempt"] == 2 and again.row["status"] == "queued"
    assert await store.resubmit(job["id"], max_attempts=1) is None
    assert await ingest(store, ticket.token, task("SUCCEEDED")) == "stale"
    second = await store.begin_submit(job["id"], None, "relay-a")
    assert second is not None and second.reply_ref.endswith(".2")
    assert second.token != ticket.token


async def test_only_the_lease_holder_can_start_a_create(store: Store) -> None:
    moved = await store.create_job("gen4", {"model": "gen4", "text_prompt": "x"}, None)
    assert await store.begin_submit(moved.job_id, None, "relay-b") is None  # not the scheduler
    assert await store.lead(SCHEDULER_LEASE, "relay-b", 60) is False  # relay-a holds it
    await store.resign(SCHEDULER_LEASE, "relay-a")
    assert await store.lease(SCHEDULER_LEASE) is None
    assert await store.lead(SCHEDULER_LEASE, "relay-b", 60) is True
    assert await store.begin_submit(moved.job_id, None, "relay-a") is None
    assert await store.begin_submit(moved.job_id, None, "relay-b") is not None


async def test_a_lease_that_ran_out_can_be_taken(store: Store) -> None:
    await store.resign(SCHEDULER_LEASE, "relay-a")
    assert await store.lead("x", "relay-a", 0.05)
    held = await store.lease("x")
    assert held is not None and held["holder"] == "relay-a"
    while await store.lease("x") is not None:  # wait for it to end (no fixed sleep)
        await asyncio.sleep(0.02)
    assert await store.lead("x", "relay-b", 60)
    assert (await store.lease("x"))["epoch"] == 2  # type: ignore[index]


async def test_outbox_claim_lease_retry_and_replay(store: Store) -> None:
    _, ticket = await submitted(store)
    await ingest(store, ticket.token, task("SUCCEEDED"))
    runs = await store.claim_runs("relay-a", now=1e12, limit=10, lease=60)
    assert sorted((r["handler"], r["signal"]) for r in runs) == [
        ("download", "job-succeeded"),
        ("notify", "job-submitted"),
    ]
    assert all(r["lease_owner"] == "relay-a" and r["attempts"] == 1 for r in runs)
    assert await store.claim_runs("relay-b", now=1e12, limit=10, lease=60) == []
    ids = [r["id"] for r in runs]
    assert await store.renew_runs("relay-a", ids, 60) == set(ids)
    assert await store.renew_runs("relay-b", ids, 60) == set()
    download = next(r for r in runs if r["handler"] == "download")
    assert not await store.finish_run(download["id"], "relay-b", RunStatus.DONE)  # not its run
    assert await store.finish_run(download["id"], "relay-a", RunStatus.DEAD, error="boom")
    with pytest.raises(NotFound):
        await store.replay(download["job_id"], "notify")  # not a run of the last transition
    replayed = await store.replay(download["job_id"], "download")
    assert replayed[0]["status"] == "pending" and replayed[0]["attempts"] == 0


async def test_a_run_whose_lease_ran_out_is_taken_over_once(store: Store) -> None:
    await submitted(store)
    first = await store.claim_runs("relay-a", now=1e12, limit=10, lease=0.05)
    assert [r["handler"] for r in first] == ["notify"]
    taken: list[dict[str, Any]] = []
    while not taken:  # relay-a "died": once its lease ends, another relay claims the run
        taken = await store.claim_runs("relay-b", now=1e12, limit=10, lease=60)
        await asyncio.sleep(0.02)
    assert [r["id"] for r in taken] == [first[0]["id"]] and taken[0]["attempts"] == 2
    assert await store.claim_runs("relay-c", now=1e12, limit=10, lease=60) == []
    assert not await store.finish_run(first[0]["id"], "relay-a", RunStatus.DONE)
    assert await store.finish_run(first[0]["id"], "relay-b", RunStatus.DONE)


async def test_a_run_waits_for_the_runs_it_comes_after(db_url: str) -> None:
    routing = Routing({Signal.SUCCEEDED: ("download", "exec")}, {"exec": ("download",)})
    store = open_store(db_url, routing, origin="relay-a")
    await store.open()
    try:
        await store.lead(SCHEDULER_LEASE, "relay-a", 60)
        _, ticket = await submitted(store)
        await ingest(store, ticket.token, task("SUCCEEDED"))
        claimed = await store.claim_runs("relay-a", now=1e12, limit=10, lease=60)
        assert [r["handler"] for r in claimed] == ["download"]
        assert await store.claim_runs("relay-a", now=1e12, limit=10, lease=60) == []
        await store.finish_run(claimed[0]["id"], "relay-a", RunStatus.PENDING, error="x", next_at=1e13)
        assert await store.claim_runs("relay-a", now=1e12, limit=10, lease=60) == []  # still waiting
        again = await store.claim_runs("relay-a", now=2e13, limit=10, lease=60)
        assert [r["handler"] for r in again] == ["download"]
        await store.finish_run(again[0]["id"], "relay-a", RunStatus.DEAD, error="gone")
        after = await store.claim_runs("relay-a", now=2e13, limit=10, lease=60)
        assert [r["handler"] for r in after] == ["exec"]
    finally:
        await store.close()


async def test_replay_leaves_a_running_run_alone(store: Store) -> None:
    job, _ = await submitted(store)
    await store.claim_runs("relay-a", now=1e12, limit=10, lease=60)
    with pytest.raises(Conflict):
        await store.replay(job["id"])


async def test_a_refunded_try_does_not_count(store: Store) -> None:
    await submitted(store)
    (run,) = await store.claim_runs("relay-a", now=1e12, limit=10, lease=60)
    assert await store.finish_run(run["id"], "relay-a", RunStatus.PENDING, next_at=0, refund=True)
    (again,) = await store.claim_runs("relay-a", now=1e12, limit=10, lease=60)
    assert again["attempts"] == 1


async def test_cancel_is_final_and_history_survives_reopening(db_url: str) -> None:
    first = open_store(db_url, ROUTING, origin="relay-a")
    await first.open()
    await first.lead(SCHEDULER_LEASE, "relay-a", 60)
    job, ticket = await submitted(first)
    cancelled = await first.cancel(job["id"])
    assert cancelled.row["status"] == "cancelled" and cancelled.signal is Signal.CANCELLED
    with pytest.raises(Conflict):
        await first.cancel(job["id"])
    assert await ingest(first, ticket.token, task("SUCCEEDED")) == "stale"
    await first.close()
    second = open_store(db_url, ROUTING)
    await second.open()
    again = await second.get_job(job["id"], events=True)
    assert again["status"] == "cancelled"
    assert len(again["events"]) >= 4
    await second.close()


async def test_find_jobs_pages_with_a_cursor(store: Store) -> None:
    ids = [(await store.create_job("gen4", {"model": "gen4"}, None)).job_id for _ in range(5)]
    page, cursor = await store.find_jobs(limit=2)
    assert [j["id"] for j in page] == ids[::-1][:2] and cursor
    rest, end = await store.find_jobs(limit=10, cursor=cursor)
    assert [j["id"] for j in rest] == ids[::-1][2:] and end is None
    only, _ = await store.find_jobs(status="succeeded")
    assert only == []


async def test_queue_view_counts_creates_in_flight_and_explore(store: Store) -> None:
    explore = await store.create_job("gen4", {"model": "gen4", "exploreMode": True}, None)
    plain = await store.create_job("gen4", {"model": "gen4"}, None)
    await store.begin_submit(explore.job_id, "a@b.c", "relay-a")
    queued, slots = await store.queue_view(now=1e12)
    assert [q["id"] for q in queued] == [plain.job_id]
    assert slots == [{"id": explore.job_id, "account": "a@b.c", "explore": True}]


async def test_concurrent_callbacks_for_one_job_never_lose_an_update(store: Store) -> None:
    _, ticket = await submitted(store)
    ticks = [task("RUNNING", f"{n / 100:.2f}") for n in range(1, 41)]
    results = await asyncio.gather(
        *(store.ingest_callback(ticket.token, parse_task(t), json.dumps(t)) for t in ticks)
    )
    assert {r.outcome for r in results} <= {"applied", "stale"}
    job = await store.get_job(ticket.job_id)
    assert job["progress"] == 0.4  # whatever the order, the highest progress wins
    assert await scalar(store, "select count(*) from events where source = 'callback'") == 40


async def test_two_stores_on_one_postgresql_database_share_it(pg_url: str) -> None:
    a, b = open_store(pg_url, ROUTING, origin="a"), open_store(pg_url, ROUTING, origin="b")
    await asyncio.gather(a.open(), b.open())  # migrations run once, under the schema lock
    heard: list[dict[str, Any] | None] = []
    await b.subscribe(heard.append)
    try:
        assert await a.lead(SCHEDULER_LEASE, "a", 60)
        moved = await a.create_job("gen4", {"model": "gen4"}, None)
        while not heard:
            await asyncio.sleep(0.01)
        assert heard[0] is not None and heard[0]["id"] == moved.job_id and heard[0]["origin"] == "a"
        assert (await b.get_job(moved.job_id))["status"] == "queued"
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_a_relay_that_lost_the_lease_cannot_send_or_record_its_create_again(store: Store) -> None:
    """Relay A's create failed (no answer); A loses the lease while alive; B takes over, queues the job
    again and sends its own create. A's late steps must neither resend nor overwrite B's."""
    moved = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    job_id = moved.job_id
    ours = await store.begin_submit(job_id, None, "relay-a")
    assert ours is not None and await store.still_submitting(ours)

    await store.resign(SCHEDULER_LEASE, "relay-a")
    assert not await store.still_submitting(ours)  # the lease is gone: no resend
    assert await store.lead(SCHEDULER_LEASE, "relay-b", 60)
    (stuck,) = await store.submitting_jobs()
    found_nothing = SubmitTicket(
        job_id, stuck["attempt"], stuck["reply_ref"], "", {}, None, stuck["token_hash"], "relay-b"
    )
    await store.record_deferred(found_nothing, 0.0, "not upstream: queued again")
    theirs = await store.begin_submit(job_id, None, "relay-b")
    assert theirs is not None

    assert await store.lead(SCHEDULER_LEASE, "relay-a", 60) is False
    assert not await store.still_submitting(ours)  # taken over: never resent, even with a lease
    await store.record_deferred(ours, 0.0, "429")  # does not free B's create
    assert await store.record_rejected(ours, "400", None) is None
    await store.record_submitted(ours, "task-of-a", "a@b.c", "{}")  # an orphan: not the job's task
    job = await store.job_row(job_id)
    assert (job["status"], job["task_id"], bool(job["submitting_since"])) == ("queued", None, True)
    assert await scalar(store, "select task_id from attempts where job_id = ?", [job_id]) is None

    await store.record_submitted(theirs, "task-of-b", "a@b.c", "{}")
    job = await store.get_job(job_id, events=True)
    assert (job["status"], job["task_id"]) == ("submitted", "task-of-b")
    outcomes = [e["outcome"] for e in job["events"] if e["kind"] == "create"]
    assert outcomes == ["deferred", "superseded", "superseded", "orphan", "applied"]
