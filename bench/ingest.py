"""Ingest benchmark: the real callback endpoint against a bare Starlette endpoint, in the same run.

    .venv/bin/python bench/ingest.py                 # all four parts, ~12 minutes
    .venv/bin/python bench/ingest.py --only throughput --seconds 10 --repeat 1
    .venv/bin/python bench/ingest.py --only backends # SQLite vs PostgreSQL, one relay and two

1. throughput: wrk (closed loop, keep-alive) posts ~1 KB task bodies with ever-growing progress, so
   every callback is *applied* (event + job update + transition, committed before the 200).
2. fixed rate: 200 callbacks/s open-loop from an asyncio client; p50/p99 time-to-200.
3. scale: ingest rate and ``GET /api/jobs`` latency with 1k, 10k and 100k jobs in the database.
4. backends: the same load on PostgreSQL (``RELAY_BENCH_PG``, default the local server) beside SQLite,
   with one relay and with two relays sharing the database (two wrk, half the jobs each).

Parts 1 and 2 alternate bare and relay ``--repeat`` times (fresh database each run) and report medians:
on a shared 2-core machine single runs swing by ±20 %.

Both servers are one uvicorn process started the way ``runway-relay serve`` starts it (httptools and
uvloop when installed, the same logging, pinned to one CPU as ``RELAY_CPU=auto`` does), each on
127.0.0.1; part 1 also runs the relay with ``RELAY_CPU=off`` to show what the pinning buys. Needs
``wrk`` (``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import re
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PG_ADMIN,
    RUNNING_TOKENS,
    Server,
    WrkResult,
    bare_server,
    percentile,
    pg_database,
    relay_server,
    require_wrk,
    run_wrk,
    seed,
    task_body,
    token,
    wrk_script,
)

WRK_THREADS = 1


# -- a small open-loop client for the fixed-rate part (wrk cannot hold a rate) -------------------


async def _exchange(
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
    return status, await reader.readexactly(length)


def post_request(path: str, body: bytes) -> bytes:
    """An HTTP/1.1 keep-alive POST of a JSON body, as raw bytes."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def fixed_rate(port: int, requests: list[bytes], rate: float) -> tuple[list[float], list[int]]:
    """Send ``requests`` open-loop at ``rate`` per second; latency (ms) counts from the planned start
    of each request, so a slow answer cannot hide the ones queued behind it."""
    loop = asyncio.get_running_loop()
    idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = collections.deque()
    latencies: list[float] = []
    statuses: list[int] = []

    async def one(request: bytes, planned: float) -> None:
        conn = idle.popleft() if idle else await asyncio.open_connection("127.0.0.1", port)
        try:
            status, _ = await _exchange(conn, request)
        except (ConnectionError, asyncio.IncompleteReadError):  # closed while idle: once more, fresh
            conn = await asyncio.open_connection("127.0.0.1", port)
            status, _ = await _exchange(conn, request)
        latencies.append((loop.time() - planned) * 1000)
        statuses.append(status)
        idle.append(conn)  # FIFO: every connection stays in use, none idles into a keep-alive timeout

    for _ in range(8):
        idle.append(await asyncio.open_connection("127.0.0.1", port))
    start = loop.time() + 0.05
    pending = []
    for i, request in enumerate(requests):
        planned = start + i / rate
        await asyncio.sleep(max(0.0, planned - loop.time()))
        pending.append(asyncio.create_task(one(request, planned)))
    await asyncio.gather(*pending)
    for _, writer in idle:
        writer.close()
    return latencies, statuses


def timed_gets(port: int, path: str, count: int) -> list[float]:
    """``count`` sequential GETs of ``path`` on one connection; latencies in ms."""

    async def run() -> list[float]:
        conn = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            status, _ = await _exchange(conn, request)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")
            times.append((time.perf_counter() - started) * 1000)
        conn[1].close()
        return times

    return asyncio.run(run())


def _wrk(
    server: Server,
    work: Path,
    args: argparse.Namespace,
    seconds: float,
    tokens: list[str] | None = None,
    connections: int | None = None,
) -> WrkResult:
    """2 s of warm-up, then the measured run; its progress starts above the warm-up's, so every
    measured callback moves its job (applied), none is a cheaper duplicate or stale one."""
    tokens = tokens or [token(i) for i in range(RUNNING_TOKENS)]
    connections = connections or args.connections
    name = f"{server.port}"
    warm = wrk_script(work / f"warm-{name}.lua", tokens, WRK_THREADS, base=0.0)
    run_wrk(server, warm, threads=WRK_THREADS, connections=connections, seconds=2)
    script = wrk_script(work / f"callbacks-{name}.lua", tokens, WRK_THREADS, base=0.1)
    return run_wrk(server, script, threads=WRK_THREADS, connections=connections, seconds=seconds)


def _wrk_both(servers: list[Server], work: Path, args: argparse.Namespace) -> list[WrkResult]:
    """The same load split over several relays at once: each its own wrk, half the tokens and the
    connections each (the jobs are disjoint, as a balancer spreading many jobs would make them)."""
    everything = [token(i) for i in range(RUNNING_TOKENS)]
    results: list[WrkResult | None] = [None] * len(servers)

    def one(n: int) -> None:
        share = everything[n :: len(servers)]
        results[n] = _wrk(servers[n], work, args, args.seconds, share, args.connections // len(servers))

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(servers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def _median(results: list[WrkResult]) -> WrkResult:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


def _row(name: str, r: WrkResult) -> str:
    return (
        f"  {name:<22} {r.rps:>9.0f} req/s  p50 {r.p50_ms:>6.2f} ms  p99 {r.p99_ms:>6.2f} ms  "
        f"errors {r.errors:<3} server CPU {r.server_cpu * 100:>3.0f}% "
        f"({r.server_cpu / r.rps * 1e6:>3.0f} us/req)  wrk CPU {r.wrk_cpu * 100:>3.0f}%"
    )


def throughput(work: Path, args: argparse.Namespace) -> None:
    """Part 1: saturating load, relay vs bare, alternating, ``--repeat`` times; medians."""
    print(
        f"\n[1] throughput: wrk -t{WRK_THREADS} -c{args.connections} -d{args.seconds:.0f}s, applied "
        f"callbacks; median of {args.repeat} alternating runs"
    )
    bares, reals, floating, outcomes = [], [], [], collections.Counter()
    for n in range(args.repeat):
        with bare_server(work) as bare:
            bares.append(_wrk(bare, work, args, args.seconds))
        # As served (on one CPU, RELAY_CPU=auto), and with its threads left to the OS for comparison.
        for results, cpu in ((reals, "auto"), (floating, "off")):
            db = work / f"throughput-{n}-{cpu}.db"
            seed(db, RUNNING_TOKENS)
            with relay_server(work, db, RELAY_CPU=cpu) as relay:
                results.append(_wrk(relay, work, args, args.seconds))
            with sqlite3.connect(db) as conn:
                sql = "select outcome, count(*) from events where source = 'callback' group by 1"
                outcomes.update(dict(conn.execute(sql).fetchall()))
        print(
            f"  run {n + 1}: bare {bares[-1].rps:.0f} req/s, relay {reals[-1].rps:.0f} req/s, "
            f"relay with RELAY_CPU=off {floating[-1].rps:.0f} req/s"
        )
    base, real, free = _median(bares), _median(reals), _median(floating)
    print(_row("bare endpoint", base))
    print(_row("relay /callbacks", real))
    print(_row("  ... RELAY_CPU=off", free))
    print(f"  ratio relay/bare: {real.rps / base.rps:.2f}  (goal >= 0.5)")
    print(f"  ratio relay/bare with RELAY_CPU=off: {free.rps / base.rps:.2f}")
    print(f"  callbacks stored, by outcome (warm-ups included): {dict(outcomes)}")


def callback_requests(count: int, base_progress: float) -> list[bytes]:
    """``count`` callbacks spread over the running jobs, progress above ``base_progress`` (all applied)."""
    requests = []
    for i in range(count):
        progress = f"{base_progress + (i + 1) / 1e7:.9f}"
        body = json.dumps(task_body(progress)).encode()
        requests.append(post_request(f"/callbacks/{token(i % RUNNING_TOKENS)}", body))
    return requests


def _fixed(server: Server, rate: float, seconds: float) -> tuple[list[float], list[int]]:
    asyncio.run(fixed_rate(server.port, callback_requests(int(rate), 0.1), rate))  # warm-up, 1 s
    return asyncio.run(fixed_rate(server.port, callback_requests(int(rate * seconds), 0.5), rate))


def fixed(work: Path, args: argparse.Namespace) -> None:
    """Part 2: a steady 200 callbacks/s, time-to-200; alternating, ``--repeat`` times."""
    print(f"\n[2] fixed rate: {args.rate:.0f} callbacks/s for {args.seconds:.0f}s, open loop, x{args.repeat}")
    results: dict[str, list[tuple[list[float], list[int]]]] = {"bare endpoint": [], "relay /callbacks": []}
    for n in range(args.repeat):
        db = work / f"fixed-{n}.db"
        seed(db, RUNNING_TOKENS)
        with bare_server(work) as bare:
            results["bare endpoint"].append(_fixed(bare, args.rate, args.seconds))
        with relay_server(work, db) as relay:
            results["relay /callbacks"].append(_fixed(relay, args.rate, args.seconds))
    for name, runs in results.items():
        for lat, statuses in runs:
            bad = sum(1 for s in statuses if s != 200)
            print(
                f"  {name:<18} n={len(lat)}  p50 {percentile(lat, 50):6.2f} ms  "
                f"p99 {percentile(lat, 99):6.2f} ms  max {max(lat):7.2f} ms  non-200 {bad}"
            )
        p99s = sorted(percentile(lat, 99) for lat, _ in runs)
        print(f"  {name:<18} median p99 of the runs: {p99s[len(p99s) // 2]:.2f} ms")
    print("  goal: relay p99 < 10 ms")


def backends(work: Path, args: argparse.Namespace) -> None:
    """Part 4: the same load on PostgreSQL beside SQLite, with one relay and with two relays on one
    database; each row against the bare endpoint measured in the same round."""
    print(
        f"\n[4] backends: wrk -c{args.connections} -d{args.seconds:.0f}s, applied callbacks; "
        f"median of {args.repeat} rounds (PostgreSQL: {PG_ADMIN.rsplit('@', 1)[-1]})"
    )
    rounds: dict[str, list[float]] = collections.defaultdict(list)
    ratios: dict[str, list[float]] = collections.defaultdict(list)
    for n in range(args.repeat):
        with bare_server(work) as bare:
            base = _wrk(bare, work, args, args.seconds).rps
        rounds["bare endpoint"].append(base)
        db = work / f"backends-{n}.db"
        seed(db, RUNNING_TOKENS)
        with relay_server(work, db) as relay:
            rounds["1 relay, SQLite"].append(_wrk(relay, work, args, args.seconds).rps)
        with pg_database() as url:
            seed(url, RUNNING_TOKENS)
            with relay_server(work, url) as relay:
                rounds["1 relay, PostgreSQL"].append(_wrk(relay, work, args, args.seconds).rps)
        with pg_database() as url:
            seed(url, RUNNING_TOKENS)
            with relay_server(work, url) as one, relay_server(work, url) as two:
                both = _wrk_both([one, two], work, args)
            rounds["2 relays, PostgreSQL"].append(sum(r.rps for r in both))
            applied = _applied(url)
        for name, values in rounds.items():
            ratios[name].append(values[-1] / base)
        print(f"  round {n + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in rounds.items()))
        print(f"  two relays stored {applied} applied callbacks (every one moved its job)")
    for name, values in rounds.items():
        middle = sorted(values)[len(values) // 2]
        ratio = sorted(ratios[name])[len(values) // 2]
        print(f"  {name:<22} {middle:>7.0f} req/s   ratio to bare {ratio:.2f}")


def _applied(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        sql = "select count(*) from events where source = 'callback' and outcome = 'applied'"
        return int(conn.execute(sql).fetchone()[0])  # type: ignore[index]


def scale(work: Path, args: argparse.Namespace) -> None:
    """Part 3: how cost grows with the number of jobs stored."""
    print("\n[3] scale: ingest (wrk, applied callbacks) and reads, by jobs in the database")
    print(
        f"  {'jobs':>7} {'db MB':>6} {'ingest/s':>9} {'p99 ms':>7} | GET /api/jobs p50/p99 ms"
        " | ?status=running p50/p99 | /healthz p50/p99"
    )
    for size in args.sizes:
        db = work / f"scale-{size}.db"
        seed(db, size)
        with relay_server(work, db) as relay:
            reads = []
            for path, count in (("/api/jobs", 200), ("/api/jobs?status=running", 200), ("/healthz", 20)):
                timed_gets(relay.port, path, 10)  # warm-up
                reads.append(timed_gets(relay.port, path, count))
            ingest = _wrk(relay, work, args, args.scale_seconds)
        mb = db.stat().st_size / 1e6
        cells = " | ".join(f"{percentile(t, 50):7.2f} / {percentile(t, 99):7.2f}" for t in reads)
        print(f"  {size:>7} {mb:>6.1f} {ingest.rps:>9.0f} {ingest.p99_ms:>7.2f} | {cells}")


def main() -> None:
    """Parse options, print the machine, run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", choices=["throughput", "fixed", "scale", "backends"], action="append")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--scale-seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of parts 1 and 2")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1_000, 10_000, 100_000]
    )
    args = parser.parse_args()
    require_wrk()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )
    parts = args.only or ["throughput", "fixed", "scale", "backends"]
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        work = Path(tmp)
        for part in parts:
            {"throughput": throughput, "fixed": fixed, "scale": scale, "backends": backends}[part](work, args)


if __name__ == "__main__":
    main()
