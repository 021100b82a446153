"""Callbacks, the dispatcher and API readers all at once: never "database is locked", never a 5xx.

Upstream: the simulator in a thread of this process, fast (50 ms steps) and sending every callback
twice, so callbacks keep arriving while handler runs download artifacts. Meanwhile threads of this
process read the API (lists, jobs with their events, metrics, health) and the SQLite file itself (a
second process reading, as an operator's ``sqlite3`` would). The relay: a subprocess.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import httpx
import pytest

JOBS = 30
READ_PATHS = ("/api/jobs?limit=100", "/api/jobs?status=running", "/metrics", "/healthz")


def _read_api(url: str, stop: threading.Event, ids: list[str], statuses: collections.Counter[int]) -> None:
    deadline = time.monotonic() + 90
    n = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            n += 1
            path = READ_PATHS[n % len(READ_PATHS)] if n % 2 or not ids else f"/api/jobs/{ids[n % len(ids)]}"
            statuses[client.get(path).status_code] += 1


def _read_file(query: Any, db: Any, stop: threading.Event, errors: list[str]) -> None:
    deadline = time.monotonic() + 90
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            query(db, "select status, count(*) from jobs group by status")
            query(db, "select count(*) from events where source = 'callback'")
        except Exception as exc:  # a reader must never be locked out either
            errors.append(repr(exc))
        time.sleep(0.01)


@pytest.mark.slow
def test_callbacks_dispatcher_and_readers_never_lock(
    relay_factory: Any, upstream_factory: Any, helpers: Any
) -> None:
    upstream = upstream_factory(
        step_seconds=0.05,
        chaos=helpers.chaos(duplicate=1.0, drop=0.0),
        accounts={f"c{i}@example.com": 10 for i in range(3)},
        seed=4,
    )
    relay = relay_factory(**upstream.env(RELAY_DOWNLOAD_ALLOW_PRIVATE="1"))
    stop = threading.Event()
    ids: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    file_errors: list[str] = []
    readers = [
        threading.Thread(target=_read_api, args=(relay.url, stop, ids, statuses), daemon=True),
        threading.Thread(target=_read_api, args=(relay.url, stop, ids, statuses), daemon=True),
        threading.Thread(target=_read_file, args=(helpers.query, relay.db, stop, file_errors), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        for n in range(JOBS):
            answer = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"busy {n}"})
            statuses[answer.status_code] += 1
            ids.append(answer.json()["id"])

        def settled() -> bool:
            done = helpers.query(relay.db, "select count(*) from jobs where status = 'succeeded'")[0][0]
            busy = helpers.query(relay.db, "select count(*) from handler_runs where status != 'done'")[0][0]
            return done == JOBS and busy == 0

        helpers.wait_until(settled, 90, "every job to succeed and download", relay.log)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=30)
    deliveries = collections.Counter(d.get("http_status") for d in upstream.sim.deliveries)
    assert not [s for s in deliveries if s is None or s >= 500], deliveries
    assert not [s for s in statuses if s >= 500], statuses
    assert sum(statuses.values()) > JOBS, "the readers did not run"
    assert file_errors == []
    log = relay.log()
    assert "database is locked" not in log and "Traceback" not in log
