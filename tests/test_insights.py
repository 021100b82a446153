"""The console's storage reads (storage/insights.py) and the pure timeline and usage modules."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runway_relay.errors import Conflict, NotFound
from runway_relay.states import RunStatus, Signal
from runway_relay.storage import SCHEDULER_LEASE, Routing, Store, open_store
from runway_relay.storage.insights import summary_columns
from runway_relay.taskparse import parse_task
from runway_relay.timeline import spent, timeline
from runway_relay.usage import percentile, summarize, window

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ME = "relay-a"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = open_store(db_url, Routing({Signal.SUCCEEDED: ("download",)}), origin=ME)
    await s.open()
    await s.lead(SCHEDULER_LEASE, ME, 600)
    yield s
    await s.close()


async def make(store: Store, prompt: str | None, model: str = "gen4.5", **kw: object) -> dict:
    params = {"model": model, "duration": 5, **({"text_prompt": prompt} if prompt else {})}
    moved = await store.create_job(model, params, None, **kw)  # type: ignore[arg-type]
    return await store.job_json(moved.row)


def test_summary_columns() -> None:
    assert summary_columns({"text_prompt": " a fox ", "duration": 5}) == {"prompt": "a fox", "duration": 5}
    shots = {"multishot_prompt_1": "one", "multishot_duration_1": 5, "multishot_prompt_2": "two"}
    shots["multishot_duration_2"] = 4
    assert summary_columns({"text_prompt": "all", **shots}) == {"prompt": "all / one / two", "duration": 9}
    assert summary_columns({"model": "wan-2.2-animate"}) == {"prompt": None, "duration": None}


async def test_search_filters_and_pages(store: Store) -> None:
    for n in range(7):
        await make(store, f"a Red fox number {n}" if n % 2 else f"blue whale {n}")
    await make(store, "50% off_sale")
    await make(store, None, account="b@x.com")
    jobs, cursor = await store.find_jobs(q="red FOX", limit=2)
    assert [j["prompt"] for j in jobs] == ["a Red fox number 5", "a Red fox number 3"] and cursor
    rest, end = await store.find_jobs(q="red FOX", limit=2, cursor=cursor)
    assert [j["prompt"] for j in rest] == ["a Red fox number 1"] and end is None
    assert [j["prompt"] for j in (await store.find_jobs(q="0%"))[0]] == ["50% off_sale"]
    assert (await store.find_jobs(q="o_f"))[0] == []  # like's wildcards are escaped
    assert [j["account"] for j in (await store.find_jobs(account="b@x.com"))[0]] == ["b@x.com"]
    first = (await store.find_jobs(limit=500))[0][-1]
    assert [j["id"] for j in (await store.find_jobs(q=first["id"][:14]))[0]] == [first["id"]]
    assert [j["id"] for j in (await store.find_jobs(q=first["id"][:14].upper()))[0]] == [first["id"]]


async def test_search_folds_every_letter_on_both_databases(store: Store) -> None:
    await make(store, "L'ÉTÉ À MÜNCHEN")
    await make(store, "winter in Oslo")
    assert [j["prompt"] for j in (await store.find_jobs(q="été à münchen"))[0]] == ["L'ÉTÉ À MÜNCHEN"]
    assert [j["prompt"] for j in (await store.find_jobs(q="OSLO"))[0]] == ["winter in Oslo"]


async def test_groups_and_client_refs(store: Store) -> None:
    a = await make(store, "x", group_id="g-1")
    b = await make(store, "x", model="veo-3.1", group_id="g-1")
    assert [j["id"] for j in await store.group_jobs("g-1")] == [a["id"], b["id"]]
    assert a["group_id"] == "g-1" and (await make(store, "y"))["group_id"] is None
    with pytest.raises(NotFound):
        await store.group_jobs("g-none")
    once = await make(store, "z", client_ref="batch:1")
    again = await make(store, "z", client_ref="batch:1")
    assert again["id"] == once["id"] and again["prompt"] == "z"
    with pytest.raises(Conflict, match="other parameters"):
        await make(store, "other", client_ref="batch:1")
    assert (await store.job_by_client_ref("batch:1"))["id"] == once["id"]  # type: ignore[index]
    assert await store.job_by_client_ref("batch:2") is None


async def test_handler_history_survives_a_replay(store: Store) -> None:
    job = await make(store, "x")
    ticket = await store.begin_submit(job["id"], "a@x.com", ME)
    assert ticket is not None
    await store.record_submitted(ticket, "user:1-runwayml:a@x.com-task:1", "a@x.com", "{}")
    done = {"taskId": "user:1-runwayml:a@x.com-task:1", "status": "SUCCEEDED", "progressRatio": 1}
    await store.ingest_callback(ticket.token, parse_task(done), "{}")
    [run] = await store.claim_runs(ME, 1e12, 5, 60)
    await store.finish_run(run["id"], ME, RunStatus.PENDING, error="boom", next_at=0)
    [run] = await store.claim_runs(ME, 1e12, 5, 60)
    await store.finish_run(run["id"], ME, RunStatus.DONE, output="video.mp4 12 bytes")
    await store.replay(job["id"])
    [run] = await store.claim_runs(ME, 1e12, 5, 60)
    await store.finish_run(run["id"], ME, RunStatus.DONE, output="already complete")
    history = await store.handler_history(job["id"])
    assert [(h["round"], h["attempt"], h["outcome"]) for h in history] == [
        (0, 1, "failed"),
        (0, 2, "done"),
        (1, 1, "done"),
    ]
    assert history[0]["error"] == "boom" and history[2]["output"] == "already complete"
    view = (await store.get_job(job["id"]))["handlers"][0]
    assert view["output"] == "already complete" and view["replays"] == 1


async def test_usage_facts_and_slots(store: Store) -> None:
    job = await make(store, "x")
    ticket = await store.begin_submit(job["id"], "a@x.com", ME)
    assert ticket is not None
    await store.record_deferred(ticket, 0.0, "429 (busy): account a@x.com rests 12 s")
    await store.save_accounts({"a@x.com": 2, "b@x.com": 1})
    ticket = await store.begin_submit(job["id"], "a@x.com", ME)
    assert ticket is not None
    await store.record_submitted(ticket, "user:1-runwayml:a@x.com-task:1", "a@x.com", "{}")
    facts = await store.usage_facts("2000-01-01T00:00:00.000Z")
    [row] = facts["jobs"]
    assert row["started_at"] and row["ended_at"] is None and row["duration"] == 5
    assert [d["account"] for d in facts["deferrals"]] == ["a@x.com"]
    assert await store.slots_in_use() == [
        {"email": "a@x.com", "in_use": 1, "max_jobs": 2},
        {"email": "b@x.com", "in_use": 0, "max_jobs": 1},
    ]


async def test_migration_backfills_prompt_and_duration(tmp_path: Path) -> None:
    """A job stored before m006_console gets its prompt and duration when the database is migrated."""
    path = str(tmp_path / "old.db")
    fresh = open_store(path, Routing())
    await fresh.open()
    await fresh.close()
    with sqlite3.connect(path) as conn:  # what the release before m006 left: the columns empty
        params = {"model": "gen4.5", "text_prompt": "old fox", "duration": 3}
        conn.execute(
            "insert into jobs (id, status, model, params, attempt, created_at, updated_at) "
            "values ('1', 'succeeded', 'gen4.5', ?, 1, 'x', 'x')",
            [json.dumps(params)],
        )
        conn.execute("delete from relay_migrations where name = 'm006_console'")
        for index in ("group_id", "client_ref", "account_id", "created_at"):
            conn.execute(f"drop index idx_jobs_{index}")
        for column in ("prompt", "duration", "group_id", "client_ref"):
            conn.execute(f"alter table jobs drop column {column}")
        conn.execute("drop table handler_attempts")
        conn.execute("alter table handler_runs drop column replays")
    again = open_store(path, Routing())
    await again.open()
    try:
        job = await again.get_job("1")
        assert job["prompt"] == "old fox"
        assert (await again.find_jobs(q="fox"))[0][0]["id"] == "1"
    finally:
        await again.close()


def _phase_job(now: datetime) -> dict:
    def at(seconds: float) -> str:
        return (now + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    transitions = [
        {"attempt": 1, "from_status": "queued", "to_status": "submitted", "at": at(20)},
        {"attempt": 1, "from_status": "submitted", "to_status": "running", "at": at(21)},
        {"attempt": 1, "from_status": "running", "to_status": "succeeded", "at": at(31)},
    ]
    events = [
        {"source": "upstream", "kind": "create", "outcome": "deferred", "attempt": 1, "at": at(2),
         "detail": "429 (busy): rests 18 s"},
        {"source": "api", "kind": "replay", "outcome": "applied", "attempt": 1, "at": at(40),
         "detail": "download"},
    ]  # fmt: skip
    return {"created_at": at(0), "updated_at": at(31), "status": "succeeded", "error": None,
            "transitions": transitions, "events": events}  # fmt: skip


def test_timeline_splits_the_queue_at_a_429() -> None:
    now = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    entries = timeline(_phase_job(now))
    phases = [(e["state"], e["rest"], e["seconds"]) for e in entries if e["kind"] == "phase"]
    assert phases == [
        ("queued", False, 2.0),
        ("throttled", True, 18.0),
        ("submitted", False, 1.0),
        ("running", False, 10.0),
        ("succeeded", False, None),
    ]
    assert entries[1]["detail"] == "429 (busy): rests 18 s"
    assert entries[-1]["kind"] == "note" and entries[-1]["detail"] == "download"
    assert spent(entries) == {"queued": 2.0, "throttled": 18.0, "submitted": 1.0, "running": 10.0}


def test_timeline_of_a_running_job_counts_so_far() -> None:
    now = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    job = _phase_job(now)
    job["transitions"] = job["transitions"][:2]
    job["status"] = "running"
    [*_, last] = [e for e in timeline(job, now + timedelta(seconds=25)) if e["kind"] == "phase"]
    assert last["state"] == "running" and last["ongoing"] and last["seconds"] == 4.0


def test_percentile_and_window() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    start, days = window(3, datetime(2026, 3, 5, 15, tzinfo=UTC))
    assert start == datetime(2026, 3, 3, tzinfo=UTC) and days == ["2026-03-03", "2026-03-04", "2026-03-05"]


def test_summarize_rates_add_up() -> None:
    now = datetime(2026, 3, 5, 15, tzinfo=UTC)
    base = {"model": "veo-3.1", "account": "a@x.com", "duration": 8, "error_kind": None,
            "created_at": "2026-03-05T10:00:00.000Z", "started_at": "2026-03-05T10:00:10.000Z",
            "running_at": None, "ended_at": "2026-03-05T10:01:10.000Z"}  # fmt: skip
    jobs = [
        {**base, "status": "succeeded"},
        {**base, "status": "succeeded", "ended_at": "2026-03-05T10:02:10.000Z"},
        {**base, "status": "failed", "error_kind": "moderation"},
        {**base, "status": "rejected", "started_at": None},
        {**base, "status": "running", "model": "sora-2", "created_at": "2026-03-04T09:00:00.000Z"},
    ]
    deferrals = [{"model": "veo-3.1", "account": "a@x.com", "at": "2026-03-05T10:00:05.000Z"}]
    answer = summarize({"jobs": jobs, "deferrals": deferrals}, 2, [{"email": "a@x.com"}], now)
    total = answer["total"]
    assert total["jobs"] == 5 and total["active"] == 1 and total["video_seconds"] == 16
    assert (total["success_rate"], total["failure_rate"], total["moderation_rate"]) == (0.5, 0.25, 0.25)
    assert total["generation_p50"] == 90.0 and total["queue_wait_p50"] == 10.0 and total["throttles"] == 1
    assert [d["day"] for d in answer["by_day"]] == ["2026-03-04", "2026-03-05"]
    assert [m["model"] for m in answer["by_model"]] == ["sora-2", "veo-3.1"]
    assert answer["rows"][0]["day"] == "2026-03-05" and answer["accounts"] == [{"email": "a@x.com"}]


def test_timeline_merges_progress_steps_of_one_phase() -> None:
    now = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)
    job = _phase_job(now)
    step = {"attempt": 1, "from_status": "running", "to_status": "running", "at": job["transitions"][1]["at"]}
    job["transitions"].insert(2, {**step, "at": (now + timedelta(seconds=25)).isoformat()})
    states = [e["state"] for e in timeline(job) if e["kind"] == "phase"]
    assert states == ["queued", "throttled", "submitted", "running", "succeeded"]
