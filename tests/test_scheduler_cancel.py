"""Cancel (the slot is freed at once; late callbacks are kept but never revive the job) and re-submit
(the next attempt goes through the scheduler like any create; ``RELAY_RESUBMIT_MAX=0`` turns it off)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_scheduler_support import (
    accepted_for,
    callback,
    events,
    finish,
    running_relay,
    submit,
    task_of,
    upstream,
    wait_until,
)

from runway_relay.simulator import Simulator

from conftest import RelayProcess, free_port

SOLO = "solo@sim.test"


@pytest.fixture(scope="module")
def frozen(
    tmp_path_factory: pytest.TempPathFactory, module_db_url: str
) -> Iterator[tuple[RelayProcess, Simulator]]:
    """One account, one slot; tasks never advance on their own (the test plays useapi.net's part)."""
    with (
        upstream(accounts={SOLO: 1}, step_seconds=3600) as (sim, url),
        running_relay(tmp_path_factory.mktemp("frozen"), url, RELAY_DB=module_db_url) as relay,
    ):
        yield relay, sim


def cancel(relay: RelayProcess, job_id: str) -> dict:
    answer = relay.api("POST", f"/api/jobs/{job_id}/cancel")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_cancel_frees_the_slot_and_late_callbacks_never_revive_the_job(
    frozen: tuple[RelayProcess, Simulator],
) -> None:
    relay, sim = frozen
    first = submit(relay, model="gen4.5", text_prompt="to be cancelled")
    first = relay.wait_for(first["id"], lambda j: j["task_id"] is not None)
    waiting = submit(relay, model="gen4.5", text_prompt="waits for the slot")
    assert cancel(relay, first["id"])["status"] == "cancelled"
    task = task_of(sim, f"{first['id']}.1")
    assert task.deleted  # DELETE scheduler/{taskId} freed it upstream
    relay.wait_for(waiting["id"], lambda j: j["task_id"] is not None)  # and the next job took the slot

    create = next(c for c in sim.creates if c["replyRef"] == f"{first['id']}.1")
    base = {"taskId": task.task_id, "replyRef": create["replyRef"]}
    artifact = {"url": "http://127.0.0.1:9/never.mp4", "fileSize": "10"}
    late = [
        {**base, "status": "RUNNING", "progressRatio": "0.7"},
        {"task": {**base, "status": "SUCCEEDED", "progressRatio": 1, "artifacts": [artifact]}},
        {**base, "status": "FAILED", "error": "too late"},
    ]
    assert [callback(create["replyUrl"], body) for body in late] == ["stale", "stale", "stale"]
    job = relay.api("GET", f"/api/jobs/{first['id']}").json()
    assert job["status"] == "cancelled" and job["artifacts"] == [] and job["error"] is None
    assert len(events(job, source="callback", outcome="stale")) == 3
    assert not [h for h in job["handlers"] if h["signal"] != "job-cancelled"]
    assert events(job, source="upstream", kind="cancel", outcome="applied")
    cancel(relay, waiting["id"])


def test_cancel_while_the_create_is_in_flight_frees_the_task_it_made(tmp_path: Path, db_url: str) -> None:
    # no callback can reach this relay, so only the create's answer can tell it the task exists
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        upstream(accounts={SOLO: 1}, step_seconds=3600, create_delay=0.5) as (sim, url),
        running_relay(tmp_path, url, RELAY_PUBLIC_URL=dead, RELAY_DB=db_url) as relay,
    ):
        job = submit(relay, model="gen4.5", text_prompt="cancelled in flight")
        ref = f"{job['id']}.1"
        wait_until(lambda: any(c["replyRef"] == ref for c in sim.creates), what="the create reached upstream")
        cancelled = cancel(relay, job["id"])  # the create's answer is not back yet
        assert cancelled["status"] == "cancelled" and cancelled["task_id"] is None
        wait_until(lambda: task_of(sim, ref).deleted, what="the task was deleted upstream")
        job = relay.wait_for(job["id"], lambda j: events(j, source="upstream", kind="cancel"))
        assert job["status"] == "cancelled" and job["task_id"] == task_of(sim, ref).task_id
        assert events(job, source="upstream", kind="create", outcome="stale")
        freed = events(job, source="upstream", kind="cancel", outcome="applied")
        assert freed and "in flight" in freed[0]["detail"]


def test_a_failed_job_is_submitted_again_through_the_scheduler(tmp_path: Path, db_url: str) -> None:
    with upstream(accounts={SOLO: 2}) as (sim, url), running_relay(tmp_path, url, RELAY_DB=db_url) as relay:
        job = submit(relay, model="gen4.5", text_prompt="[fail] flaky")
        job = relay.wait_for(job["id"], lambda j: j["attempt"] == 2 and j["status"] == "failed")
        assert accepted_for(sim, job["id"]) == [f"{job['id']}.1", f"{job['id']}.2"]
        first, second = (next(c for c in sim.creates if c["replyRef"] == f"{job['id']}.{n}") for n in (1, 2))
        assert first["replyUrl"] != second["replyUrl"]  # a fresh callback token per attempt
        assert second["email"] == SOLO  # placed by the scheduler like any create
        job = relay.api("GET", f"/api/jobs/{job['id']}").json()
        assert events(job, source="upstream", kind="create", attempt=2)  # the create, then its callbacks
        # a callback of the superseded attempt is kept, as stale
        old = {"taskId": task_of(sim, first["replyRef"]).task_id, "replyRef": first["replyRef"]}
        assert callback(first["replyUrl"], {**old, "status": "SUCCEEDED"}) == "stale"
        assert relay.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "failed"


def test_resubmit_max_zero_turns_resubmission_off(tmp_path: Path) -> None:
    with (
        upstream(accounts={SOLO: 2}) as (sim, url),
        running_relay(tmp_path, url, RELAY_RESUBMIT_MAX="0", RELAY_HANDLERS="resubmit") as relay,
    ):
        job = submit(relay, model="gen4.5", text_prompt="[fail] once only")
        job = relay.wait_for(
            job["id"], lambda j: any(h["name"] == "resubmit" and h["status"] == "done" for h in j["handlers"])
        )
        assert job["status"] == "failed" and job["attempt"] == 1
        assert accepted_for(sim, job["id"]) == [f"{job['id']}.1"]
        assert finish(relay, job["id"])["attempt"] == 1
