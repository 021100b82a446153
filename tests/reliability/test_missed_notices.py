"""A relay whose connection for the other relays' notices breaks shows, once it is back, what moved
meanwhile: its event streams catch up from the database instead of staying stale.

The move is staged behind every relay's back (a direct ``UPDATE``, so no notice is ever sent) and the
notification connections are then cut with ``pg_terminate_backend``: whatever the stream shows of that
move can only come from the catch-up, and nothing depends on timing.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from runway_relay.storage import iso_now

from conftest import RelayProcess, execute, query, relay_env

PROMPT = "a lighthouse at dusk [hold]"


class Stream(threading.Thread):
    """Reads one relay's ``GET /api/events`` and remembers each job's last ``progress_text``."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ready = threading.Event()
        self.texts: dict[str, set[str | None]] = {}
        self.changed = threading.Condition()

    def run(self) -> None:
        with httpx.stream("GET", f"{self.url}/api/events", timeout=None) as stream:
            self.ready.set()
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    job = json.loads(line[6:])
                    with self.changed:
                        self.texts.setdefault(job["id"], set()).add(job.get("progress_text"))
                        self.changed.notify_all()

    def wait_for(self, job_id: str, text: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: text in self.texts.get(job_id, set()), timeout)


@pytest.mark.slow
def test_event_streams_catch_up_after_the_notice_connection_broke(tmp_path: Path, pg_url: str) -> None:
    relays = []
    for n in range(2):
        home = tmp_path / f"relay{n}"
        home.mkdir()
        relays.append(RelayProcess(home, relay_env(home, RELAY_DB=pg_url)).start())
    try:
        first, second = relays
        job = first.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": PROMPT}).json()
        first.wait_for(job["id"], lambda j: j["status"] == "running")  # held there: no more callbacks
        stream = Stream(second.url)
        stream.start()
        assert stream.ready.wait(10)

        # moved behind every relay's back: no notice tells anyone
        execute(
            pg_url,
            "update jobs set progress_text = ?, updated_at = ? where id = ?",
            ["changed while nobody listened", iso_now(), job["id"]],
        )
        assert not stream.wait_for(job["id"], "changed while nobody listened", 0.5)

        listeners = query(
            pg_url,
            "select pid from pg_stat_activity where datname = current_database() and query ilike 'listen %'",
        )
        assert len(listeners) == 2, listeners  # one per relay
        for (pid,) in listeners:
            execute(pg_url, "select pg_terminate_backend(?)", [pid])

        assert stream.wait_for(job["id"], "changed while nobody listened", 20), stream.texts.get(job["id"])
        assert "Traceback" not in first.log() + second.log()
    finally:
        for relay in relays:
            relay.stop()
