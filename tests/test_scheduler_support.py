"""Helpers (no tests) for the scheduler, crash and asset tests.

A simulator of useapi.net runs in this process (so a test can read what reached it), the relay runs as
a real ``runway-relay serve`` subprocess pointed at it, and what the simulator saw is turned into
facts: how many creates per replyRef, how many tasks ran at once on each account.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from runway_relay.simulator import SimTask, Simulator, create_app

from conftest import RelayProcess, relay_env
from servers import serve_in_thread

DONE = ("succeeded", "failed", "cancelled", "rejected")
TERMINAL = ("SUCCEEDED", "FAILED")


@contextlib.contextmanager
def upstream(**options: Any) -> Iterator[tuple[Simulator, str]]:
    """A simulator on a loopback port: ``(simulator, base URL)``."""
    options.setdefault("step_seconds", 0.05)
    app = create_app(**options)
    with serve_in_thread(app) as url:
        yield app.state.simulator, url


def relay_for(tmp: Path, url: str, **extra: str) -> RelayProcess:
    """A started relay whose upstream is the simulator at ``url`` (``extra``: more environment)."""
    tmp.mkdir(parents=True, exist_ok=True)
    settings = {"USEAPI_TOKEN": "test-token", "USEAPI_BASE_URL": url, "RELAY_DOWNLOAD_ALLOW_PRIVATE": "1"}
    return RelayProcess(tmp, relay_env(tmp, **{**settings, **extra})).start()


@contextlib.contextmanager
def running_relay(tmp: Path, url: str, **extra: str) -> Iterator[RelayProcess]:
    """:func:`relay_for`, stopped at the end."""
    relay = relay_for(tmp, url, **extra)
    try:
        yield relay
    finally:
        relay.stop()


def submit(relay: RelayProcess, **body: Any) -> dict[str, Any]:
    """``POST /api/jobs``; the job JSON."""
    answer = relay.api("POST", "/api/jobs", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def finish(relay: RelayProcess, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the job ended; the job JSON with its events."""
    return relay.wait_for(job_id, lambda j: j["status"] in DONE, timeout=timeout)


def events(job: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    """The job's events whose fields equal ``match``."""
    return [e for e in job["events"] if all(e.get(k) == v for k, v in match.items())]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout} s")


def attempts_for(sim: Simulator, reply_ref: str) -> list[dict[str, Any]]:
    """Every create request that reached the simulator for ``reply_ref``, answered or refused."""
    return [e for e in sim.engine.create_log if e["replyRef"] == reply_ref]


def accepted_for(sim: Simulator, job_id: str) -> list[str]:
    """replyRefs of the creates the simulator accepted for a job (all attempts)."""
    return [c["replyRef"] for c in sim.creates if str(c.get("replyRef", "")).startswith(job_id + ".")]


def task_of(sim: Simulator, reply_ref: str) -> SimTask:
    """The simulator's task for ``reply_ref``."""
    return next(t for t in sim.tasks.values() if t.reply_ref == reply_ref)


def interval(task: SimTask) -> tuple[float, float]:
    """When the task held its account's slot (monotonic seconds; ``inf`` while it runs)."""
    end = next((at for status, _, at in task.history if status in TERMINAL), math.inf)
    return task.history[0][2], end


def most_at_once(tasks: list[SimTask]) -> int:
    """The largest number of these tasks that held a slot at the same moment."""
    edges = sorted(
        [(start, 1) for start, _ in map(interval, tasks)] + [(end, -1) for _, end in map(interval, tasks)],
        key=lambda edge: (edge[0], edge[1]),  # an end and a start at the same instant do not overlap
    )
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def on_account(sim: Simulator, email: str, reply_refs: set[str] | None = None) -> list[SimTask]:
    """The simulator's tasks of ``email`` (optionally only those of these replyRefs)."""
    return [
        t
        for t in sim.tasks.values()
        if t.email == email and (reply_refs is None or t.reply_ref in reply_refs)
    ]


def callback(url: str, body: dict[str, Any]) -> str:
    """POST a callback as useapi.net would; the relay's outcome."""
    answer = httpx.post(url, json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["outcome"])
