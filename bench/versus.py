"""Callback ingest of this checkout against another release of the relay, in the same run.

    git worktree add ../relay-old ee5b779
    (cd ../relay-old && python3 -m venv .venv && .venv/bin/pip install .)
    .venv/bin/python bench/versus.py --other ../relay-old/.venv/bin/python

Both relays (and the bare endpoint of ``bench/common.py``) get the same ``wrk`` load as part 1 of
``bench/ingest.py`` — applied callbacks to 1,000 running jobs, ``-c32``, 10 s after a 2 s warm-up —
in alternating rounds on fresh SQLite files, each made by that release's own migrations. It answers
"did this change make ingest slower?" with ratios measured side by side, whatever the host's speed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RUNNING_TOKENS,
    Server,
    WrkResult,
    bare_server,
    require_wrk,
    run_wrk,
    serve,
    token,
    wrk_script,
)

_SCHEMA = """
import asyncio
try:
    from runway_relay.storage import open_store
    store = open_store({db!r}, owner=False)
except (ImportError, TypeError):  # releases before the storage seam
    from runway_relay.storage import SQLiteStore
    store = SQLiteStore({db!r})
async def make():
    await store.open()
    await store.close()
asyncio.run(make())
"""


def seed(python: str, db: Path) -> None:
    """The running jobs the load posts to, in a schema made by that release's migrations."""
    subprocess.run([python, "-c", _SCHEMA.format(db=str(db))], check=True)
    now, stamp = time.time(), "2026-03-05T10:00:00.000Z"
    params = json.dumps({"model": "gen4.5", "text_prompt": "bench", "duration": 5})
    rows = [(f"{1_700_000_000_000 + i:012x}-{i:08x}", i) for i in range(RUNNING_TOKENS)]
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.executemany(
            "insert into jobs (id, status, model, params, attempt, progress, created_at, updated_at, "
            "last_update_at) values (?, 'running', 'gen4.5', ?, 1, 0.0, ?, ?, ?)",
            [(job_id, params, stamp, stamp, now) for job_id, _ in rows],
        )
        conn.executemany(
            "insert into attempts (job_id, attempt, reply_ref, token_hash) values (?, 1, ?, ?)",
            [(job_id, f"{job_id}.1", hashlib.sha256(token(i).encode()).hexdigest()) for job_id, i in rows],
        )


@contextlib.contextmanager
def relay(python: str, work: Path, db: Path, name: str) -> Iterator[Server]:
    """``runway-relay serve`` of that release on ``db``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "USEAPI_"))}
    env.update({"RELAY_DB": str(db), "RELAY_DOWNLOAD_DIR": str(work / "downloads")})
    with serve(work, name, [python, "-m", "runway_relay", "serve", "--port"], env) as server:
        yield server


def load(server: Server, work: Path, seconds: float) -> WrkResult:
    """2 s of warm-up, then the measured run (every callback moves its job)."""
    tokens = [token(i) for i in range(RUNNING_TOKENS)]
    warm = wrk_script(work / f"warm-{server.port}.lua", tokens, 1, base=0.0)
    run_wrk(server, warm, threads=1, connections=32, seconds=2)
    script = wrk_script(work / f"run-{server.port}.lua", tokens, 1, base=0.1)
    return run_wrk(server, script, threads=1, connections=32, seconds=seconds)


def main() -> None:
    """Parse options, run the rounds, print medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--other", required=True, help="the Python of a venv with the other release installed"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    require_wrk()
    pythons = {"this": sys.executable, "other": args.other}
    results: dict[str, list[WrkResult]] = {"bare": [], "this": [], "other": []}
    with tempfile.TemporaryDirectory(prefix="relay-versus-") as tmp:
        work = Path(tmp)
        for n in range(args.rounds):
            with bare_server(work) as bare:
                results["bare"].append(load(bare, work, args.seconds))
            for name in ("other", "this"):
                db = work / f"{name}-{n}.db"
                seed(pythons[name], db)
                with relay(pythons[name], work, db, name) as server:
                    results[name].append(load(server, work, args.seconds))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1].rps:.0f} req/s" for k, v in results.items()))
    medians = {k: sorted(v, key=lambda r: r.rps)[len(v) // 2] for k, v in results.items()}
    for name, r in medians.items():
        print(
            f"  {name:<6} {r.rps:>7.0f} req/s  p50 {r.p50_ms:5.2f} ms  p99 {r.p99_ms:6.2f} ms  "
            f"server CPU {r.server_cpu / r.rps * 1e6:4.0f} us/req"
        )
    this, other, bare = (medians[k].rps for k in ("this", "other", "bare"))
    print(f"  this/other {this / other:.2f}   other/bare {other / bare:.2f}   this/bare {this / bare:.2f}")


if __name__ == "__main__":
    main()
