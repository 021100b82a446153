"""The whole relay as a user runs it: real server process, simulator upstream, SQLite file, CLI."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from conftest import RelayProcess, free_port

# A fast model (gen4-turbo needs a start image; the simulator accepts any well-formed asset id).
TURBO_JOB = {
    "model": "gen4-turbo",
    "text_prompt": "x",
    "imageAssetId1": "user:1-runwayml:sim-1@example.com-asset:00000000-0000-4000-8000-000000000001",
}
DONE = ("succeeded", "failed", "cancelled", "rejected")


def cli(*args: str, server: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_relay", *args, "--server", server]
        if args[0] not in ("models",)
        else [sys.executable, "-m", "runway_relay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_wait_downloads_the_video(relay: RelayProcess) -> None:
    done = cli(
        "submit", "--model", "gen4.5", "--prompt", "a red fox at dawn", "--wait", "--json", server=relay.url
    )
    assert done.returncode == 0, done.stderr + relay.log()[-2000:]
    job = json.loads(done.stdout)
    assert job["status"] == "succeeded" and job["progress"] == 1.0
    job = relay.wait_for(
        job["id"],
        lambda j: (
            all(a["sha256"] for a in j["artifacts"])
            and j["handlers"]
            and all(h["status"] == "done" for h in j["handlers"])
        ),
    )
    artifact = job["artifacts"][0]
    path = Path(artifact["path"])
    assert path.parent == relay.downloads / job["id"]
    data = path.read_bytes()
    assert data[4:8] == b"ftyp" and len(data) == artifact["size"]
    assert hashlib.sha256(data).hexdigest() == artifact["sha256"]
    assert not list(path.parent.glob("*.part"))
    statuses = [t["to_status"] for t in relay.api("GET", f"/api/jobs/{job['id']}").json()["transitions"]]
    assert statuses[0] == "submitted" or statuses[0] == "pending"
    assert statuses[-1] == "succeeded"


def test_history_survives_a_restart(relay: RelayProcess) -> None:
    job = relay.api("POST", "/api/jobs", json={"model": "veo-3.1", "text_prompt": "waves"}).json()
    relay.wait_for(job["id"], lambda j: j["status"] == "succeeded")
    relay.stop()
    relay.start()
    again = relay.api("GET", f"/api/jobs/{job['id']}").json()
    assert again["status"] == "succeeded"
    assert any(e["source"] == "callback" for e in again["events"])
    listed = relay.api("GET", "/api/jobs?status=succeeded").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_rule_break_is_422_and_nothing_is_stored(relay: RelayProcess) -> None:
    answer = relay.api("POST", "/api/jobs", json={"model": "gen4", "duration": 7})
    assert answer.status_code == 422
    assert answer.json()["field"] in ("text_prompt", "duration", "imageAssetId1")
    json_type = {"Content-Type": "application/json"}
    assert relay.api("POST", "/api/jobs", content=b"{nope", headers=json_type).status_code == 400
    assert relay.api("POST", "/api/jobs", content=b"{nope").status_code == 415  # not said to be JSON
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []
    result = cli("submit", "--model", "veo-3.1", "--explore", server=relay.url)
    assert result.returncode == 2 and "exploreMode" in result.stderr


def test_cli_exit_codes_when_unreachable_and_on_failure(relay: RelayProcess) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert cli("jobs", server=nowhere).returncode == 3
    failed = cli("submit", "--model", "gen4.5", "--prompt", "[moderate] x", "--wait", server=relay.url)
    assert failed.returncode == 1, failed.stderr
    assert "moderation" in failed.stdout.lower()


def test_moderation_is_not_resubmitted_but_transient_failure_is(relay: RelayProcess) -> None:
    moderated = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "[moderate] x"}).json()
    flaky = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "[fail] y"}).json()
    job = relay.wait_for(
        moderated["id"],
        lambda j: (
            j["status"] == "failed"
            and any(h["name"] == "resubmit" and h["status"] == "done" for h in j["handlers"])
        ),
    )
    assert job["attempt"] == 1 and job["error_kind"] == "moderation"
    job = relay.wait_for(flaky["id"], lambda j: j["attempt"] == 2 and j["status"] == "failed")
    assert job["error_kind"] == "upstream"


def test_cancel_frees_the_slot_and_is_final(relay: RelayProcess) -> None:
    # [hold]: the simulated task stays RUNNING until cancelled, however slow the machine is
    body = {"model": "sora-2", "duration": 12, "text_prompt": "[hold] a long take"}
    job = relay.api("POST", "/api/jobs", json=body).json()
    relay.wait_for(job["id"], lambda j: j["status"] == "running")
    result = cli("cancel", job["id"], server=relay.url)
    assert result.returncode == 0, result.stderr
    assert relay.api("POST", f"/api/jobs/{job['id']}/cancel").status_code == 409
    final = relay.api("GET", f"/api/jobs/{job['id']}").json()
    assert final["status"] == "cancelled"
    assert any(
        e["kind"] == "cancel" and e["source"] == "upstream" and e["outcome"] == "applied"
        for e in final["events"]
    )


def test_polling_when_callbacks_never_arrive(relay_factory) -> None:
    # Hold the "public" port bound but not listening, so connections are refused and no other
    # server (the relay itself included) can take that port during the test.
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{blocker.getsockname()[1]}"
        relay = relay_factory(RELAY_PUBLIC_URL=dead, RELAY_POLL_AFTER="0.2")
        _poll_only(relay)


def _poll_only(relay: RelayProcess) -> None:
    job = relay.api("POST", "/api/jobs", json=TURBO_JOB).json()
    assert job["status"] == "queued", job
    final = relay.wait_for(job["id"], lambda j: j["status"] in DONE, timeout=45)
    assert final["status"] == "succeeded"
    sources = {e["source"] for e in relay.api("GET", f"/api/jobs/{job['id']}").json()["events"]}
    assert "poll" in sources and "callback" not in sources


def test_health_metrics_and_models(relay: RelayProcess) -> None:
    assert relay.api("GET", "/healthz").json()["status"] == "ok"
    metrics = relay.api("GET", "/metrics").text
    assert 'relay_jobs{status="queued"} 0' in metrics and "relay_queue_depth" in metrics
    models = relay.api("GET", "/api/models").json()["models"]
    assert len(models) == 12
    table = cli("models", server=relay.url)
    assert table.returncode == 0 and "kling-3.0-pro" in table.stdout


def test_server_sent_events_follow_a_job_to_its_end(relay: RelayProcess) -> None:
    job = relay.api("POST", "/api/jobs", json=TURBO_JOB).json()
    seen: list[tuple[str, float]] = []
    with httpx.stream("GET", f"{relay.url}/api/jobs/{job['id']}/events", timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                seen.append((data["status"], data["progress"]))
    assert seen[-1] == ("succeeded", 1.0)
    assert [p for _, p in seen] == sorted(p for _, p in seen)
    assert len(seen) >= 3
