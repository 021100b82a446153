"""The account guards end to end: a real relay (``runway-relay serve``) on the simulator with two
accounts, Slack and forward receivers on loopback, the CLI as a user runs it. One scenario per guard
decision: a moderation pause (and its resume), credits running out, a 402 for one job, a broken
session, no account left, and the prompt blocklist. Ordering comes from ``[hold]`` tasks and the
planner's FIFO, never from the clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from test_scheduler_support import finish, on_account, running_relay, submit, task_of, upstream, wait_until

from runway_relay.simulator import Simulator

from conftest import RelayProcess, free_port, relay_env
from servers import serve_in_thread
from test_handlers_support import Receiver

A, B = "a@sim.test", "b@sim.test"


def cli(*args: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_relay", *args, "--server", server],
        capture_output=True,
        text=True,
        timeout=60,
    )


def accounts(relay: RelayProcess) -> dict[str, dict[str, Any]]:
    answer = relay.api("GET", "/api/accounts")
    assert answer.status_code == 200, answer.text
    return {a["email"]: a for a in answer.json()["accounts"]}


def posted(receiver: Receiver, words: str) -> list[dict[str, Any]]:
    """Slack messages whose fallback text contains ``words``."""
    bodies = [json.loads(seen.body) for seen in receiver.seen]
    return [b for b in bodies if words in b.get("text", "")]


def release(sim: Simulator, job_id: str) -> None:
    sim.engine.release(task_of(sim, f"{job_id}.1").task_id)


def test_moderation_pauses_the_account_its_jobs_go_elsewhere_and_resume_lifts_it(tmp_path: Path) -> None:
    slack = Receiver()
    with (
        upstream(accounts={A: 1, B: 1}) as (sim, url),
        serve_in_thread(slack.app) as slack_url,
        running_relay(
            tmp_path,
            url,
            RELAY_MODERATION_PAUSE="3/1h",
            RELAY_SLACK_WEBHOOK_URL=f"{slack_url}/services/T/B/x",
            RELAY_SLACK_EVENTS="account-paused,account-resumed",
        ) as relay,
    ):
        held = submit(relay, model="gen4.5", text_prompt="[hold] keeps b busy", email=B)
        relay.wait_for(held["id"], lambda j: j["status"] == "running")
        moderated = [submit(relay, model="gen4.5", text_prompt=f"[moderate] {n}", email=A) for n in range(3)]
        pinned = submit(relay, model="gen4.5", text_prompt="pinned to a", email=A)
        free = [submit(relay, model="gen4.5", text_prompt=f"either account {n}") for n in range(2)]
        for job in moderated:
            assert finish(relay, job["id"])["error_kind"] == "moderation"
        paused = wait_until(lambda: accounts(relay)[A]["paused"] and accounts(relay)[A], what="a paused")
        assert "3 moderation failures within 1h" in paused["paused_reason"]
        assert paused["paused_until"].endswith("Z") and paused["state"] == "paused"
        assert accounts(relay)[B]["paused"] is False
        release(sim, held["id"])  # b frees: the jobs not pinned to a run there, one after the other
        for job in free:
            done = finish(relay, job["id"])
            assert done["status"] == "succeeded" and done["account"] == B
        assert relay.api("GET", f"/api/jobs/{pinned['id']}").json()["status"] == "queued"  # a is paused
        assert {t.reply_ref for t in on_account(sim, A)} == {f"{j['id']}.1" for j in moderated}
        listing = cli("accounts", server=relay.url)
        assert listing.returncode == 0, listing.stderr
        assert "paused until" in listing.stdout and "3 moderation failures" in listing.stdout
        wait_until(lambda: posted(slack, "Runway account paused"), what="Slack told")
        resumed = cli("accounts", "resume", A, server=relay.url)
        assert resumed.returncode == 0 and "lifted the pause" in resumed.stdout, (
            resumed.stdout + resumed.stderr
        )
        done = finish(relay, pinned["id"])
        assert done["status"] == "succeeded" and done["account"] == A
        wait_until(lambda: posted(slack, "Runway account resumed"), what="Slack told of the resume")
        assert accounts(relay)[A]["paused"] is False and accounts(relay)[A]["moderation"]["failures"] == 0
    assert len(posted(slack, "Runway account paused")) == 1  # told once
    message = posted(slack, "Runway account paused")[0]
    assert A in json.dumps(message["blocks"]) and "/#accounts" in json.dumps(message["blocks"])


def test_credits_run_out_and_creates_that_spend_them_go_to_the_other_account(tmp_path: Path) -> None:
    hook = Receiver()
    with (
        upstream(accounts={A: 2, B: 2}, credits={A: 50}) as (sim, url),  # a can pay for one 5 s job
        serve_in_thread(hook.app) as hook_url,
        running_relay(
            tmp_path,
            url,
            RELAY_SLACK_WEBHOOK_URL=f"{hook_url}/services/T/B/x",
            RELAY_SLACK_EVENTS="account-credits-low",
        ) as relay,
    ):
        wait_until(lambda: accounts(relay)[A]["credits"]["left"] == 50, what="credits read at start")
        first = finish(
            relay, submit(relay, model="gen4.5", text_prompt="spends a's credits", duration=5)["id"]
        )
        assert first["status"] == "succeeded" and first["account"] == A
        out = wait_until(
            lambda: accounts(relay)[A]["credits"]["left"] == 0 and accounts(relay)[A], what="read"
        )
        assert out["state"] == "no-credits" and out["credits"]["low"] is True
        jobs = [submit(relay, model="gen4.5", text_prompt=f"after {n}", duration=5) for n in range(3)]
        explore = submit(relay, model="gen4.5", text_prompt="explore", exploreMode=True, email=A)
        for job in jobs:
            done = finish(relay, job["id"])
            assert done["status"] == "succeeded" and done["account"] == B
        assert finish(relay, explore["id"])["account"] == A  # explore mode spends no credits: a still may
        a_creates = [e for e in sim.engine.create_log if e["email"] == A]
        assert [e["replyRef"] for e in a_creates] == [f"{first['id']}.1", f"{explore['id']}.1"]
        pinned = finish(relay, submit(relay, model="gen4.5", text_prompt="pinned to a", email=A)["id"])
        assert pinned["status"] == "rejected"
        assert pinned["error"].startswith(
            "No Runway account can take this job: a@sim.test has no credits left"
        )
        wait_until(lambda: posted(hook, "low on credits"), what="Slack told")
    assert len(posted(hook, "low on credits")) == 1


def test_a_402_sends_the_job_to_another_account_instead_of_failing_it(tmp_path: Path) -> None:
    with (
        upstream(accounts={A: 2, B: 2}, credits={A: 30}) as (_sim, url),  # less than a 5 s job costs
        running_relay(tmp_path, url) as relay,
    ):
        wait_until(lambda: accounts(relay)[A]["credits"]["left"] == 30, what="credits read at start")
        job = finish(relay, submit(relay, model="gen4.5", text_prompt="too dear for a", duration=5)["id"])
        assert job["status"] == "succeeded" and job["account"] == B
        refused = [
            e for e in job["events"] if e["outcome"] == "deferred" and "not enough credits" in e["detail"]
        ]
        assert len(refused) == 1 and A in refused[0]["detail"]
        cheap = finish(relay, submit(relay, model="gen4.5", text_prompt="cheap", duration=2)["id"])
        assert cheap["status"] == "succeeded" and cheap["account"] == A  # a still takes what it can pay
        assert "enough credits" in accounts(relay)[A]["last_error"]


def test_when_no_account_has_credits_the_job_is_rejected_saying_why(tmp_path: Path) -> None:
    with (
        upstream(accounts={A: 2, B: 2}, credits={A: 0, B: 20}) as (sim, url),
        running_relay(tmp_path, url) as relay,
    ):
        wait_until(lambda: accounts(relay)[B]["credits"]["left"] == 20, what="credits read at start")
        job = finish(relay, submit(relay, model="gen4.5", text_prompt="nobody can pay", duration=5)["id"])
        assert job["status"] == "rejected" and job["error_kind"] == "rejected"
        assert "a@sim.test has no credits left (0 of 0 used)" in job["error"]
        assert "b@sim.test refused it (not enough credits)" in job["error"] and "Top up" in job["error"]
        assert [e["email"] for e in sim.engine.create_log] == [B]  # a, known to be out, was never asked


def test_a_broken_session_takes_the_account_out_of_rotation_and_no_job_fails(tmp_path: Path) -> None:
    slack = Receiver()
    with (
        upstream(accounts={A: 2, B: 2}, broken={A}) as (_sim, url),
        serve_in_thread(slack.app) as slack_url,
        running_relay(
            tmp_path,
            url,
            RELAY_SLACK_WEBHOOK_URL=f"{slack_url}/services/T/B/x",
            RELAY_SLACK_EVENTS="account-out-of-rotation",
        ) as relay,
    ):
        jobs = [submit(relay, model="gen4.5", text_prompt=f"job {n}") for n in range(4)]
        for job in jobs:
            done = finish(relay, job["id"])
            assert done["status"] == "succeeded" and done["account"] == B
        out = wait_until(lambda: not accounts(relay)[A]["in_rotation"] and accounts(relay)[A], what="a out")
        assert (
            out["state"] == "out-of-rotation" and "failed sessions in a row" in out["out_of_rotation_reason"]
        )
        assert "Unable to refresh the Runway session" in out["out_of_rotation_reason"]
        pinned = finish(relay, submit(relay, model="gen4.5", text_prompt="pinned", email=A)["id"])
        assert pinned["status"] == "rejected" and "a@sim.test is out of rotation" in pinned["error"]
        assert "accounts resume" in pinned["error"]
        httpx.post(f"{url}/sim/accounts/{A}", json={"broken": False}, timeout=5)  # fixed at useapi.net
        command = [sys.executable, "-m", "runway_relay", "accounts", "--server", relay.url, "resume", A]
        resumed = subprocess.run(command, capture_output=True, text=True, timeout=60)  # the group's --server
        assert resumed.returncode == 0 and "lifted out of rotation" in resumed.stdout, resumed.stderr
        again = finish(relay, submit(relay, model="gen4.5", text_prompt="pinned again", email=A)["id"])
        assert again["status"] == "succeeded" and again["account"] == A
        wait_until(lambda: posted(slack, "out of rotation"), what="Slack told")
    assert len(posted(slack, "out of rotation")) == 1


def test_the_blocklist_refuses_a_prompt_before_it_reaches_runway(tmp_path: Path) -> None:
    rules = tmp_path / "blocklist.txt"
    rules.write_text("# known to be moderated\ngore\nre:\\bblood(y|bath)?\\b\n")
    with (
        upstream(accounts={A: 2}) as (sim, url),
        running_relay(tmp_path, url, RELAY_BLOCKLIST_FILE=str(rules)) as relay,
    ):
        refused = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "A GORE scene"})
        assert refused.status_code == 422
        body = refused.json()
        assert body["field"] == "text_prompt" and '"gore" (line 2 of RELAY_BLOCKLIST_FILE)' in body["error"]
        shot = {
            "model": "kling-3.0-pro",
            "multishot_prompt_1": "a calm lake",
            "multishot_duration_1": 5,
            "multishot_prompt_2": "a bloodbath",
            "multishot_duration_2": 5,
        }
        second = relay.api("POST", "/api/jobs", json=shot)
        assert second.status_code == 422 and second.json()["field"] == "multishot_prompt_2", second.text
        assert "re:\\bblood(y|bath)?\\b" in second.json()["error"]
        assert relay.api("GET", "/api/jobs").json()["jobs"] == [] and sim.engine.create_attempts == 0
        fine = submit(relay, model="gen4.5", text_prompt="a gorgeous bloodhound")  # whole words only
        assert finish(relay, fine["id"])["status"] == "succeeded"


def test_a_blocklist_that_cannot_be_read_stops_serve_with_the_line(tmp_path: Path) -> None:
    rules = tmp_path / "blocklist.txt"
    rules.write_text("fine\nre:([unclosed\n")
    answer = subprocess.run(
        [sys.executable, "-m", "runway_relay", "serve", "--port", str(free_port())],
        env=relay_env(tmp_path, RELAY_BLOCKLIST_FILE=str(rules)),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 2 and "RELAY_BLOCKLIST_FILE line 2" in answer.stderr, answer.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "runway_relay", "serve", "--port", str(free_port())],
        env=relay_env(tmp_path, RELAY_MODERATION_PAUSE="three a day"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "RELAY_MODERATION_PAUSE" in bad.stderr and "3/1h" in bad.stderr
