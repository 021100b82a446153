"""Crash safety of creates: ``kill -9`` the relay between a create and its record, start it again, and
check upstream got exactly one create per job.

The simulator runs as its own process here (``runway-relay simulate``), as useapi.net would: it does
not die with the relay, and ``GET /sim/stats`` says what reached it. ``--create-delay`` holds each
create's answer back after the task exists, which is the window a crash has to hit.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from test_scheduler_support import finish, submit, wait_until

from conftest import RelayProcess, execute, free_port, query, relay_env

ACCOUNT = "crash@sim.test"


@contextlib.contextmanager
def simulator_process(tmp: Path, *options: str) -> Iterator[str]:
    """``runway-relay simulate`` on a free port; yields its URL."""
    port = free_port()
    with (tmp / "simulator.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runway_relay", "simulate", "--port", str(port), *options],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp / "simulator.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/sim/stats", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()  # a create still held by --create-delay may keep it up to that long: then kill
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stats(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/sim/stats", timeout=5).json()


def creates_of(url: str, reply_ref: str) -> list[dict[str, Any]]:
    """Every create request for ``reply_ref`` that reached the simulator, whatever its answer."""
    return [e for e in stats(url)["create_log"] if e["replyRef"] == reply_ref]


def detailed(job: dict[str, Any], words: str) -> list[dict[str, Any]]:
    return [e for e in job["events"] if words in (e["detail"] or "")]


def test_kill_9_between_the_create_and_its_record_creates_exactly_once(tmp_path: Path, db_url: str) -> None:
    # [hold]: the tasks stay running (so GET scheduler/ lists them) until the restarted relay has looked
    options = ("--accounts", f"{ACCOUNT}:2", "--step-seconds", "0.05", "--create-delay", "5")
    with simulator_process(tmp_path, *options) as url:
        # no callback can reach the relay: only GET scheduler/ can tell it the create was accepted
        env = relay_env(
            tmp_path,
            USEAPI_TOKEN="x",
            USEAPI_BASE_URL=url,
            RELAY_PUBLIC_URL=f"http://127.0.0.1:{free_port()}",
            RELAY_POLL_AFTER="0.2",
            RELAY_DOWNLOAD_ALLOW_PRIVATE="1",
            RELAY_DB=db_url,
        )
        relay = RelayProcess(tmp_path, env).start()
        try:
            first = submit(relay, model="sora-2", duration=12, text_prompt="[hold] interrupted")
            other = submit(relay, model="sora-2", duration=12, text_prompt="[hold] interrupted too")
            refs = [f"{first['id']}.1", f"{other['id']}.1"]
            wait_until(lambda: set(refs) <= set(stats(url)["creates"]), what="both creates accepted")
            relay.stop(signal.SIGKILL)  # the answers are still 5 s away
            relay.start()
            for job in (first, other):
                relay.wait_for(job["id"], lambda j: j["task_id"] is not None)  # adopted
            for task in stats(url)["tasks"]:
                assert httpx.post(f"{url}/sim/release/{task['taskId']}", timeout=5).status_code == 200
            for job, ref in zip((first, other), refs, strict=True):
                final = finish(relay, job["id"])
                assert final["status"] == "succeeded", final
                assert len(creates_of(url, ref)) == 1  # adopted, never sent twice
                # by replyRef while it still runs; on PostgreSQL the restarted relay first waits out the
                # dead one's scheduler lease, and by then the task may have ended (then: GET tasks/)
                assert len(detailed(final, "reconciled after a restart: found by")) == 1
        finally:
            relay.stop()
        assert len(stats(url)["create_log"]) == 2


def test_a_task_that_ended_while_the_relay_was_down_is_adopted_not_created_again(
    tmp_path: Path, db_url: str
) -> None:
    """The last double-create window: killed between create and record, no callback comes, and the
    task is over before the restart, so ``GET scheduler/`` no longer lists it; ``GET tasks/`` does
    (without its replyRef, as useapi.net's own listing): the relay adopts it by model, prompt and time."""
    options = ("--accounts", f"{ACCOUNT}:2", "--step-seconds", "0.05", "--create-delay", "8")
    with simulator_process(tmp_path, *options) as url:
        env = relay_env(
            tmp_path,
            USEAPI_TOKEN="x",
            USEAPI_BASE_URL=url,
            RELAY_PUBLIC_URL=f"http://127.0.0.1:{free_port()}",  # no callback reaches the relay
            RELAY_POLL_AFTER="0.2",
            RELAY_DOWNLOAD_ALLOW_PRIVATE="1",
            RELAY_DB=db_url,
        )
        relay = RelayProcess(tmp_path, env).start()
        try:
            job = submit(relay, model="veo-3.1", duration=8, text_prompt="over before the restart")
            ref = f"{job['id']}.1"
            wait_until(lambda: ref in stats(url)["creates"], what="the create was accepted")
            relay.stop(signal.SIGKILL)  # its answer is still 8 s away
            ended = {"SUCCEEDED", "FAILED"}
            wait_until(
                lambda: any(t["replyRef"] == ref and t["status"] in ended for t in stats(url)["tasks"]),
                what="the task ended upstream while the relay was down",
            )
            relay.start()
            final = finish(relay, job["id"])
            assert final["status"] == "succeeded", final
            assert len(creates_of(url, ref)) == 1  # one create, ever: the credit is spent once
            adopted = detailed(final, "by model, prompt and time in GET tasks/")
            assert len(adopted) == 1 and final["task_id"] in adopted[0]["detail"]
        finally:
            relay.stop()


def test_a_create_that_never_arrived_is_sent_again_after_a_restart(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as hole:  # accepts connections, never answers: the create hangs in flight
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        env = relay_env(
            tmp_path,
            USEAPI_TOKEN="x",
            USEAPI_BASE_URL=f"http://127.0.0.1:{hole.getsockname()[1]}",
            RELAY_ACCOUNTS=f"{ACCOUNT}:2",
            RELAY_DB=db_url,
        )
        relay = RelayProcess(tmp_path, env).start()
        job = submit(relay, model="gen4.5", text_prompt="lost on the way")
        wait_until(lambda: submitting(relay.db_url, job["id"]), what="the job is marked submitting")
        relay.stop(signal.SIGKILL)
    # as if the crash was long ago: nothing can land any more
    execute(relay.db_url, "update jobs set submitting_since = submitting_since - 3600")
    with simulator_process(tmp_path, "--accounts", f"{ACCOUNT}:2", "--step-seconds", "0.05") as url:
        relay.env["USEAPI_BASE_URL"] = url
        relay.start()
        try:
            final = finish(relay, job["id"])
            assert final["status"] == "succeeded"
            assert len(creates_of(url, f"{job['id']}.1")) == 1
            assert len(detailed(final, "not running upstream nor among its recent tasks, queued again")) == 1
        finally:
            relay.stop()


def submitting(db: str, job_id: str) -> bool:
    rows = query(db, "select submitting_since from jobs where id = ?", [job_id])
    return bool(rows and rows[0][0])


def test_a_task_the_upstream_forgot_fails_and_is_sent_again(relay_factory: Any) -> None:
    """The built-in simulator forgets its tasks when the relay restarts (as useapi.net may forget a
    long-gone task): polls answer 404, and after a few the job fails and is re-submitted, instead of
    holding its account's slot for ever."""
    relay = relay_factory(RELAY_POLL_AFTER="1")
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a held shot [hold]"}).json()
    relay.wait_for(job["id"], lambda j: j["status"] == "running")
    relay.stop()
    relay.start()  # a new simulator: it never heard of the task

    again = relay.wait_for(job["id"], lambda j: j["attempt"] == 2 and j["status"] == "running", timeout=60)
    events = relay.api("GET", f"/api/jobs/{job['id']}").json()["events"]
    lost = [e for e in events if e["source"] == "poll" and e["status"] == "failed"]
    assert lost and lost[0]["attempt"] == 1, events
    assert again["handlers"] and any(h["name"] == "resubmit" for h in again["handlers"])
