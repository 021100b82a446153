"""Callbacks sent by hand, as a user would with curl: duplicates, out of order, forged, malformed.

The upstream is a simulator in this process (so the test can read the replyUrl the relay sent) whose
tasks never advance on their own; the test plays useapi.net's part.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from runway_relay.simulator import SAMPLE_MP4, Simulator

from conftest import RelayProcess
from servers import serve_in_thread


@pytest.fixture
def upstream() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(token="sim-token", step_seconds=3600)
    with serve_in_thread(sim.app) as url:
        yield sim, url


@pytest.fixture
def manual(relay_factory: Any, upstream: tuple[Simulator, str], db_url: str) -> tuple[RelayProcess, Any]:
    """A relay on each backend, fed callbacks by hand."""
    sim, url = upstream
    relay = relay_factory(
        USEAPI_TOKEN="sim-token", USEAPI_BASE_URL=url, RELAY_DOWNLOAD_ALLOW_PRIVATE="1", RELAY_DB=db_url
    )
    return relay, sim


def submitted_job(relay: RelayProcess, sim: Simulator) -> tuple[dict[str, Any], str, str]:
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "x"}).json()
    # The simulator posts PENDING right away and nothing more (its steps are an hour long).
    job = relay.wait_for(job["id"], lambda j: j["status"] == "pending")
    create = next(c for c in sim.creates if c["replyRef"].startswith(job["id"]))
    return job, create["replyUrl"], create["replyRef"]


def events(relay: RelayProcess) -> int:
    return int(relay.query("select count(*) from events")[0][0])


@pytest.fixture
def cdn() -> Iterator[tuple[str, list[str]]]:
    """A file server standing in for Runway's CDN; records every GET."""
    gets: list[str] = []

    async def video(request: Request) -> FileResponse:
        gets.append(request.url.path)
        return FileResponse(SAMPLE_MP4, media_type="video/mp4")

    with serve_in_thread(Starlette(routes=[Route("/v/{name}", video)])) as url:
        yield url, gets


def test_duplicates_and_out_of_order_never_regress_or_download_twice(
    manual: Any, cdn: tuple[str, list[str]]
) -> None:
    relay, sim = manual
    job, reply_url, reply_ref = submitted_job(relay, sim)
    task_id = job["task_id"]
    artifact = f"{cdn[0]}/v/video.mp4"
    base = {"taskId": task_id, "replyRef": reply_ref}
    running = {**base, "status": "RUNNING", "progressRatio": "0.5"}
    done = {
        "task": {
            **base,
            "status": "SUCCEEDED",
            "progressRatio": 1,
            "artifacts": [{"url": artifact, "fileSize": str(sample_size(sim))}],
        }
    }
    outcomes = []
    for body in (running, running, {**base, "status": "PENDING"}, done, running, done, done):
        answer = httpx.post(reply_url, json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        outcomes.append(answer.json()["outcome"])
    assert outcomes == ["applied", "duplicate", "stale", "applied", "stale", "duplicate", "duplicate"]
    final = relay.wait_for(
        job["id"], lambda j: any(h["name"] == "download" and h["status"] == "done" for h in j["handlers"])
    )
    assert final["status"] == "succeeded"
    downloads = [h for h in final["handlers"] if h["name"] == "download"]
    assert len(downloads) == 1 and downloads[0]["attempts"] == 1
    assert final["artifacts"][0]["sha256"]
    assert len(list((relay.downloads / job["id"]).iterdir())) == 1
    assert cdn[1] == ["/v/video.mp4"]


def sample_size(sim: Simulator) -> int:
    return SAMPLE_MP4.stat().st_size


def test_forged_and_malformed_callbacks_store_nothing(manual: Any) -> None:
    relay, sim = manual
    job, reply_url, reply_ref = submitted_job(relay, sim)
    before = events(relay)
    forged = reply_url.rsplit("/", 1)[0] + "/not-the-token"
    good = {"taskId": job["task_id"], "status": "SUCCEEDED", "replyRef": reply_ref}
    assert httpx.post(forged, json=good).status_code == 404
    assert httpx.post(reply_url, json={**good, "replyRef": "other.1"}).status_code == 404
    assert httpx.post(reply_url, content=b"not json").status_code == 400
    assert httpx.post(reply_url, json=[1, 2]).status_code == 400
    huge = b'{"status": "RUNNING", "x": "' + b"a" * (1024 * 1024) + b'"}'
    too_large = httpx.post(reply_url, content=huge)
    assert too_large.status_code == 413 and "over" in too_large.json()["error"]
    chunked = httpx.post(reply_url, content=iter([huge[:600_000], huge[600_000:]]))  # no Content-Length
    assert chunked.status_code == 413 and "over" in chunked.json()["error"]
    assert events(relay) == before
    assert relay.api("GET", f"/api/jobs/{job['id']}").json()["status"] != "succeeded"


def test_tokens_never_reach_the_log_or_the_database(manual: Any) -> None:
    relay, sim = manual
    job, reply_url, reply_ref = submitted_job(relay, sim)
    echoed = {"status": "RUNNING", "progressRatio": 0.3, "replyRef": reply_ref, "replyUrl": reply_url}
    assert httpx.post(reply_url, json=echoed).status_code == 200
    token = reply_url.rsplit("/", 1)[-1]
    for table in ("jobs", "attempts", "events", "transitions", "handler_runs"):
        assert token not in repr(relay.query(f"select * from {table}")), table
    relay.stop()
    for path in relay.db.parent.glob("relay.db*"):  # SQLite: the file, its WAL and shared memory
        assert token.encode() not in path.read_bytes(), path
    log = relay.log()
    assert f"callback job={job['id']}" in log  # callbacks were logged, and without the token
    assert token not in log and "sim-token" not in log


def test_the_log_tells_status_changes_and_keeps_progress_ticks_for_debug(
    relay_factory: Any, upstream: tuple[Simulator, str]
) -> None:
    sim, url = upstream
    for level, ticks_logged in (("INFO", False), ("DEBUG", True)):
        relay = relay_factory(USEAPI_TOKEN="sim-token", USEAPI_BASE_URL=url, RELAY_LOG_LEVEL=level)
        job, reply_url, reply_ref = submitted_job(relay, sim)
        for progress in (0.2, 0.4, 0.4):  # a status change, a progress tick, a repeat
            body = {"status": "RUNNING", "progressRatio": progress, "replyRef": reply_ref}
            assert httpx.post(reply_url, json=body).status_code == 200
        relay.stop()
        lines = [line for line in relay.log().splitlines() if f"callback job={job['id']}" in line]
        assert any("outcome=applied status=RUNNING" in line and " INFO " in line for line in lines)
        quiet = [line for line in lines if "outcome=duplicate" in line or " DEBUG " in line]
        assert len(quiet) == (2 if ticks_logged else 0), lines
        assert all(reply_url.rsplit("/", 1)[-1] not in line for line in lines)
