"""What the relay does with each kind of upstream error, against the simulator's error markers.

``[reject]`` → 400, ``[nocredits]`` → 402, ``[error500]`` → a 500 once with nothing created,
``[accept500]`` → the task is created but the create is answered 500 once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_scheduler_support import accepted_for, attempts_for, events, finish, running_relay, submit, upstream

from runway_relay.simulator import Simulator
from runway_relay.simulator.engine import NO_CREDITS

from conftest import RelayProcess


@pytest.fixture(scope="module")
def erring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, Simulator]]:
    with (
        upstream(accounts={"e@sim.test": 2}) as (sim, url),
        running_relay(tmp_path_factory.mktemp("erring"), url) as relay,
    ):
        yield relay, sim


def test_400_and_no_credits_are_rejected_with_the_upstream_message(
    erring: tuple[RelayProcess, Simulator],
) -> None:
    relay, sim = erring
    bad = finish(relay, submit(relay, model="gen4.5", text_prompt="[reject] x")["id"])
    broke = finish(relay, submit(relay, model="gen4.5", text_prompt="[nocredits] y")["id"])
    assert (
        bad["status"] == "rejected" and bad["error"] == "Prompt rejected by the simulator ([reject] marker)"
    )
    assert broke["status"] == "rejected" and broke["error"].startswith(f"{NO_CREDITS} (account e@sim.test)")
    assert "No Runway account can take this job: e@sim.test refused it" in broke["error"]
    for job in (bad, broke):
        assert job["error_kind"] == "rejected" and job["attempt"] == 1
        assert len(events(job, source="upstream", kind="create", outcome="rejected")) == 1
        assert len(attempts_for(sim, f"{job['id']}.1")) == 1  # never sent twice
    assert relay.api("GET", "/healthz").json()["status"] == "ok"


def test_a_500_is_sent_again_only_once_upstream_says_it_has_no_such_task(
    erring: tuple[RelayProcess, Simulator],
) -> None:
    relay, sim = erring
    job = finish(relay, submit(relay, model="gen4.5", text_prompt="[error500] z")["id"])
    assert job["status"] == "succeeded"
    assert [e["status"] for e in attempts_for(sim, f"{job['id']}.1")] == [500, 200]
    assert accepted_for(sim, job["id"]) == [f"{job['id']}.1"]
    assert len(events(job, kind="create", outcome="transient")) == 1
    assert events(job, kind="scheduler", outcome="not-found")  # GET scheduler/ was asked first
    assert job["transitions"][0]["from_status"] == "queued"  # it stayed queued meanwhile


def test_a_500_after_the_task_was_created_is_adopted_not_sent_again(
    erring: tuple[RelayProcess, Simulator],
) -> None:
    relay, sim = erring
    job = finish(relay, submit(relay, model="gen4.5", text_prompt="[accept500] w")["id"])
    assert job["status"] == "succeeded"
    assert [e["status"] for e in attempts_for(sim, f"{job['id']}.1")] == [500]  # one create, ever
    adopted = [e for e in events(job, kind="create") if "found by replyRef" in (e["detail"] or "")]
    assert len(adopted) == 1 and job["task_id"] in adopted[0]["detail"]


def test_401_rejects_marks_health_degraded_and_never_logs_the_token(tmp_path: Path) -> None:
    token = "tok-wrong-5ecret-4242"
    with (
        upstream(token="the-right-one") as (sim, url),
        running_relay(tmp_path, url, USEAPI_TOKEN=token) as relay,
    ):
        job = finish(relay, submit(relay, model="gen4.5", text_prompt="x")["id"])
        assert job["status"] == "rejected" and job["error"] == "Unauthorized"
        health = relay.api("GET", "/healthz").json()
        assert health["status"] == "degraded" and "401" in health["reason"]
        assert not sim.creates
    log = relay.log()
    assert "401 Unauthorized" in log and token not in log
    assert token.encode() not in b"".join(p.read_bytes() for p in tmp_path.glob("relay.db*"))
