"""SIGTERM: callbacks answered 200 are all stored, handler runs still running are handed back
(``pending``, not counted) and run after a restart, and the process exits 0.

Markers, not sleeps: the burst goes on until every client has had answers, and the handler's
command says it has started by writing a file, and finishes once the test writes another.
"""

from __future__ import annotations

import json
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runway_relay.simulator import Simulator

from conftest import RelayProcess
from servers import serve_in_thread
from test_handlers_support import handler_context, succeeded_job

CLIENTS = 8


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def upstream() -> Iterator[tuple[Simulator, str]]:
    # tasks never move on their own; room for every client's job at once
    sim = Simulator(
        accounts={"burst@example.com": 5, "burst2@example.com": 5}, token="sim-token", step_seconds=3600
    )
    with serve_in_thread(sim.app) as url:
        yield sim, url


def terminate(relay: RelayProcess) -> int:
    assert relay.proc is not None
    relay.proc.send_signal(signal.SIGTERM)
    return relay.proc.wait(timeout=60)


class Client(threading.Thread):
    """Posts progress callbacks for one job, each with a mark of its own, until the relay is gone."""

    def __init__(self, n: int, url: str, task_id: str, reply_ref: str, answered: threading.Semaphore) -> None:
        super().__init__(daemon=True)
        self.n, self.url, self.task_id, self.reply_ref = n, url, task_id, reply_ref
        self.answered = answered
        self.acked: list[str] = []  # marks of callbacks answered 200
        self.other: list[str] = []  # what the rest got (a refusal, a closed connection)

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            for k in range(1, 100_000):
                mark = f"burst-{self.n}-{k}"
                body = {
                    "taskId": self.task_id,
                    "status": "RUNNING",
                    "progressRatio": k / 100_000,
                    "replyRef": self.reply_ref,
                    "mark": mark,
                }
                try:
                    answer = http.post(self.url, json=body)
                except httpx.TransportError as exc:
                    self.other.append(type(exc).__name__)
                    if isinstance(exc, httpx.ConnectError):
                        return  # the relay no longer listens
                    continue
                if answer.status_code == 200:
                    self.acked.append(mark)
                    if len(self.acked) == 5:
                        self.answered.release()
                else:
                    self.other.append(str(answer.status_code))


def test_sigterm_during_a_burst_of_callbacks_loses_none_that_got_200(
    relay_factory: Any, upstream: tuple[Simulator, str], db_url: str
) -> None:
    sim, url = upstream
    relay = relay_factory(USEAPI_TOKEN="sim-token", USEAPI_BASE_URL=url, RELAY_DB=db_url)
    jobs = [
        relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"burst {n}"}).json()
        for n in range(CLIENTS)
    ]
    jobs = [relay.wait_for(job["id"], lambda j: j["status"] == "pending") for job in jobs]
    answered = threading.Semaphore(0)
    clients = []
    for n, job in enumerate(jobs):
        create = next(c for c in sim.creates if c["replyRef"].startswith(job["id"]))
        clients.append(Client(n, create["replyUrl"], job["task_id"], create["replyRef"], answered))
    for client in clients:
        client.start()
    for _ in clients:  # every client has had 5 callbacks stored: the burst is on
        assert answered.acquire(timeout=60)
    code = terminate(relay)
    for client in clients:
        client.join(timeout=60)
        assert not client.is_alive()
    assert code == 0, relay.log()[-3000:]
    acked = [mark for client in clients for mark in client.acked]
    stored = {
        json.loads(body).get("mark")
        for (body,) in relay.query("select body from events where body is not null")
    }
    lost = [mark for mark in acked if mark not in stored]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged callbacks are missing: {lost[:5]}"


def _hold_script(tmp_path: Path) -> Path:
    """A command that notes each start, then waits for the ``release`` file and exits 0."""
    script = tmp_path / "hold.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'd="{tmp_path}"\n'
        'echo started >> "$d/starts"\n'
        'while [ ! -e "$d/release" ]; do sleep 0.05; done\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def _wait_file(path: Path, relay: RelayProcess, lines: int = 1, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= lines):
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never had {lines} line(s)\n{relay.log()[-3000:]}")
        time.sleep(0.05)


def test_a_handler_run_still_running_at_sigterm_is_handed_back_and_runs_after_a_restart(
    relay_factory: Any, tmp_path: Path, db_url: str
) -> None:
    env = {
        "RELAY_DB": db_url,
        "RELAY_HANDLERS": "exec",
        "RELAY_EXEC": str(_hold_script(tmp_path)),
        "RELAY_SHUTDOWN_GRACE": "1",  # the command never ends by itself: the grace is all it gets
    }
    relay = relay_factory(**env)
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "held"}).json()
    _wait_file(tmp_path / "starts", relay)  # the exec run is running
    assert terminate(relay) == 0, relay.log()[-3000:]
    [(status, owner, until, attempts)] = relay.query(
        "select status, lease_owner, lease_until, attempts from handler_runs where job_id = ?", [job["id"]]
    )
    assert (status, owner, until, attempts) == ("pending", None, None, 0)
    assert "handed 1 handler run(s) back" in relay.log()
    (tmp_path / "release").touch()
    again = relay_factory(**env)
    done = again.wait_for(job["id"], lambda j: j["handlers"] and j["handlers"][0]["status"] == "done")
    assert done["handlers"][0]["attempts"] == 1, (done["handler_attempts"], again.log()[-4000:])
    assert len((tmp_path / "starts").read_text().splitlines()) == 2


def test_serve_exits_0_on_sigterm(relay: RelayProcess) -> None:
    assert terminate(relay) == 0, relay.log()[-3000:]


@pytest.mark.anyio
async def test_only_the_stopping_relays_runs_are_handed_back(tmp_path: Path) -> None:
    async with handler_context(tmp_path, ("a", "b")) as ctx:
        store: Any = ctx.store
        job = await succeeded_job(store)
        (mine,) = await store.claim_runs("stopping", 1e12, 1, 60, ["a"])
        (theirs,) = await store.claim_runs("other", 1e12, 1, 60, ["b"])
        assert await store.release_runs("stopping") == 1
        runs = {run["name"]: run for run in (await store.get_job(job["id"]))["handlers"]}
    assert (runs["a"]["status"], runs["a"]["attempts"]) == ("pending", 0)
    assert (runs["b"]["status"], runs["b"]["attempts"]) == ("running", 1)
    assert (mine["handler"], theirs["handler"]) == ("a", "b")
