"""Scheduler benchmark: how well the relay keeps every account's slots busy, measured upstream.

    .venv/bin/python bench/scheduler.py                  # both scenarios, ~30 s
    .venv/bin/python bench/scheduler.py --jobs 120 --step 0.1

The useapi.net simulator runs IN THIS PROCESS (uvicorn in a thread), so its clock and records are read
directly; the relay is the real ``runway-relay serve`` subprocess pointed at it (``USEAPI_BASE_URL``),
with the download handler on. 60 jobs of varied lengths (4–6 simulator steps) are submitted at once to
3 accounts; every figure comes from what the simulator saw:

- slot utilization: busy slot-seconds / available slot-seconds while work was queued (from the first
  create to the last one), a slot being busy from the task's creation to its end (goal > 95 %);
- 429s per freed slot (goal <= 1);
- refill latency: a task ends and its terminal callback is sent → the next create for that account
  arrives (goal < 100 ms), each freed slot matched with the first create after it.

Scenarios: ``steady`` — 3 accounts x maxJobs 2; ``runway-limit`` — maxJobs 3 but Runway itself allows
only 2 per account (its 429), so the relay must learn the real capacity (utilization is against 2).

``--relays 2`` runs two relays on one PostgreSQL database (``RELAY_BENCH_PG``, default the local
server) instead of one on SQLite. Their public URLs are crossed — each relay's ``replyUrl`` points at the
other one — so every callback lands on the relay that does NOT schedule, and every freed slot reaches
the scheduling relay through the database's notices: the refill latency is the cross-process one. The
jobs are submitted through both relays in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, pg_database, relay_server

from runway_relay.simulator import SimTask, Simulator, create_app

MODELS = [  # (model, duration): 4, 5 and 6 simulator steps
    ("gen4.5", 2),
    ("gen4.5", 10),
    ("sora-2", 12),
    ("kling-3.0-pro", 15),
    ("veo-3.1", 8),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    accounts: dict[str, int]
    runway_capacity: int | None
    slots: int  # per account, what the relay can really use


SCENARIOS = [
    Scenario("steady", {f"acct{i}@bench.test": 2 for i in range(1, 4)}, None, 2),
    Scenario("runway-limit", {f"acct{i}@bench.test": 3 for i in range(1, 4)}, 2, 2),
]


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` on uvicorn in a thread, on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def end_of(task: SimTask) -> float:
    return next((at for status, _, at in task.history if status in ("SUCCEEDED", "FAILED")), math.inf)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _accounts_known(db: str) -> int:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return int(conn.execute("select count(*) from accounts").fetchone()[0])  # type: ignore[index]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("select count(*) from accounts").fetchone()[0])


def wait_accounts(db: str, count: int) -> None:
    """Until the relay has discovered the accounts (jobs sent before would use no account pinning)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if _accounts_known(db) >= count:
                return
        time.sleep(0.05)
    raise TimeoutError("the relay did not discover the accounts")


def submit_all(urls: list[str], jobs: int) -> list[str]:
    """``POST /api/jobs`` for every job, at once, cycling through the models and the relays; ids."""
    ids = []
    clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
    try:
        for i in range(jobs):
            model, duration = MODELS[i % len(MODELS)]
            body = {"model": model, "duration": duration, "text_prompt": f"bench {i}"}
            answer = clients[i % len(clients)].post("/api/jobs", json=body).raise_for_status()
            ids.append(answer.json()["id"])
    finally:
        for client in clients:
            client.close()
    return ids


@contextlib.contextmanager
def relays(work: Path, db: str, count: int, env: dict[str, str]) -> Iterator[list[Any]]:
    """``count`` relays on ``db``; with two, each one's public URL is the other's (crossed)."""
    if count == 1:
        with relay_server(work, db, **env) as relay:
            yield [relay]
        return
    ports = [free_port() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(
                relay_server(
                    work, db, ports[n], RELAY_PUBLIC_URL=f"http://127.0.0.1:{ports[(n + 1) % count]}", **env
                )
            )
            for n in range(count)
        ]
        yield started


def not_scheduling(started: list[Any]) -> Any:
    """With several relays, one that does not schedule (the job must cross to the one that does)."""
    if len(started) == 1:
        return started[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leading = [bool(httpx.get(f"{r.url}/healthz", timeout=5).json().get("scheduling")) for r in started]
        if any(leading):
            return started[leading.index(False)]
        time.sleep(0.1)
    raise TimeoutError("no relay schedules")


def queue_to_create(sim: Simulator, url: str, count: int = 10) -> list[float]:
    """With every slot free: one job at a time through ``url``, seconds from its ``POST /api/jobs`` to
    its create reaching upstream (with two relays ``url`` is one that does not schedule)."""
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(count):
            body = {"model": "gen4.5", "duration": 2, "text_prompt": f"pickup {n}"}
            sent = time.monotonic()
            job = client.post("/api/jobs", json=body).raise_for_status().json()
            ref = f"{job['id']}.1"
            deadline = sent + 10
            while time.monotonic() < deadline:
                seen = [e["at"] for e in list(sim.engine.create_log) if e.get("replyRef") == ref]
                if seen:
                    latencies.append(seen[0] - sent)
                    break
                time.sleep(0.001)
            while any(t.active for t in list(sim.tasks.values())):  # let it end: all slots free again
                time.sleep(0.01)
    return latencies


def run(scenario: Scenario, jobs: int, step: float, work: Path, count: int = 1) -> dict[str, Any]:
    """One scenario end to end; returns the figures."""
    with contextlib.ExitStack() as stack:
        db = str(work / f"{scenario.name}.db") if count == 1 else stack.enter_context(pg_database())
        return _run(scenario, jobs, step, work, db, count)


def _run(scenario: Scenario, jobs: int, step: float, work: Path, db: str, count: int) -> dict[str, Any]:
    app = create_app(
        accounts=scenario.accounts, step_seconds=step, runway_capacity=scenario.runway_capacity, seed=7
    )
    sim: Simulator = app.state.simulator
    env = {"USEAPI_TOKEN": "bench", "RELAY_DOWNLOAD_ALLOW_PRIVATE": "1", "RELAY_LOG_LEVEL": "WARNING"}
    with serve(app) as url, relays(work, db, count, {"USEAPI_BASE_URL": url, **env}) as started:
        wait_accounts(db, len(scenario.accounts))
        pickup = queue_to_create(sim, not_scheduling(started).url)
        began = time.monotonic()
        refs = {f"{job_id}.1" for job_id in submit_all([r.url for r in started], jobs)}
        deadline = time.monotonic() + 170
        while time.monotonic() < deadline:
            ours = [t for t in list(sim.tasks.values()) if t.reply_ref in refs]
            if len(ours) == jobs and all(t.terminal for t in ours):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - began
        time.sleep(0.3)  # let the last callbacks land before the relays stop
    return {**measure(scenario, sim, ours, elapsed), "pickup": pickup}


def measure(scenario: Scenario, sim: Simulator, tasks: list[SimTask], elapsed: float) -> dict[str, Any]:
    """The figures, from the simulator's records of these tasks."""
    starts = sorted(t.history[0][2] for t in tasks)
    first, last = starts[0], starts[-1]  # work was queued from the first create to the last one
    busy = sum(max(0.0, min(end_of(t), last) - max(t.history[0][2], first)) for t in tasks)
    available = scenario.slots * len(scenario.accounts) * (last - first)
    latencies, freed = refills(scenario, sim, tasks, last)
    return {
        "succeeded": sum(1 for t in tasks if t.status == "SUCCEEDED"),
        "jobs": len(tasks),
        "elapsed": elapsed,
        "utilization": busy / available if available else float("nan"),
        "rejected_429": sim.rejected_429,
        "freed": freed,
        "refills": latencies,
        "peak": {email: peak([t for t in tasks if t.email == email]) for email in scenario.accounts},
    }


def refills(scenario: Scenario, sim: Simulator, tasks: list[SimTask], last: float) -> tuple[list[float], int]:
    """Per slot freed while work was queued: its terminal callback sent → the account's next create.

    Each freed slot is matched with the first create request (of any answer) for its account that
    arrived after it and was not matched to an earlier freed slot.
    """
    sent: dict[str, float] = {}
    for delivery in sim.deliveries:
        if delivery["status"] in ("SUCCEEDED", "FAILED") and "sent_at" in delivery:
            sent.setdefault(delivery["taskId"], delivery["sent_at"])
    latencies: list[float] = []
    freed = 0
    for email in scenario.accounts:
        ended = [t for t in tasks if t.email == email and end_of(t) < last]
        freed += len(ended)
        creates = iter(sorted(e["at"] for e in sim.engine.create_log if e["email"] == email))
        following = next(creates, None)
        for at in sorted(sent.get(t.task_id, end_of(t)) for t in ended):
            while following is not None and following < at:
                following = next(creates, None)
            if following is None:
                break
            latencies.append(following - at)
            following = next(creates, None)
    return latencies, freed


def peak(tasks: list[SimTask]) -> int:
    """The most of these tasks that held a slot at the same moment."""
    edges = sorted([(t.history[0][2], 1) for t in tasks] + [(end_of(t), -1) for t in tasks])
    running = top = 0
    for _, step in edges:
        running += step
        top = max(top, running)
    return top


def report(scenario: Scenario, figures: dict[str, Any]) -> None:
    lat = [x * 1000 for x in figures["refills"]]
    per_slot = figures["rejected_429"] / max(1, figures["freed"])
    limit = f"maxJobs {next(iter(scenario.accounts.values()))}"
    if scenario.runway_capacity:
        limit += f", Runway allows {scenario.runway_capacity}"
    print(f"\n[{scenario.name}] {len(scenario.accounts)} accounts ({limit})")
    print(f"  jobs succeeded      {figures['succeeded']}/{figures['jobs']} in {figures['elapsed']:.1f} s")
    print(f"  slot utilization    {figures['utilization'] * 100:.1f} %   (goal > 95 %)")
    count = f"{figures['rejected_429']} 429s, {figures['freed']} freed slots"
    print(f"  429s per freed slot {per_slot:.2f}   ({count}; goal <= 1)")
    print(
        f"  refill latency      p50 {percentile(lat, 0.5):.1f} ms  p99 {percentile(lat, 0.99):.1f} ms  "
        f"max {max(lat, default=float('nan')):.1f} ms   ({len(lat)} refills; goal < 100 ms)"
    )
    pickup = [x * 1000 for x in figures["pickup"]]
    print(
        f"  queued -> created   p50 {percentile(pickup, 0.5):.1f} ms  "
        f"max {max(pickup, default=float('nan')):.1f} ms   ({len(pickup)} jobs one at a time; goal < 100 ms)"
    )
    peaks = ", ".join(f"{email.split('@')[0]} {n}" for email, n in figures["peak"].items())
    print(f"  most at once        {peaks}   (per account)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--step", type=float, default=0.2, help="simulator seconds per task step")
    parser.add_argument("--only", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--relays", type=int, default=1, choices=[1, 2], help="2: two relays on PostgreSQL")
    args = parser.parse_args()
    print(
        f"scheduler bench: {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; simulator in-process, relay as a `runway-relay serve` subprocess; "
        f"{args.jobs} jobs, step {args.step} s (tasks {4 * args.step:.1f}–{6 * args.step:.1f} s); "
        + ("one relay on SQLite" if args.relays == 1 else "two relays on one PostgreSQL database, crossed")
    )
    with tempfile.TemporaryDirectory(prefix="bench-scheduler-") as tmp:
        for scenario in SCENARIOS:
            if args.only in (None, scenario.name):
                report(scenario, run(scenario, args.jobs, args.step, Path(tmp), args.relays))


if __name__ == "__main__":
    main()
