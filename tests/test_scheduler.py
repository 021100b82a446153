"""The scheduler end to end: real relay process, simulator upstream, facts read from what the simulator saw.

Capacity is checked where it matters, upstream: how many tasks each account ran at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scheduler_support import (
    accepted_for,
    attempts_for,
    events,
    finish,
    interval,
    most_at_once,
    on_account,
    running_relay,
    submit,
    task_of,
    upstream,
    wait_until,
)

from runway_relay.simulator import Simulator

from conftest import RelayProcess

POOL = {"a@sim.test": 2, "b@sim.test": 2, "c@sim.test": 1}


@pytest.fixture(scope="module")
def pool(
    tmp_path_factory: pytest.TempPathFactory, module_db_url: str
) -> Iterator[tuple[RelayProcess, Simulator]]:
    """Three accounts discovered with ``GET accounts/``; tasks take about half a second (each backend)."""
    with (
        upstream(accounts=POOL, step_seconds=0.1) as (sim, url),
        running_relay(tmp_path_factory.mktemp("pool"), url, RELAY_DB=module_db_url) as relay,
    ):
        yield relay, sim


def refs(jobs: list[dict[str, Any]]) -> set[str]:
    return {f"{job['id']}.1" for job in jobs}


def test_every_account_is_kept_at_capacity_and_never_above(pool: tuple[RelayProcess, Simulator]) -> None:
    relay, sim = pool
    jobs = [submit(relay, model="gen4.5", text_prompt=f"shot {i}", duration=2 + i % 9) for i in range(15)]
    finals = [finish(relay, job["id"]) for job in jobs]
    assert [job["status"] for job in finals] == ["succeeded"] * 15
    ours = refs(jobs)
    assert len([e for e in sim.engine.create_log if e["replyRef"] in ours]) == 15  # no 429, no repeat
    for email, max_jobs in POOL.items():
        assert most_at_once(on_account(sim, email, ours)) == max_jobs, email
    for create in (c for c in sim.creates if c["replyRef"] in ours):
        # the relay names the account it counted the job against, so useapi.net cannot pick another
        assert create["email"] == task_of(sim, create["replyRef"]).email
    assert {job["account"] for job in finals} == set(POOL)


def test_email_pins_the_account(pool: tuple[RelayProcess, Simulator]) -> None:
    relay, sim = pool
    jobs = [submit(relay, model="gen4.5", text_prompt=f"pinned {i}", email="b@sim.test") for i in range(4)]
    for job in jobs:
        assert finish(relay, job["id"])["account"] == "b@sim.test"
    assert {task_of(sim, ref).email for ref in refs(jobs)} == {"b@sim.test"}
    assert most_at_once(on_account(sim, "b@sim.test", refs(jobs))) == 2


def test_fifo_within_an_account(pool: tuple[RelayProcess, Simulator]) -> None:
    relay, sim = pool
    jobs = [submit(relay, model="gen4.5", text_prompt=f"fifo {i}", email="c@sim.test") for i in range(5)]
    for job in jobs:
        finish(relay, job["id"])
    ours = refs(jobs)
    assert [c["replyRef"] for c in sim.creates if c["replyRef"] in ours] == [f"{j['id']}.1" for j in jobs]


def test_explore_jobs_run_one_at_a_time_per_account(pool: tuple[RelayProcess, Simulator]) -> None:
    relay, sim = pool
    explore = [submit(relay, model="gen4.5", text_prompt=f"explore {i}", exploreMode=True) for i in range(5)]
    plain = [submit(relay, model="gen4.5", text_prompt=f"plain {i}") for i in range(3)]
    for job in explore + plain:
        assert finish(relay, job["id"])["status"] == "succeeded"
    for email in POOL:
        assert most_at_once(on_account(sim, email, refs(explore))) <= 1, email
    # the simulator throttles a second explore task on an account; the relay never sent one
    assert all(status != "THROTTLED" for ref in refs(explore) for status, *_ in task_of(sim, ref).history)


def test_a_busy_429_keeps_the_job_queued_until_a_slot_frees(tmp_path: Path) -> None:
    # useapi.net runs 1 task on this account, but the relay was told 2: the second create meets a 429
    with (
        upstream(accounts={"solo@sim.test": 1}, step_seconds=0.1) as (sim, url),
        running_relay(tmp_path, url, RELAY_ACCOUNTS="solo@sim.test:2") as relay,
    ):
        first = submit(relay, model="sora-2", duration=12, text_prompt="[hold] long")
        first = relay.wait_for(first["id"], lambda j: j["task_id"] is not None)
        second = submit(relay, model="gen4.5", text_prompt="waits")
        # the first task is held, so the second create surely meets the busy 429; then let it end
        wait_until(lambda: attempts_for(sim, f"{second['id']}.1"), what="the second create")
        sim.engine.release(first["task_id"])
        done = finish(relay, second["id"])
        assert done["status"] == "succeeded" and finish(relay, first["id"])["status"] == "succeeded"
        busy = events(done, kind="create", outcome="deferred")
        assert len(busy) == 1 and busy[0]["detail"].startswith("429 (busy): Account solo@sim.test is busy")
        assert [t["to_status"] for t in done["transitions"]][-1] == "succeeded"
        assert "queued" not in [t["to_status"] for t in done["transitions"]]  # it never left the queue
        # retried once, when the slot freed, not 10–30 s later on a timer and not before
        assert [e["status"] for e in attempts_for(sim, f"{second['id']}.1")] == [429, 200]
        assert interval(task_of(sim, f"{second['id']}.1"))[0] >= interval(task_of(sim, f"{first['id']}.1"))[1]


def test_runway_429_teaches_the_account_its_real_capacity(tmp_path: Path) -> None:
    # maxJobs says 3, Runway runs only 2: the relay learns 2, probing 3 again only now and then
    with (
        upstream(accounts={"dyn@sim.test": 3}, runway_capacity=2, step_seconds=0.1) as (sim, url),
        running_relay(tmp_path, url) as relay,
    ):
        jobs = [submit(relay, model="gen4.5", text_prompt=f"dyn {i}") for i in range(9)]
        finals = [finish(relay, job["id"]) for job in jobs]
        assert {job["status"] for job in finals} == {"succeeded"}
        assert most_at_once(on_account(sim, "dyn@sim.test", refs(jobs))) == 2
        throttled = [e for job in finals for e in events(job, kind="create", outcome="deferred")]
        assert throttled and all(e["detail"].startswith("429 (throttled)") for e in throttled)
        assert "(capacity 2)" in throttled[0]["detail"]
        assert 1 <= sim.rejected_429 <= 1 + len(jobs) // 3  # at most one probe per 3 ended jobs
        assert {len(accepted_for(sim, job["id"])) for job in jobs} == {1}
