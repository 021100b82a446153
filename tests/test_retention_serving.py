"""``runway-relay prune`` beside a serving relay, and what retention does to the size of a SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from runway_relay.retention import prune
from runway_relay.states import TERMINAL
from runway_relay.storage import SCHEDULER_LEASE, Store
from runway_relay.storage.sqlite import SQLiteConnector
from runway_relay.storage.store import SqlStore
from runway_relay.taskparse import parse_task

from conftest import RelayProcess

ENDED = {s.value for s in TERMINAL}


def run_prune(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_relay", "prune", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def submit(relay: RelayProcess, n: int) -> list[str]:
    ids = []
    for i in range(n):
        answer = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"shot {i}"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    return ids


def test_prune_beside_a_serving_relay_while_callbacks_arrive(
    relay_factory: Any, db_url: str, tmp_path: Path
) -> None:
    relay = relay_factory(RELAY_DB=db_url, RELAY_HANDLERS="")
    old = submit(relay, 8)
    for job_id in old:
        relay.wait_for(job_id, lambda job: job["status"] in ENDED)
    fresh: list[str] = []
    arriving = threading.Thread(target=lambda: fresh.extend(submit(relay, 8)))
    arriving.start()  # their callbacks arrive while prune runs
    done = run_prune({**relay.env, "RELAY_SERVER": relay.url}, "--older-than", "0d", cwd=tmp_path)
    arriving.join()

    assert done.returncode == 0, done.stderr
    # SQLite: the serving relay prunes, between its own callbacks; PostgreSQL: the command itself
    assert ("pruning through it" in done.stderr) == (not db_url.startswith("postgresql://"))
    assert "removed:" in done.stdout and "events" in done.stdout and "database:" in done.stdout
    for job_id in fresh:  # the relay kept taking callbacks, and kept them
        assert relay.wait_for(job_id, lambda job: job["status"] in ENDED)["status"] == "succeeded"
    pruned = relay.api("GET", f"/api/jobs/{old[0]}")
    assert pruned.status_code == 200
    job = pruned.json()
    assert job["status"] == "succeeded" and job["events"] == [] and job["transitions"] == []
    assert isinstance(job["timeline"], list)
    shown = subprocess.run(
        [sys.executable, "-m", "runway_relay", "show", old[0], "--server", relay.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and old[0] in shown.stdout, shown.stderr
    assert relay.query("select count(*) from jobs")[0][0] == 16  # rows kept without --jobs


def test_prune_through_a_serving_relay_needs_to_reach_it(relay_factory: Any, tmp_path: Path) -> None:
    relay = relay_factory(RELAY_API_KEY="k" * 32)
    env = {**relay.env, "RELAY_SERVER": relay.url}
    done = run_prune({**env, "RELAY_API_KEY": "wrong"}, "--older-than", "0d", cwd=tmp_path)
    assert done.returncode == 2 and "error (401)" in done.stderr, done.stderr
    done = run_prune({**env, "RELAY_SERVER": "http://127.0.0.1:9"}, "--older-than", "0d", cwd=tmp_path)
    assert done.returncode == 3 and "cannot reach the relay" in done.stderr, done.stderr
    done = run_prune(env, "--older-than", "0d", "--jobs", cwd=tmp_path)
    assert done.returncode == 0 and "removed:" in done.stdout, done.stderr


def test_prune_refuses_a_duration_it_cannot_read(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "RELAY_DB": str(tmp_path / "relay.db")}
    done = run_prune(env, "--older-than", "a while", cwd=tmp_path)
    assert done.returncode == 2
    assert "--older-than" in done.stderr and "not a duration" in done.stderr
    assert not (tmp_path / "relay.db").exists()


async def filled(path: Path, jobs: int, pad: int) -> Store:
    """A SQLite store holding ``jobs`` finished jobs of a few callbacks each (through the store's
    units, fsync off: fast, and the same rows a relay writes)."""
    store = SqlStore(SQLiteConnector(str(path), synchronous="OFF"), origin="test")
    await store.open()
    await store.lead(SCHEDULER_LEASE, "test", 600)

    async def one(i: int) -> None:
        moved = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
        ticket = await store.begin_submit(moved.job_id, None, "test")
        assert ticket is not None
        task_id = f"user:1-runwayml:a@b.c-task:{i}"
        await store.record_submitted(ticket, task_id, "a@b.c", "{}")
        for status, ratio in (("RUNNING", 0.3), ("RUNNING", 0.6), ("SUCCEEDED", 1)):
            body = {"taskId": task_id, "status": status, "progressRatio": ratio, "pad": "x" * pad}
            await store.ingest_callback(ticket.token, parse_task(body), json.dumps(body))

    for start in range(0, jobs, 50):  # 50 at a time: they share commits, as callbacks do
        await asyncio.gather(*(one(i) for i in range(start, min(start + 50, jobs))))
    return store


def on_disk(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def test_the_sqlite_file_shrinks_after_pruning_many_jobs(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"

    async def go() -> tuple[int, int, int]:
        store = await filled(path, 400, 4000)
        await store.reclaim()  # checkpoint: measure the file, not the log
        before = on_disk(path)
        report = await prune(store, 0, tmp_path / "downloads", batch=100)
        await store.close()
        return before, on_disk(path), report.removed["events"]

    before, after, events = asyncio.run(go())
    assert events == 400 * 5  # created, submitted, three callbacks
    assert after < before / 3, (before, after)
    with sqlite3.connect(path) as conn:
        assert conn.execute("pragma auto_vacuum").fetchone()[0] == 2  # incremental, from its creation
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"


def test_replays_of_a_big_callback_barely_grow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "relay.db"
    big = {"taskId": "user:1-runwayml:a@b.c-task:1", "status": "RUNNING", "progressRatio": 0.5}
    big["pad"] = "x" * 1024**2
    raw = json.dumps(big)

    async def go() -> tuple[int, int]:
        store = await filled(path, 1, 10)
        moved = await store.create_job("gen4.5", {"model": "gen4.5", "text_prompt": "x"}, None)
        ticket = await store.begin_submit(moved.job_id, None, "test")
        assert ticket is not None
        await store.record_submitted(ticket, big["taskId"], "a@b.c", "{}")
        await store.reclaim()
        before = on_disk(path)
        update = parse_task(big)
        for _ in range(300):
            await store.ingest_callback(ticket.token, update, raw)
        await store.reclaim()
        after = on_disk(path)
        await store.close()
        return before, after

    before, after = asyncio.run(go())
    # Kept whole, 300 replays of 1 MiB took 300 MiB; now one capped body and 299 bodiless events.
    assert after - before < 300 * len(raw) / 100, (before, after)


def test_the_prune_route_refuses_what_it_cannot_do(relay: RelayProcess) -> None:
    for body, field in (
        ({}, "older_than"),
        ({"older_than": "soon"}, "older_than"),
        ({"older_than": "1d", "jobs": "yes"}, "jobs"),
        ({"older_than": "1d", "everything": True}, "everything"),
    ):
        answer = relay.api("POST", "/api/prune", json=body)
        assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
    assert relay.api("POST", "/api/prune", json=["1d"]).status_code == 400
    assert relay.api("POST", "/api/prune", content="older_than=1d").status_code == 415
    answer = relay.api("POST", "/api/prune", json={"older_than": "30d"})
    assert answer.status_code == 200 and answer.json()["removed"] == {}
