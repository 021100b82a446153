"""Retention on real databases (SQLite and PostgreSQL): prune removes exactly the history of old
finished jobs, keeps their rows answering, keeps ``job_counts`` right, and capped callback bodies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runway_relay.guard import RuleError, parse_duration
from runway_relay.retention import Retention, prune, remove_file
from runway_relay.settings import SettingsError, load_settings
from runway_relay.states import RunStatus, Signal
from runway_relay.storage import SCHEDULER_LEASE, Routing, Store, open_store
from runway_relay.storage.connector import Tx
from runway_relay.storage.updates import BODY_MAX, capped
from runway_relay.taskparse import parse_task

pytestmark = pytest.mark.anyio

ROUTING = Routing({Signal.SUCCEEDED: ("download",), Signal.FAILED: ("notify",)})
OLD = "2020-01-01T00:00:00.000Z"
HISTORY = ("events", "transitions", "handler_runs", "handler_attempts")


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


async def rows(store: Store, sql: str, args: list[Any] | None = None) -> list[dict[str, Any]]:
    async def unit(tx: Tx) -> list[dict[str, Any]]:
        return await tx.rows(sql, args or [])

    return await store.connector.read(unit)  # type: ignore[attr-defined]


async def change(store: Store, sql: str, args: list[Any] | None = None) -> None:
    async def unit(tx: Tx) -> None:
        await tx.run(sql, args or [])

    await store.connector.write(unit)  # type: ignore[attr-defined]


async def count(store: Store, table: str, job_id: str) -> int:
    return int((await rows(store, f"select count(*) as n from {table} where job_id = ?", [job_id]))[0]["n"])


async def finished(
    store: Store, end: str = "SUCCEEDED", *, n: int = 1, body: str = "", run: bool = True
) -> str:
    """A job that ran and ended ``end``, through the store's own units (its handler run done)."""
    moved = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    ticket = await store.begin_submit(moved.job_id, None, "relay-a")
    assert ticket is not None
    task_id = f"user:1-runwayml:a@b.c-task:{moved.job_id}"
    await store.record_submitted(ticket, task_id, "a@b.c", "{}")
    for i in range(n):
        update = {"taskId": task_id, "status": "RUNNING", "progressRatio": (i + 1) / (n + 1), "pad": body}
        await store.ingest_callback(ticket.token, parse_task(update), json.dumps(update))
    done: dict[str, Any] = {"taskId": task_id, "status": end}
    if end == "SUCCEEDED":
        done["artifacts"] = [{"url": f"http://x/{moved.job_id}.mp4", "fileSize": "10"}]
    await store.ingest_callback(ticket.token, parse_task(done), json.dumps(done))
    if run:
        for claimed in await store.claim_runs("relay-a", now=1e12, limit=10, lease=60):
            await store.finish_run(claimed["id"], "relay-a", RunStatus.DONE, output="ok")
    return moved.job_id


async def age(store: Store, *job_ids: str) -> None:
    for job_id in job_ids:
        await change(store, "update jobs set updated_at = ? where id = ?", [OLD, job_id])


async def test_prune_removes_exactly_the_history_of_old_finished_jobs(store: Store, tmp_path: Path) -> None:
    old, failed = await finished(store), await finished(store, "FAILED")
    recent = await finished(store)
    busy = await finished(store, run=False)  # its download run is still pending
    active = (await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "y"}, None)).job_id
    await age(store, old, failed, busy, active)
    before = {j: {t: await count(store, t, j) for t in HISTORY} for j in (recent, busy, active)}
    assert all([await count(store, t, old) for t in HISTORY])

    report = await prune(store, 86400, tmp_path / "downloads")

    for job_id in (old, failed):
        assert [await count(store, t, job_id) for t in HISTORY] == [0, 0, 0, 0]
        assert await count(store, "attempts", job_id) == 1
    after = {j: {t: await count(store, t, j) for t in HISTORY} for j in (recent, busy, active)}
    assert after == before  # recent, busy (pending run) and active jobs are untouched
    assert report.removed["jobs_compacted"] == 2
    assert report.removed["events"] > 0 and report.removed["handler_runs"] == 2
    # The job still answers, with its result; a second prune finds nothing left to do.
    job = await store.get_job(old, events=True)
    assert job["status"] == "succeeded" and job["artifacts"][0]["url"].endswith(".mp4")
    assert job["events"] == [] and job["transitions"] == [] and job["handlers"] == []
    assert (await store.get_job(failed))["error"]
    again = await prune(store, 86400, tmp_path / "downloads")
    assert not again.removed


async def test_prune_with_jobs_deletes_the_rows_and_keeps_counts_right(store: Store, tmp_path: Path) -> None:
    gone = [await finished(store), await finished(store, "FAILED"), await finished(store)]
    kept = await finished(store)
    await age(store, *gone)
    cancelled = (await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "z"}, None)).job_id
    await store.cancel(cancelled)
    await age(store, cancelled)
    await prune(store, 86400, tmp_path, batch=2)  # pruned first, then deleted: both paths
    report = await prune(store, 86400, tmp_path, jobs=True, batch=2)

    assert report.removed["jobs_deleted"] == 4
    remaining = [r["id"] for r in await rows(store, "select id from jobs")]
    assert remaining == [kept]
    for table in ("attempts", "artifacts", "events"):
        assert await rows(store, f"select job_id from {table} where job_id <> ?", [kept]) == []
    counted = {r["status"]: int(r["n"]) for r in await rows(store, "select status, n from job_counts")}
    actual = {
        r["status"]: int(r["n"])
        for r in await rows(store, "select status, count(*) as n from jobs group by status")
    }
    assert {s: n for s, n in counted.items() if n} == actual
    assert all(n >= 0 for n in counted.values())


async def test_prune_with_files_removes_downloads_inside_the_folder_only(
    store: Store, tmp_path: Path
) -> None:
    downloads, outside = tmp_path / "downloads", tmp_path / "elsewhere"
    inside_job, outside_job = await finished(store), await finished(store)
    for job_id, folder in ((inside_job, downloads / inside_job), (outside_job, outside)):
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"0123456789")
        await store.add_artifact(job_id, 1, f"http://x/{job_id}.mp4", str(folder / "video.mp4"), 10, "ab")
    link = downloads / "escape.mp4"  # inside by name, outside in fact
    link.symlink_to(outside / "video.mp4")
    await age(store, inside_job, outside_job)

    report = await prune(store, 86400, downloads, files=True)

    assert not (downloads / inside_job).exists()  # the file, and its emptied job folder
    assert (outside / "video.mp4").read_bytes() == b"0123456789"
    assert report.removed["files"] == 1 and report.skipped_files == 1
    assert await count(store, "artifacts", inside_job) == 0
    job = await store.get_job(inside_job)
    assert job["artifacts"][0]["path"] is None  # the URL stays, the download is gone
    assert remove_file(downloads.resolve(), str(link)) is None
    assert (outside / "video.mp4").exists()


async def test_retention_loop_prunes_what_is_older_than_its_days(store: Store, tmp_path: Path) -> None:
    old, recent = await finished(store), await finished(store)
    await age(store, old)
    report = await Retention(store, 30, tmp_path, every=3600, first=0).once()
    assert report.removed["jobs_compacted"] == 1
    assert await count(store, "events", old) == 0 and await count(store, "events", recent) > 0


async def test_duplicates_are_stored_without_their_body_and_bodies_are_capped(store: Store) -> None:
    job_id = await finished(store)
    token_job = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
    ticket = await store.begin_submit(token_job.job_id, None, "relay-a")
    assert ticket is not None
    await store.record_submitted(ticket, "user:1-runwayml:a@b.c-task:9", "a@b.c", "{}")
    big = {
        "taskId": "user:1-runwayml:a@b.c-task:9",
        "status": "RUNNING",
        "progressRatio": 0.5,
        "pad": "é" * BODY_MAX,
    }
    for _ in range(3):
        await store.ingest_callback(ticket.token, parse_task(big), json.dumps(big, ensure_ascii=False))
    events = await rows(
        store,
        "select outcome, body from events where job_id = ? and source = 'callback' order by id",
        [ticket.job_id],
    )
    assert [e["outcome"] for e in events] == ["applied", "duplicate", "duplicate"]
    assert events[1]["body"] is None and events[2]["body"] is None
    kept = events[0]["body"]
    assert BODY_MAX < len(kept.encode()) < BODY_MAX + 200 and "bytes, the first 65536 are kept" in kept
    assert job_id


def test_capped_keeps_small_bodies_and_whole_characters() -> None:
    assert capped("x" * BODY_MAX) == "x" * BODY_MAX
    cut = capped("é" * BODY_MAX, limit=11)
    assert cut.startswith("ééééé\n…[cut: the body was")  # 5 characters of 2 bytes, never half of one


def test_retain_days_is_off_unless_set_to_a_positive_number() -> None:
    assert load_settings({}).retain_days is None
    assert load_settings({"RELAY_RETAIN_DAYS": "off"}).retain_days is None
    assert load_settings({"RELAY_RETAIN_DAYS": "30", "RELAY_RETAIN_FILES": "1"}).retain_days == 30
    for bad in ("soon", "-1", "inf"):
        with pytest.raises(SettingsError, match="RELAY_RETAIN_DAYS"):
            load_settings({"RELAY_RETAIN_DAYS": bad})


def test_prune_durations_may_be_zero_where_guard_windows_may_not() -> None:
    assert parse_duration("0d", zero=True) == 0 and parse_duration("12h", zero=True) == 43200
    with pytest.raises(RuleError, match="longer than zero"):
        parse_duration("0d")
    with pytest.raises(RuleError, match="not a duration"):
        parse_duration("-1d", zero=True)
