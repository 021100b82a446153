"""The SQLite store on a real file: one transaction per callback, outbox rows once per transition."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runway_relay.errors import Conflict, NotFound
from runway_relay.states import Signal
from runway_relay.storage import SQLiteStore, SubmitTicket
from runway_relay.storage.base import _grouped
from runway_relay.taskparse import parse_task

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def route(job: dict, signal: Signal) -> list[str]:
    return ["download"] if signal is Signal.SUCCEEDED else ["notify"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "relay.db"), route)
    await s.open()
    yield s
    await s.close()


def task(status: str, progress: object = None, ref: str | None = None, **extra: object) -> dict:
    body = {"taskId": "user:1-runwayml:a@b.c-task:1", "status": status, **extra}
    if progress is not None:
        body["progressRatio"] = progress
    if ref is not None:
        body["replyRef"] = ref
    return body


async def submitted(store: SQLiteStore) -> tuple[dict, SubmitTicket]:
    job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    ticket = await store.begin_submit(job["id"], None)
    assert ticket is not None
    await store.record_submitted(ticket, "user:1-runwayml:a@b.c-task:1", "a@b.c", "{}")
    return job, ticket


def count(path: str, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


async def ingest(store: SQLiteStore, token: str, body: dict) -> str:
    return (await store.ingest_callback(token, parse_task(body), json.dumps(body))).outcome


async def test_schema_is_wal_and_versioned(store: SQLiteStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in conn.execute("select name from _sqlite_migrations")}
    assert "m001_initial" in names


async def test_callbacks_apply_once_and_never_regress(store: SQLiteStore) -> None:
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
    assert [e["outcome"] for e in view["events"] if e["source"] == "callback"] == [
        "applied",
        "duplicate",
        "stale",
        "applied",
        "duplicate",
        "stale",
    ]
    names = [(h["name"], h["signal"]) for h in view["handlers"]]
    assert names.count(("download", "job-succeeded")) == 1


async def test_unknown_token_and_wrong_reply_ref_store_nothing(store: SQLiteStore) -> None:
    _, ticket = await submitted(store)
    before = count(store.path, "events")
    with pytest.raises(NotFound):
        await ingest(store, "forged-token", task("SUCCEEDED"))
    with pytest.raises(NotFound):
        await ingest(store, ticket.token, task("SUCCEEDED", ref="someone-else.1"))
    assert count(store.path, "events") == before


async def test_job_json_is_built_only_when_someone_reads_it(tmp_path: Path) -> None:
    wanted: set[Signal] = {Signal.SUCCEEDED}
    store = SQLiteStore(str(tmp_path / "relay.db"), route, lambda signal: signal in wanted)
    await store.open()
    try:
        job, ticket = await submitted(store)
        tick = task("RUNNING", "0.4")
        quiet = await store.ingest_callback(ticket.token, parse_task(tick), json.dumps(tick))
        assert quiet.outcome == "applied" and quiet.job is None and quiet.status_changed
        assert quiet.brief == {
            "id": job["id"],
            "status": "running",
            "account": "a@b.c",
            "task_id": "user:1-runwayml:a@b.c-task:1",
        }
        again = task("RUNNING", "0.6")
        moved = await store.ingest_callback(ticket.token, parse_task(again), json.dumps(again))
        assert moved.job is None and not moved.status_changed and moved.brief["status"] == "running"
        done = task("SUCCEEDED", 1, artifacts=[{"url": "http://x/v.mp4"}])
        read = await store.ingest_callback(ticket.token, parse_task(done), json.dumps(done))
        assert read.job is not None and read.job["status"] == "succeeded" and read.job["progress"] == 1.0
        assert [h["signal"] for h in read.job["handlers"] if h["name"] == "download"] == ["job-succeeded"]
    finally:
        await store.close()


async def test_resubmit_makes_old_attempt_stale(store: SQLiteStore) -> None:
    job, ticket = await submitted(store)
    await ingest(store, ticket.token, task("FAILED", error="Internal error"))
    again = await store.resubmit(job["id"], max_attempts=1)
    assert again is not None and again["attempt"] == 2 and again["status"] == "queued"
    assert await store.resubmit(job["id"], max_attempts=1) is None
    assert await ingest(store, ticket.token, task("SUCCEEDED")) == "stale"
    second = await store.begin_submit(job["id"], None)
    assert second is not None and second.reply_ref.endswith(".2")
    assert second.token != ticket.token


async def test_outbox_claim_retry_and_crash_recovery(store: SQLiteStore) -> None:
    _, ticket = await submitted(store)
    await ingest(store, ticket.token, task("SUCCEEDED"))
    runs = await store.claim_runs(now=1e12, limit=10)
    assert sorted((r["handler"], r["signal"]) for r in runs) == [
        ("download", "job-succeeded"),
        ("notify", "job-submitted"),
    ]
    assert await store.claim_runs(now=1e12, limit=10) == []
    assert await store.reset_running_runs() == len(runs)
    again = await store.claim_runs(now=1e12, limit=10)
    assert {r["id"] for r in again} == {r["id"] for r in runs}
    assert all(r["attempts"] == 2 for r in again)
    download = next(r for r in again if r["handler"] == "download")
    await store.finish_run(download["id"], "dead", error="boom")
    with pytest.raises(NotFound):
        await store.replay(download["job_id"], "notify")  # not a run of the last transition
    replayed = await store.replay(download["job_id"], "download")
    assert replayed[0]["status"] == "pending" and replayed[0]["attempts"] == 0


async def test_cancel_is_final_and_history_survives_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "r.db")
    first = SQLiteStore(path, route)
    await first.open()
    job, ticket = await submitted(first)
    cancelled = await first.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    with pytest.raises(Conflict):
        await first.cancel(job["id"])
    assert await ingest(first, ticket.token, task("SUCCEEDED")) == "stale"
    await first.close()
    second = SQLiteStore(path, route)
    await second.open()
    again = await second.get_job(job["id"], events=True)
    assert again["status"] == "cancelled"
    assert len(again["events"]) >= 4
    await second.close()


async def test_list_jobs_pages_with_a_cursor(store: SQLiteStore) -> None:
    ids = [(await store.create_job("gen4", {"model": "gen4"}, None))["id"] for _ in range(5)]
    page, cursor = await store.list_jobs(limit=2)
    assert [j["id"] for j in page] == ids[::-1][:2] and cursor
    rest, end = await store.list_jobs(limit=10, cursor=cursor)
    assert [j["id"] for j in rest] == ids[::-1][2:] and end is None
    only, _ = await store.list_jobs(status="succeeded")
    assert only == []


# -- group commit: concurrent callbacks share one transaction, each in its own savepoint ---------


async def _in_one_group(store: SQLiteStore, *calls: Any) -> list[Any]:
    """Run the calls while the writer thread is held, so they queue up and commit as ONE group."""
    gate = threading.Event()
    store._executor.submit(gate.wait)
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0.05)  # every call is queued behind the gate
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_failing_callback_in_a_group_rolls_back_alone(tmp_path: Path) -> None:
    doomed: set[str] = set()

    def fragile_route(job: dict, signal: Signal) -> list[str]:
        if job["id"] in doomed:  # fails after the event, job update and transition were written
            raise RuntimeError("route exploded")
        return route(job, signal)

    store = SQLiteStore(str(tmp_path / "relay.db"), fragile_route)
    await store.open()
    try:
        (a, ta), (b, tb), (c, tc) = [await submitted(store) for _ in range(3)]
        doomed.add(b["id"])
        events_before = count(store.path, "events")
        commits_before = store.group_commits
        done = task("SUCCEEDED", 1)
        results = await _in_one_group(
            store,
            store.ingest_callback(ta.token, parse_task(done), "{}"),
            store.ingest_callback(tb.token, parse_task(done), "{}"),
            store.ingest_callback(tc.token, parse_task(task("RUNNING", "0.4")), "{}"),
            store.ingest_callback("forged", parse_task(done), "{}"),
        )
        assert store.group_commits == commits_before + 1
        assert [getattr(r, "outcome", type(r).__name__) for r in results] == [
            "applied",
            "RuntimeError",
            "applied",
            "NotFound",
        ]
        assert count(store.path, "events") == events_before + 2
        assert (await store.get_job(a["id"]))["status"] == "succeeded"
        assert (await store.get_job(c["id"]))["progress"] == 0.4
        untouched = await store.get_job(b["id"], events=True)
        assert untouched["status"] == "submitted"
        assert [t["to_status"] for t in untouched["transitions"]] == ["submitted"]
        assert [h["signal"] for h in untouched["handlers"]] == ["job-submitted"]
    finally:
        await store.close()


async def test_every_answer_comes_after_its_commit(store: SQLiteStore) -> None:
    pairs = [await submitted(store) for _ in range(5)]

    async def ingest_and_look(ticket: SubmitTicket, n: int) -> int:
        body = json.dumps({"status": "RUNNING", "progressRatio": 0.5, "n": n})
        await store.ingest_callback(ticket.token, parse_task(json.loads(body)), body)
        with sqlite3.connect(store.path) as other:  # another connection sees it at once
            return other.execute("select count(*) from events where body = ?", [body]).fetchone()[0]

    seen = await _in_one_group(store, *(ingest_and_look(t, n) for n, (_, t) in enumerate(pairs)))
    assert seen == [1] * 5


class _Breaking(SQLiteStore):
    @_grouped
    def fails_at_commit(self) -> None:
        """Writes a row that only the COMMIT finds wrong (a deferred foreign key)."""
        self.db.execute("PRAGMA defer_foreign_keys = ON")
        self.db.execute("insert into events (job_id, source, kind, outcome) values ('nope', 't', 't', 't')")


async def test_a_failed_commit_fails_the_whole_group(tmp_path: Path) -> None:
    store = _Breaking(str(tmp_path / "relay.db"), route)
    await store.open()
    try:
        job, ticket = await submitted(store)
        events_before = count(store.path, "events")
        results = await _in_one_group(
            store,
            store.ingest_callback(ticket.token, parse_task(task("RUNNING", "0.5")), "{}"),
            store.fails_at_commit(),
        )
        assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
        assert count(store.path, "events") == events_before
        # the writer and its connection carry on
        assert await ingest(store, ticket.token, task("RUNNING", "0.5")) == "applied"
        assert (await store.get_job(job["id"]))["progress"] == 0.5
    finally:
        await store.close()
