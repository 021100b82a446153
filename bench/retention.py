"""Retention benchmark: callback ingest while ``runway-relay prune`` empties a big SQLite database.

    .venv/bin/python bench/retention.py                  # 100k finished jobs, 200 callbacks/s
    .venv/bin/python bench/retention.py --jobs 20000 --seconds 5

1. Seed 100k succeeded jobs by direct SQL (bench/common.py ``seed``: an attempt, three events with a
   ~1 KB body each where a callback would have one, two transitions), plus 1000 running jobs that the
   load posts callbacks to. Measure the file.
2. Start ``runway-relay serve`` on it. Baseline: ``--rate`` callbacks/s open loop for ``--seconds``,
   time-to-200 from each request's planned start (bench/ingest.py's client), every callback applied.
3. Run ``runway-relay prune --older-than 0d`` while the relay serves (the command finds the file
   served and has that relay prune it, ``POST /api/prune``) and keep the same load on until it
   exits. Report p50/p99 of both, their ratio, how long the prune took, and the file after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RUNNING_TOKENS, percentile, relay_server, seed, task_body
from ingest import callback_requests, fixed_rate


def on_disk(db: Path) -> int:
    """Bytes of the SQLite file and its write-ahead log."""
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def _mb(size: int) -> str:
    return f"{size / 1024**2:.1f} MB"


def add_bodies(db: Path) -> None:
    """Give every seeded task event the body a callback would have stored (~1 KB)."""
    body = json.dumps(task_body("1", "SUCCEEDED"))
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("update events set body = ?, source = 'callback' where kind = 'task'", [body])
        conn.execute("pragma wal_checkpoint(truncate)").fetchall()
    finally:
        conn.close()


def load(port: int, rate: float, seconds: float, base: float) -> tuple[list[float], list[int]]:
    """``rate`` callbacks/s for ``seconds``."""
    return asyncio.run(fixed_rate(port, callback_requests(int(rate * seconds), base), rate))


def summary(name: str, lat: list[float], statuses: list[int]) -> str:
    bad = sum(1 for s in statuses if s != 200)
    return (
        f"  {name:<16} n={len(lat):<6} p50 {percentile(lat, 50):6.2f} ms  p99 {percentile(lat, 99):7.2f} ms  "
        f"max {max(lat):8.2f} ms  non-200 {bad}"
    )


def main() -> None:
    """Seed, measure the baseline, measure during prune, print the sizes and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="finished jobs to seed")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="baseline seconds (and chunk length)")
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        work = Path(tmp)
        db = work / "relay.db"
        started = time.monotonic()
        seed(db, args.jobs + RUNNING_TOKENS)
        add_bodies(db)
        before = on_disk(db)
        print(f"seeded {args.jobs} finished jobs in {time.monotonic() - started:.0f} s: {_mb(before)}")
        os.sync()  # the seed's dirty pages reach the disk now, not inside the relay's first fsyncs
        with relay_server(work, db) as relay:
            # Warm-up: the relay's first WAL checkpoints into a file this size take 100-200 ms for
            # about 10 s after it starts (measured); the baseline is the steady state after them.
            load(relay.port, args.rate, 20.0, 0.1)
            base_lat, base_st = load(relay.port, args.rate, args.seconds, 0.2)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "USEAPI_"))}
            env.update({"RELAY_DB": str(db), "RELAY_DOWNLOAD_DIR": str(work / "downloads")})
            env["RELAY_SERVER"] = f"http://127.0.0.1:{relay.port}"  # it prunes through the serving relay
            out = (work / "prune.log").open("w")
            pruning = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "runway_relay", "prune", "--older-than", "0d"],
                env=env,
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            during_lat: list[float] = []
            during_st: list[int] = []
            chunk = 0
            while proc.poll() is None:  # the load runs until the prune is done
                chunk += 1
                lat, st = load(relay.port, args.rate, min(args.seconds, 2.0), 0.3 + chunk * 0.005)
                during_lat += lat
                during_st += st
            took = time.monotonic() - pruning
            out.close()
            after_lat, after_st = load(relay.port, args.rate, args.seconds, 0.95)
        after = on_disk(db)
        print((work / "prune.log").read_text().rstrip())
        print(f"\nprune --older-than 0d: exit {proc.returncode}, {took:.1f} s, {_mb(before)} -> {_mb(after)}")
        print(f"\ningest at {args.rate:.0f} callbacks/s (time to 200, open loop):")
        print(summary("baseline", base_lat, base_st))
        print(summary("during prune", during_lat, during_st))
        print(summary("after prune", after_lat, after_st))
        p99 = percentile(during_lat, 99) / percentile(base_lat, 99)
        p50 = percentile(during_lat, 50) / percentile(base_lat, 50)
        shrunk = after / before
        print(f"\nratios during/baseline: p50 x{p50:.2f}, p99 x{p99:.2f}; size after/before {shrunk:.2f}")


if __name__ == "__main__":
    main()
