"""A misbehaving upstream: every callback may come twice, out of order, late, or not at all.

Upstream: the simulator in a thread of this process with ``Chaos(duplicate=0.5, shuffle=True,
drop=0.2)``; it wraps about half of its bodies in ``{"task": ...}`` and sends ``progressRatio`` as a
string or a number. The relay: a subprocess. A sampler reads the API the whole time and checks no job
ever moves backwards; at the end every job has succeeded, once, with one run of each handler per
transition.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import httpx
import pytest

from runway_relay.states import Status, rank

JOBS = 20


def _sample(url: str, stop: threading.Event, seen: dict[str, list[tuple[int, float]]]) -> None:
    """Read ``GET /api/jobs`` until told to stop (bounded: 90 s at most)."""
    deadline = time.monotonic() + 90
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            answer = client.get("/api/jobs", params={"limit": 100})
            assert answer.status_code == 200, answer.text
            for job in answer.json()["jobs"]:
                seen.setdefault(job["id"], []).append((rank(Status(job["status"])), job["progress"]))


@pytest.mark.slow
def test_chaotic_callbacks_end_right_never_regress_and_run_handlers_once(
    relay_factory: Any, upstream_factory: Any, sink: Any, helpers: Any
) -> None:
    upstream = upstream_factory(
        step_seconds=0.1,
        chaos=helpers.chaos(duplicate=0.5, drop=0.2),
        accounts={"a@example.com": 10, "b@example.com": 10},
        seed=8,
    )
    relay = relay_factory(**upstream.env(RELAY_DOWNLOAD_ALLOW_PRIVATE="1", **helpers.forward_env(sink.url)))
    seen: dict[str, list[tuple[int, float]]] = {}
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(relay.url, stop, seen), daemon=True)
    sampler.start()
    ids = []
    for n in range(JOBS):
        answer = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"chaos {n}"})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])

    def settled() -> bool:
        done = helpers.query(relay.db, "select count(*) from jobs where status in ('succeeded', 'failed')")
        busy = helpers.query(relay.db, "select count(*) from handler_runs where status != 'done'")
        return done[0][0] == JOBS and busy[0][0] == 0

    try:
        helpers.wait_until(settled, 90, "every job to end and every handler run to be done", relay.log)
    finally:
        stop.set()
        sampler.join(timeout=30)
    assert sum(1 for d in upstream.sim.deliveries if d.get("ok") is None) > 0, "chaos dropped nothing"

    # never backwards, as seen from outside while it ran
    for job_id in ids:
        samples = seen.get(job_id, [])
        assert samples, f"the sampler never saw {job_id}"
        assert samples == sorted(samples), f"{job_id} moved backwards: {samples}"
    _assert_history(relay, upstream, sink, helpers, ids)


def _assert_history(relay: Any, upstream: Any, sink: Any, helpers: Any, ids: list[str]) -> None:
    query = helpers.query
    assert query(relay.db, "select distinct status from jobs") == [("succeeded",)]
    for job_id in ids:  # the stored history only moves forward, and succeeds once
        steps = query(
            relay.db, "select to_status, progress from transitions where job_id = ? order by id", (job_id,)
        )
        positions = [(rank(Status(s)), p or 0.0) for s, p in steps]
        assert all(a < b for a, b in itertools.pairwise(positions)), steps
        assert [s for s, _ in steps].count("succeeded") == 1
    doubles = query(
        relay.db, "select transition_id, handler from handler_runs group by 1, 2 having count(*) > 1"
    )
    assert doubles == []
    downloads = query(relay.db, "select job_id, attempts from handler_runs where handler = 'download'")
    assert sorted(j for j, _ in downloads) == sorted(ids) and {a for _, a in downloads} == {1}
    assert len(upstream.artifact_gets) == len(ids) and set(upstream.artifact_gets.values()) == {1}
    if helpers.has_forward_handler():
        signalled = query(relay.db, "select count(*) from transitions where signal is not null")[0][0]
        assert len(sink.acked) == signalled and set(sink.acked.values()) == {1}
    callbacks = query(relay.db, "select outcome, count(*) from events where source = 'callback' group by 1")
    assert dict(callbacks).get("duplicate", 0) > 0, callbacks
