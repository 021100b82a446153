"""The CLI as an operations tool, against a real relay: resumable batch, the jobs table, show, usage,
compare groups from `submit`, a server given without a scheme, and `serve` stopping with streams open."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from runway_relay import batch as batches
from runway_relay.cli import main

from conftest import RelayProcess

DONE = ("succeeded", "failed", "cancelled", "rejected")


def cli(*args: str, server: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_relay", *args, "--server", server],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def settled(job: dict) -> bool:
    return job["status"] in DONE and all(h["status"] not in ("pending", "running") for h in job["handlers"])


def lines_file(path: Path, count: int, bad: dict[int, str] | None = None) -> Path:
    bad = bad or {}
    rows = []
    for n in range(1, count + 1):
        model = ("gen4.5", "veo-3.1", "sora-2")[n % 3]
        rows.append(bad.get(n) or json.dumps({"model": model, "text_prompt": f"batch line {n}"}))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_batch_reports_every_bad_line_before_sending(relay: RelayProcess, tmp_path: Path) -> None:
    bad = {7: '{"model": "gen4.5", "text_prompt": "oops",', 33: '{"model": "veo-3.1", "exploreMode": true}'}
    path = lines_file(tmp_path / "jobs.jsonl", 50, bad)
    done = cli("batch", str(path), server=relay.url)
    assert done.returncode == 2, done.stderr
    assert "line 7: not valid JSON" in done.stderr
    assert "line 33: exploreMode true is not supported by veo-3.1" in done.stderr
    assert "2 bad line(s)" in done.stderr and "nothing was sent" in done.stderr
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []
    assert not batches.state_path(path).exists()


def test_batch_checks_handlers_on_the_relay_first(relay: RelayProcess, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        json.dumps({"model": "gen4.5", "text_prompt": "a"})
        + "\n\n"
        + json.dumps({"model": "gen4.5", "text_prompt": "b", "handlers": ["nope"]})
        + "\n"
    )
    done = cli("batch", str(path), server=relay.url)
    assert done.returncode == 2 and "line 3: handlers: unknown or disabled handler(s): nope" in done.stderr
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []


def test_batch_resumes_after_an_interruption(
    relay: RelayProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = lines_file(tmp_path / "jobs.jsonl", 50)
    record = batches.State.record
    calls = {"n": 0}

    def interrupted(self: batches.State, line: batches.Line, job_id: str) -> None:
        calls["n"] += 1
        if calls["n"] == 21:  # line 21 reached the relay, then Ctrl-C before it was written down
            raise KeyboardInterrupt
        record(self, line, job_id)

    monkeypatch.setattr(batches.State, "record", interrupted)
    first = CliRunner().invoke(main, ["batch", str(path), "--server", relay.url])
    assert first.exit_code == 1 and "Aborted" in first.output  # click's answer to Ctrl-C
    assert len([x for x in first.stdout.splitlines() if " line " in x]) == 20
    assert len(batches.State.load(path).sent) == 20
    assert len(relay.api("GET", "/api/jobs", params={"limit": 500}).json()["jobs"]) == 21
    monkeypatch.setattr(batches.State, "record", record)

    again = cli("batch", str(path), server=relay.url)
    assert again.returncode == 0, again.stderr
    assert "20 line(s) already sent" in again.stderr
    printed = again.stdout.splitlines()
    assert len(printed) == 30 and "line 21  (sent before the interruption)" in printed[0]
    assert "50 line(s): 30 sent now, 20 sent before" in again.stderr
    jobs = relay.api("GET", "/api/jobs", params={"limit": 500}).json()["jobs"]
    assert len(jobs) == 50 and len({j["client_ref"] for j in jobs}) == 50
    assert sorted(j["prompt"] for j in jobs) == sorted(f"batch line {n}" for n in range(1, 51))
    third = cli("batch", str(path), server=relay.url)
    assert third.returncode == 0 and "0 sent now, 50 sent before" in third.stderr and third.stdout == ""


def test_jobs_show_and_usage_read_well(relay: RelayProcess) -> None:
    server = relay.url.removeprefix("http://")  # no scheme: plain HTTP
    first = relay.api(
        "POST", "/api/jobs", json={"model": "veo-3.1", "text_prompt": "a red fox at dawn"}
    ).json()
    relay.api("POST", "/api/jobs", json={"model": "sora-2", "text_prompt": "a blue whale [moderate]"})
    job = relay.wait_for(first["id"], settled)
    listed = cli("jobs", server=server)
    assert listed.returncode == 0, listed.stderr
    header, rule, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "MODEL", "LENGTH", "PROGRESS", "AGE", "PROMPT"]
    assert set(rule) <= {"-", " "} and len(rows) == 2
    assert "a red fox at dawn" in listed.stdout and "4 s" in listed.stdout
    found = cli("jobs", "--search", "FOX", server=server)
    assert len(found.stdout.splitlines()) == 3 and job["id"] in found.stdout

    shown = cli("show", job["id"], server=server)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "prompt: a red fox at dawn" in text and "duration: 4" in text and "timeline:" in text
    assert "Queued, waiting for a slot" in text and "Generating" in text and "Succeeded" in text
    assert "handler download: done (1 attempt(s)) — " in text and "    try 1: done" in text

    relay.wait_for(relay.api("GET", "/api/jobs", params={"q": "whale"}).json()["jobs"][0]["id"], settled)
    usage = cli("usage", "--days", "1", server=server)
    assert usage.returncode == 0, usage.stderr
    assert "2 jobs, 4 s of video, success 50%" in usage.stdout and "moderation 50%" in usage.stdout
    assert "Veo 3.1" in usage.stdout and "ACCOUNT" in usage.stdout and "sim-1@example.com" in usage.stdout


def test_submit_several_models_sends_a_group(relay: RelayProcess) -> None:
    done = cli(
        "submit", "--model", "veo-3.1,kling-3.0-pro,sora-2", "--prompt", "a paper boat", "--wait", "--json",
        server=relay.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    group = json.loads(done.stdout)
    assert [j["model"] for j in group["jobs"]] == ["veo-3.1", "kling-3.0-pro", "sora-2"]
    assert all(j["status"] == "succeeded" and j["group_id"] == group["group_id"] for j in group["jobs"])
    refused = cli("submit", "--model", "veo-3.1,gen4", "--prompt", "x", server=relay.url)
    assert refused.returncode == 2 and "gen4: imageAssetId1" in refused.stderr
    assert len(relay.api("GET", "/api/jobs").json()["jobs"]) == 3


def test_serve_stops_at_once_with_event_streams_open(relay: RelayProcess) -> None:
    connected = [threading.Event() for _ in range(3)]
    ended = [threading.Event() for _ in range(3)]

    def listen(n: int) -> None:
        try:
            with httpx.stream("GET", f"{relay.url}/api/events", timeout=30) as answer:
                for line in answer.iter_lines():
                    if line.startswith("data: "):
                        connected[n].set()
        except httpx.HTTPError:
            pass
        ended[n].set()

    for n in range(3):
        threading.Thread(target=listen, args=(n,), daemon=True).start()
    deadline = time.monotonic() + 20
    while not all(c.is_set() for c in connected):  # every stream is open once it has seen an update
        relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "[stall] keep busy"})
        for c in connected:
            c.wait(0.2)
        assert time.monotonic() < deadline
    started = time.monotonic()
    relay.stop()
    assert relay.proc is not None and relay.proc.returncode in (0, -15)  # SIGTERM honoured, not killed
    assert time.monotonic() - started < 8
    assert all(e.wait(5) for e in ended)


def test_a_cli_post_without_a_body_still_sends_json(relay: RelayProcess, monkeypatch: Any) -> None:
    from runway_relay.client import Client

    seen: list[httpx.Request] = []
    client = Client(relay.url.removeprefix("http://"), None)
    client.http.event_hooks["request"] = [seen.append]
    job = client.call("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "[stall] x"})
    client.call("POST", f"/api/jobs/{job['id']}/cancel")
    assert seen[-1].headers["content-type"] == "application/json" and seen[-1].content == b"{}"


def test_a_bad_server_or_a_binary_batch_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    for server in ("localhost:notaport", "http://256.1.1.1:80"):
        done = cli("jobs", server=server)
        assert done.returncode == 2 and "is not a URL of a relay" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    binary = tmp_path / "picture.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 20)
    done = cli("batch", str(binary), server="127.0.0.1:9")  # checked before anything is sent
    assert done.returncode == 2 and "line 1: not UTF-8 text" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
