"""Two ``runway-relay serve`` processes on one PostgreSQL database behind a round-robin balancer, one of
them killed -9 while jobs run; and a moderation pause decided on either, told once, resumed through the
one that does not schedule.

Each relay's ``RELAY_PUBLIC_URL`` is the balancer, so a job's callbacks land on either relay; both share
one download folder. Upstream is the simulator in a thread of this process (2 accounts × 2 slots), so
the test can count every create, every 429 and every artifact GET.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_scheduler_support import most_at_once, on_account

from balancer import Balancer
from conftest import RelayProcess, relay_env
from servers import serve_in_thread
from test_handlers_support import Receiver

ACCOUNTS = {"a@sim.test": 2, "b@sim.test": 2}
JOBS = 16
TERMINAL = ("succeeded", "failed", "cancelled", "rejected")


@contextlib.contextmanager
def balanced(
    tmp: Path, pg_url: str, upstream: Any, count: int = 2
) -> Iterator[tuple[list[RelayProcess], str]]:
    """``count`` relays on ``pg_url`` behind a balancer; yields them and the balancer's URL."""
    balancer = Balancer()
    with serve_in_thread(balancer) as public:
        shared = tmp / "downloads"
        relays = []
        for n in range(count):
            home = tmp / f"relay{n}"
            home.mkdir()
            env = relay_env(
                home,
                **upstream.env(
                    RELAY_DB=pg_url,
                    RELAY_PUBLIC_URL=public,
                    RELAY_DOWNLOAD_DIR=str(shared),
                    RELAY_DOWNLOAD_ALLOW_PRIVATE="1",
                    RELAY_LEASE_SECONDS="2",
                    RELAY_POLL_AFTER="5",
                ),
            )
            relays.append(RelayProcess(home, env).start())
        balancer.backends = [r.url for r in relays]
        try:
            yield relays, public
        finally:
            for relay in relays:
                relay.stop()


def scheduling(relay: RelayProcess) -> bool:
    """Whether this relay holds the scheduler's lease (``/healthz`` tells, with no key configured)."""
    return bool(relay.api("GET", "/healthz").json().get("scheduling"))


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Listener(threading.Thread):
    """Reads one relay's ``GET /api/events`` stream and keeps the job ids it showed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: dict[str, set[str]] = {}
        self.ready = threading.Event()
        self.stop = False

    def run(self) -> None:
        with httpx.stream("GET", f"{self.url}/api/events", timeout=None) as stream:
            self.ready.set()
            for line in stream.iter_lines():
                if self.stop:
                    return
                if line.startswith("data: "):
                    job = json.loads(line[6:])
                    self.seen.setdefault(job["id"], set()).add(job["status"])


@pytest.mark.slow
def test_two_relays_share_one_database_and_one_of_them_dies(
    tmp_path: Path, pg_url: str, upstream_factory: Any
) -> None:
    upstream = upstream_factory(step_seconds=0.4, accounts=ACCOUNTS)  # tasks take ~2.5 s
    with balanced(tmp_path, pg_url, upstream) as (relays, public):
        leader = wait(lambda: next((r for r in relays if scheduling(r)), None), 20, "a relay to schedule")
        other = next(r for r in relays if r is not leader)

        # a job moving through one relay shows up in the other's event stream
        listener = Listener(other.url)
        listener.start()
        assert listener.ready.wait(10)
        probe = leader.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "probe"}).json()
        wait(lambda: "queued" in listener.seen.get(probe["id"], set()), 10, "the other relay to show the job")

        ids = []
        for n in range(JOBS):  # through the balancer: half land on each relay
            answer = httpx.post(f"{public}/api/jobs", json={"model": "gen4.5", "text_prompt": f"shot {n}"})
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
        wait(
            lambda: sum(1 for t in upstream.sim.tasks.values() if t.status == "RUNNING") >= 2,
            30,
            "jobs to run",
        )
        leader.stop(signal.SIGKILL)  # the scheduler dies with creates and downloads in flight

        def all_ended() -> bool:
            jobs = [other.api("GET", f"/api/jobs/{i}").json() for i in [*ids, probe["id"]]]
            settled = all(h["status"] in ("done", "dead") for j in jobs for h in j["handlers"])
            return all(j["status"] in TERMINAL for j in jobs) and settled

        wait(all_ended, 120, "every job to end on the survivor")
        jobs = [other.api("GET", f"/api/jobs/{i}").json() for i in ids]
        assert [j["status"] for j in jobs] == ["succeeded"] * JOBS
        listener.stop = True

        # upstream saw one create per job, never two, and no 429 storm
        refs = [c["replyRef"] for c in upstream.sim.creates]
        ours = [f"{i}.1" for i in ids]
        assert sorted(r for r in refs if r in ours) == sorted(ours)
        assert upstream.sim.rejected_429 == 0
        for email, slots in ACCOUNTS.items():
            assert most_at_once(on_account(upstream.sim, email)) <= slots, email

        # each artifact was fetched once, and is on the shared disk once
        for job in jobs:
            (artifact,) = job["artifacts"]
            assert artifact["sha256"] and Path(artifact["path"]).is_file()
            name = "/sim/artifacts/" + artifact["url"].rsplit("/", 1)[-1]
            assert upstream.artifact_gets[name] == 1, (name, upstream.artifact_gets[name])
        assert len(list((tmp_path / "downloads").rglob("*.mp4"))) == JOBS + 1

        # the killed relay, restarted, knows every job
        leader.start()
        listed = leader.api("GET", "/api/jobs", params={"limit": 100}).json()["jobs"]
        assert set(ids) <= {j["id"] for j in listed}
        assert "database is locked" not in leader.log() + other.log()


# -- the moderation guard across relays -----------------------------------------------------------

A, B = "a@sim.test", "b@sim.test"


def job(url: str, **body: Any) -> dict[str, Any]:
    answer = httpx.post(f"{url}/api/jobs", json={"model": "gen4.5", **body}, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()


def status(url: str, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()


def texts(slack: Receiver, words: str) -> list[str]:
    return [t for t in (json.loads(s.body)["text"] for s in slack.seen) if words in t]


@pytest.mark.slow
def test_a_pause_decided_anywhere_holds_on_the_scheduler_and_is_told_once(
    tmp_path: Path, pg_url: str, upstream_factory: Any
) -> None:
    upstream = upstream_factory(step_seconds=0.05, accounts={A: 2, B: 2})
    slack = Receiver()
    with serve_in_thread(slack.app) as slack_url:
        extra = {
            "RELAY_MODERATION_PAUSE": "3/1h",
            "RELAY_SLACK_WEBHOOK_URL": f"{slack_url}/services/T/B/x",
            "RELAY_SLACK_EVENTS": "account-paused,account-resumed",
        }
        upstream.env = lambda _env=upstream.env, **more: _env(**extra, **more)  # type: ignore[method-assign]
        with balanced(tmp_path, pg_url, upstream) as (relays, public):
            leader = wait(lambda: next((r for r in relays if scheduling(r)), None), 20, "a relay to schedule")
            other = next(r for r in relays if r is not leader)
            moderated = [job(public, text_prompt=f"[moderate] {n}", email=A) for n in range(3)]
            for m in moderated:
                wait(lambda m=m: status(public, m["id"])["status"] == "failed", 30, "a moderation failure")
            paused = wait(
                lambda: next(
                    a for a in other.api("GET", "/api/accounts").json()["accounts"] if a["email"] == A
                ),
                10,
                "the accounts list",
            )
            assert paused["paused"] and "3 moderation failures" in paused["paused_reason"]
            pinned = job(other.url, text_prompt="pinned to a", email=A)
            free = job(other.url, text_prompt="either account")
            done = wait(
                lambda: (
                    status(public, free["id"])
                    if status(public, free["id"])["status"] == "succeeded"
                    else None
                ),
                30,
                "the free job",
            )
            assert done["account"] == B  # a is idle, but paused: the scheduler knows
            assert status(public, pinned["id"])["status"] == "queued"  # older than the free job, yet waiting
            resumed = other.api("POST", f"/api/accounts/{A}/resume")
            assert resumed.status_code == 200 and resumed.json()["lifted"], resumed.text
            wait(
                lambda: status(public, pinned["id"])["status"] == "succeeded",
                30,
                "the pinned job after resume",
            )
            assert status(public, pinned["id"])["account"] == A
            wait(lambda: texts(slack, "account resumed"), 20, "Slack told of the resume")
            wait(lambda: texts(slack, "account paused"), 20, "Slack told of the pause")
    assert len(texts(slack, "account paused")) == 1 and len(texts(slack, "account resumed")) == 1
