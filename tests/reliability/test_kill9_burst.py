"""kill -9 in the middle of a burst of 500 concurrent callbacks, then a restart on the same database.

Upstream: the simulator in a thread of this process (tasks never move on their own; the test plays
useapi.net: it steps every task to SUCCEEDED, keeps each step's task JSON and posts those as the burst).
The relay: a subprocess, killed with SIGKILL once 200 callbacks were answered, then started again.
The CDN and the webhook sink hold every request until the restart, so nothing the killed process
started can finish; the restarted relay must finish everything exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import random
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from runway_relay.logs import redact
from runway_relay.simulator import SAMPLE_MP4

JOBS = 50
CALLBACKS = 500
KILL_AFTER = 200


def _submit(relay: Any, helpers: Any, upstream: Any) -> list[str]:
    ids = []
    for n in range(JOBS):
        answer = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"crash {n}"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])

    def all_pending() -> bool:
        rows = helpers.query(relay.db_url, "select count(*) from jobs where status = 'pending'")
        return rows[0][0] == JOBS

    helpers.wait_until(all_pending, 60, "every job to be pending", relay.log)
    return ids


def _play_upstream(upstream: Any, cdn: Any, ids: list[str]) -> list[tuple[str, bytes]]:
    """Step every task to SUCCEEDED (artifact on our CDN); the JSON of each step, twice, shuffled."""
    bodies: list[tuple[str, bytes]] = []
    for job_id in ids:
        create = upstream.create_for(job_id)
        task = next(t for t in upstream.sim.tasks.values() if t.reply_ref == create["replyRef"])
        steps = [task.model_json()]
        while not task.terminal:
            upstream.sim.engine.step(task)
            if task.terminal:
                task.artifacts = [{**task.artifacts[0], **cdn.artifact(f"{job_id}.mp4")}]
            steps.append(task.model_json())
        for step in steps:
            body = json.dumps({"task": step} if random.random() < 0.5 else step).encode()
            bodies += [(create["replyUrl"], body), (create["replyUrl"], body)]
    random.shuffle(bodies)
    assert len(bodies) >= CALLBACKS
    return bodies[:CALLBACKS]


async def _burst(bodies: list[tuple[str, bytes]], kill: Any) -> list[bytes]:
    """POST them all, 64 at a time; kill the relay after ``KILL_AFTER`` answers. Returns the acked."""
    acked: list[bytes] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(url: str, body: bytes) -> None:
            try:
                answer = await client.post(url, content=body, headers={"content-type": "application/json"})
            except httpx.HTTPError:
                return  # the relay died with this one in flight: useapi.net would send it again
            if answer.is_success:
                acked.append(body)
                if len(acked) == KILL_AFTER:
                    kill()

        await asyncio.gather(*(one(url, body) for url, body in bodies))
    return acked


@pytest.mark.slow
def test_kill_9_during_a_burst_loses_nothing_and_repeats_nothing(
    relay_factory: Any, upstream: Any, cdn: Any, sink: Any, helpers: Any, db_url: str
) -> None:
    random.seed(8)
    cdn.gate = helpers.Gate(closed=True)
    sink.gate = helpers.Gate(closed=True)
    # A short lease: on PostgreSQL the restarted relay waits out the killed one's leases first.
    env = upstream.env(
        RELAY_DOWNLOAD_ALLOW_PRIVATE="1",
        RELAY_DB=db_url,
        RELAY_LEASE_SECONDS="2",
        **helpers.forward_env(sink.url),
    )
    relay = relay_factory(**env)
    ids = _submit(relay, helpers, upstream)
    bodies = _play_upstream(upstream, cdn, ids)
    acked = asyncio.run(_burst(bodies, lambda: relay.proc.send_signal(signal.SIGKILL)))
    relay.proc.wait(timeout=30)
    assert relay.proc.returncode == -signal.SIGKILL
    assert KILL_AFTER <= len(acked) < CALLBACKS, "the kill must land inside the burst"

    # 1. every callback that got a 2xx was committed before its answer
    rows = helpers.query(relay.db_url, "select body, outcome from events where source = 'callback'")
    stored = collections.Counter(body.encode() for body, _ in rows if body is not None)
    # A duplicate is recorded without its body (it says nothing new): it counts, but by its outcome.
    duplicates = sum(1 for body, outcome in rows if body is None and outcome == "duplicate")
    # The relay stores bodies with the callback token masked (it is a secret), so compare likewise.
    missing = collections.Counter(redact(body.decode()).encode() for body in acked) - stored
    assert sum(missing.values()) <= duplicates, (
        f"{sum(missing.values()) - duplicates} acknowledged callbacks are not in the database"
    )

    # 2. restart: the poller reconciles every active job with GET tasks/{taskId}
    relay.start()
    cdn.gate.open()
    sink.gate.open()

    def finished() -> bool:
        jobs = helpers.query(relay.db_url, "select count(*) from jobs where status = 'succeeded'")[0][0]
        busy = helpers.query(relay.db_url, "select count(*) from handler_runs where status != 'done'")[0][0]
        return jobs == JOBS and busy == 0

    helpers.wait_until(finished, 90, "all jobs to succeed and every handler run to be done", relay.log)
    _assert_effects_once(relay, cdn, sink, helpers, ids)
    assert "database is locked" not in relay.log()


def _assert_effects_once(relay: Any, cdn: Any, sink: Any, helpers: Any, ids: list[str]) -> None:
    # 3. each artifact was served in full exactly once, and is on disk intact
    assert set(cdn.completed) == {f"/v/{job_id}.mp4" for job_id in ids}
    assert set(cdn.completed.values()) == {1}, cdn.completed
    want = hashlib.sha256(SAMPLE_MP4.read_bytes()).hexdigest()
    for job_id in ids:
        files = list((relay.downloads / job_id).iterdir())
        assert [f.name for f in files] == [f"{job_id}.mp4"], files
        assert hashlib.sha256(Path(files[0]).read_bytes()).hexdigest() == want
    runs = helpers.query(relay.db_url, "select handler, count(*) from handler_runs group by handler")
    assert dict(runs)["download"] == JOBS
    # 4. every forwarded event was acknowledged exactly once, under a stable webhook-id
    if helpers.has_forward_handler():
        forwards = helpers.query(relay.db_url, "select count(*) from handler_runs where handler = 'forward'")[
            0
        ][0]
        assert len(sink.acked) == forwards
        assert set(sink.acked.values()) == {1}, sink.acked
