"""The SQLite connector's own promises: group commit, one serving relay per file, and older databases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_storage import ROUTING, submitted, task

from runway_relay.storage import SCHEDULER_LEASE, DatabaseInUse, Routing, Store, open_store
from runway_relay.storage.connector import Tx
from runway_relay.storage.migrations import MIGRATIONS, applied, migrate
from runway_relay.storage.sqlite import SQLiteConnector
from runway_relay.taskparse import parse_task

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(str(tmp_path / "relay.db"), ROUTING, origin="relay-a")
    await s.open()
    await s.lead(SCHEDULER_LEASE, "relay-a", 60)
    yield s
    await s.close()


def count(path: str, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


async def _in_one_group(store: Store, *calls: Any) -> list[Any]:
    """Run the calls while the writer thread is held, so they queue up and commit as ONE group."""
    gate = threading.Event()
    store.connector._executor.submit(gate.wait)  # type: ignore[attr-defined]
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0.05)  # every call is queued behind the gate
    gate.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def _explodes(tx: Tx) -> None:
    """A unit that fails after it wrote (its writes must vanish, its neighbours' must not)."""
    await tx.execute("insert into leases (name, holder, expires_at) values ('doomed', 'x', 0)")
    raise RuntimeError("exploded after writing")


async def test_a_failing_unit_in_a_group_rolls_back_alone(store: Store) -> None:
    path = store.url
    (a, ta), (c, tc) = [await submitted(store) for _ in range(2)]
    events_before = count(path, "events")
    commits_before = store.connector.group_commits  # type: ignore[attr-defined]
    done = task("SUCCEEDED", 1)
    results = await _in_one_group(
        store,
        store.ingest_callback(ta.token, parse_task(done), "{}"),
        store.connector.write(_explodes, grouped=True),
        store.ingest_callback(tc.token, parse_task(task("RUNNING", "0.4")), "{}"),
        store.ingest_callback("forged", parse_task(done), "{}"),
    )
    assert store.connector.group_commits == commits_before + 1  # type: ignore[attr-defined]
    outcomes = [getattr(r, "outcome", type(r).__name__) for r in results]
    assert outcomes == ["applied", "RuntimeError", "applied", "NotFound"]
    assert count(path, "events") == events_before + 2
    assert (await store.get_job(a["id"]))["status"] == "succeeded"
    assert (await store.get_job(c["id"]))["progress"] == 0.4
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from leases where name = 'doomed'").fetchone()[0] == 0


async def test_every_answer_comes_after_its_commit(store: Store) -> None:
    pairs = [await submitted(store) for _ in range(5)]

    async def ingest_and_look(ticket: Any, n: int) -> int:
        body = json.dumps({"status": "RUNNING", "progressRatio": 0.5, "n": n})
        await store.ingest_callback(ticket.token, parse_task(json.loads(body)), body)
        with sqlite3.connect(store.url) as other:  # another connection sees it at once
            return int(other.execute("select count(*) from events where body = ?", [body]).fetchone()[0])

    seen = await _in_one_group(store, *(ingest_and_look(t, n) for n, (_, t) in enumerate(pairs)))
    assert seen == [1] * 5


async def _fails_at_commit(tx: Tx) -> None:
    """Writes a row that only the COMMIT finds wrong (a deferred foreign key)."""
    await tx.execute("PRAGMA defer_foreign_keys = ON")
    await tx.execute("insert into events (job_id, source, kind, outcome) values ('nope', 't', 't', 't')")


async def test_a_failed_commit_fails_the_whole_group(store: Store) -> None:
    job, ticket = await submitted(store)
    events_before = count(store.url, "events")
    results = await _in_one_group(
        store,
        store.ingest_callback(ticket.token, parse_task(task("RUNNING", "0.5")), "{}"),
        store.connector.write(_fails_at_commit, grouped=True),
    )
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert count(store.url, "events") == events_before
    # the writer and its connection carry on
    body = task("RUNNING", "0.5")
    assert (await store.ingest_callback(ticket.token, parse_task(body), "{}")).outcome == "applied"
    assert (await store.get_job(job["id"]))["progress"] == 0.5


async def test_a_second_serving_relay_on_one_file_is_refused(store: Store) -> None:
    second = open_store(store.url, Routing())
    with pytest.raises(DatabaseInUse, match="postgresql://"):
        await second.open()
    tool = open_store(store.url, Routing(), owner=False)  # prune and backup open it beside a relay
    await tool.open()
    assert (await tool.job_counts()) == (await store.job_counts())
    await tool.close()


async def test_a_database_of_an_older_release_is_migrated(tmp_path: Path) -> None:
    """Databases made with sqlite-utils' Migrations (m001–m003) keep their data and get the rest."""
    path = str(tmp_path / "old.db")
    old_release = SQLiteConnector(path)
    await old_release.open()
    await migrate(old_release, until="m003_events_outcome_index")
    await old_release.close()
    with sqlite3.connect(path) as db:  # a job of that release, and its sqlite-utils migrations table
        db.execute(
            "insert into jobs (id, status, model, params, attempt, created_at, updated_at) "
            "values ('old-1', 'succeeded', 'gen4', '{\"model\": \"gen4\", \"text_prompt\": \"a fox\"}', "
            "1, 'x', 'x')"
        )
        db.execute("drop table relay_migrations")
        db.execute(
            "create table _sqlite_migrations (id integer primary key, migration_set text, name text, "
            "applied_at text)"
        )
        for name in ("m001_initial", "m002_jobs_submitting_index", "m003_events_outcome_index"):
            db.execute(
                "insert into _sqlite_migrations (migration_set, name, applied_at) "
                "values ('runway_relay', ?, '')",
                [name],
            )
    store = open_store(path, Routing())
    await store.open()
    try:
        assert await applied(store.connector) == [m.name for m in MIGRATIONS]  # type: ignore[attr-defined]
        job = await store.get_job("old-1")
        assert job["status"] == "succeeded" and job["prompt"] == "a fox"  # backfilled by m006
        assert (await store.job_counts()) == {"succeeded": 1}  # counted by m005
        assert await store.lead(SCHEDULER_LEASE, "me", 5)
    finally:
        await store.close()
