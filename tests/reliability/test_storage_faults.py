"""The database stops taking writes (read-only files, a full disk) and then takes them again.

Callbacks meanwhile get 503 with ``Retry-After`` (useapi.net sends them again), the log says why in
one line, nothing half-written is left (``PRAGMA integrity_check``), and once the fault ends the same
relay process takes the callback again and runs its handlers: the writer thread and its connection
recovered on their own.

Upstream: the simulator in a thread of this process (tasks never move; callbacks are sent by hand).
Read-only is made with the immutable attribute (``chattr +i``), because unlike ``chmod`` it also stops
writes through descriptors that are already open, and binds root too. The full disk is a small tmpfs.
Both need root; without it (or without ``chattr``/tmpfs) the test is skipped, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import fill

pytestmark = pytest.mark.slow


def _pending_job(relay: Any, upstream: Any, helpers: Any) -> tuple[str, str, str]:
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "fault"}).json()
    helpers.wait_until(
        lambda: relay.api("GET", f"/api/jobs/{job['id']}").json()["status"] == "pending",
        30,
        "the job to be pending",
        relay.log,
    )
    create = upstream.create_for(job["id"])
    return job["id"], create["replyUrl"], create["replyRef"]


def _callback_events(relay: Any, helpers: Any) -> int:
    return int(helpers.query(relay.db, "select count(*) from events where source = 'callback'")[0][0])


def _recovers(relay: Any, helpers: Any, cdn: Any, job_id: str, reply_url: str, refused: bytes) -> None:
    """The refused callback, sent again, is taken; the job then finishes and downloads."""
    again = httpx.post(reply_url, content=refused, timeout=30)
    assert again.status_code == 200 and again.json()["outcome"] == "applied", again.text
    done = {"status": "SUCCEEDED", "progressRatio": 1, "artifacts": [cdn.artifact("after-fault.mp4")]}
    assert httpx.post(reply_url, json=done, timeout=30).status_code == 200
    job = relay.wait_for(job_id, lambda j: bool(j["handlers"]) and j["handlers"][-1]["status"] == "done")
    assert job["status"] == "succeeded" and job["artifacts"][0]["sha256"]
    assert helpers.query(relay.db, "pragma integrity_check") == [("ok",)]
    assert "database is locked" not in relay.log()
    assert "a background loop stopped unexpectedly" not in relay.log()


def _assert_refused(answer: httpx.Response, relay: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after"), "a 503 must tell the sender when to retry"
    assert "database unavailable, answering 503 so the sender retries" in relay.log()


# -- read-only ----------------------------------------------------------------------------------


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def test_read_only_database_answers_503_then_recovers(
    relay_factory: Any, upstream: Any, cdn: Any, helpers: Any
) -> None:
    if shutil.which("chattr") is None or os.geteuid() != 0:
        pytest.skip("needs root and chattr (e2fsprogs) to make the open database files read-only")
    relay = relay_factory(**upstream.env(RELAY_DOWNLOAD_ALLOW_PRIVATE="1"))
    job_id, reply_url, reply_ref = _pending_job(relay, upstream, helpers)
    files = [relay.db, Path(f"{relay.db}-wal")]
    try:
        _chattr("+i", *files)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"this filesystem does not support the immutable attribute: {exc.stderr.decode()}")
    try:
        before = _callback_events(relay, helpers)
        body = json.dumps({"status": "RUNNING", "progressRatio": "0.4", "replyRef": reply_ref}).encode()
        answer = httpx.post(reply_url, content=body, timeout=30)
        _assert_refused(answer, relay)
        assert "disk I/O error" in relay.log() or "readonly" in relay.log()
        assert _callback_events(relay, helpers) == before
        assert relay.api("GET", "/healthz").status_code == 200  # reads go on
    finally:
        _chattr("-i", *files)
    _recovers(relay, helpers, cdn, job_id, reply_url, body)


# -- disk full ----------------------------------------------------------------------------------


def test_full_disk_answers_503_then_recovers(
    small_disk: Path, relay_factory: Any, upstream: Any, cdn: Any, helpers: Any
) -> None:
    relay = relay_factory(
        **upstream.env(RELAY_DOWNLOAD_ALLOW_PRIVATE="1", RELAY_DB=str(small_disk / "relay.db"))
    )
    job_id, reply_url, reply_ref = _pending_job(relay, upstream, helpers)
    filler = fill(small_disk)
    before = _callback_events(relay, helpers)
    refused = b""
    for n in range(1, 40):  # big bodies outgrow whatever room the WAL file already had
        body = {"status": "RUNNING", "progressRatio": n / 100, "replyRef": reply_ref, "pad": "x" * 900_000}
        refused = json.dumps(body).encode()
        answer = httpx.post(reply_url, content=refused, timeout=30)
        if answer.status_code != 200:
            break
        before += 1
    _assert_refused(answer, relay)
    assert "disk is full" in relay.log()
    assert _callback_events(relay, helpers) == before
    filler.unlink()
    _recovers(relay, helpers, cdn, job_id, reply_url, refused)
    relay.stop()
