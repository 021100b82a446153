"""Shared bench helpers: seed a database, start servers, drive load, summarise latencies.

Everything listens on 127.0.0.1 only. Run ``python bench/common.py bare PORT`` to serve the bare
endpoint the ingest bench compares against (same uvicorn settings and logging as ``runway-relay serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

RUNNING_TOKENS = 1000  # jobs left "running" that the load posts callbacks to


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def token(i: int) -> str:
    """The callback token of seeded job ``i`` (the store keeps only its SHA-256)."""
    return f"bench-token-{i:08d}"


def task_body(progress: str = "0.5", status: str = "RUNNING") -> dict[str, Any]:
    """A callback body shaped like useapi.net's task Model (about 1 KB)."""
    return {
        "task": {
            "id": "7b0c1a9e-5d3f-4c1e-9a2b-3f4e5d6c7b8a",
            "name": "gen4.5 A cinematic aerial shot of a coastal city",
            "image": None,
            "createdAt": "2026-03-05T10:00:00.000Z",
            "updatedAt": "2026-03-05T10:00:05.000Z",
            "taskType": "gen4.5",
            "options": {"name": "gen4.5 bench", "seconds": 5, "seed": 1234, "route": "t2v"},
            "status": status,
            "error": None,
            "progressText": f"Generating ({progress})",
            "progressRatio": progress,
            "estimatedTimeToStartSeconds": 0,
            "artifacts": [],
            "taskId": "user:sim-runwayml:bench@example.com-task:7b0c1a9e-5d3f-4c1e-9a2b-3f4e5d6c7b8a",
            "code": 200,
        }
    }


# -- seeding --------------------------------------------------------------------------------------


PG_ADMIN = os.environ.get("RELAY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on ``RELAY_BENCH_PG`` (default: the local server), dropped after."""
    import secrets

    import psycopg

    name = f"relay_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def is_postgres(db: str | Path) -> bool:
    """Whether ``db`` is a PostgreSQL URL (else a SQLite path)."""
    return str(db).startswith(("postgresql://", "postgres://"))


def create_schema(db: str | Path) -> None:
    """An empty database made by the store's own migrations."""
    from runway_relay.storage import open_store

    async def make() -> None:
        store = open_store(str(db), owner=False)
        await store.open()
        await store.close()

    asyncio.run(make())


def _connect(db: str | Path) -> Any:
    """A DB-API connection to ``db`` whose placeholders are ``?`` on both backends."""
    if is_postgres(db):
        import psycopg

        return psycopg.connect(str(db), cursor_factory=psycopg.ClientCursor)
    import sqlite3

    return sqlite3.connect(db)


def seed(db: str | Path, jobs: int, running: int = RUNNING_TOKENS) -> None:
    """``jobs`` jobs by direct SQL: the oldest ``running`` stay running (token :func:`token`), the
    rest succeeded, each with its attempt, three events and two transitions like a real history."""
    create_schema(db)
    now, stamp = time.time(), "2026-03-05T10:00:00.000Z"
    params = json.dumps({"model": "gen4.5", "text_prompt": "bench", "duration": 5})
    job_rows, attempt_rows, event_rows, transition_rows = [], [], [], []
    for i in range(jobs):
        job_id = f"{1_700_000_000_000 + i:012x}-{i:08x}"
        status = "running" if i < running else "succeeded"
        progress = 0.0 if i < running else 1.0
        job_rows.append((job_id, status, "gen4.5", params, 1, progress, stamp, stamp, now))
        digest = hashlib.sha256(token(i).encode()).hexdigest()
        attempt_rows.append((job_id, 1, f"{job_id}.1", digest))
        for kind, st in (("created", "queued"), ("create", "submitted"), ("task", status)):
            event_rows.append((job_id, 1, "api", kind, "applied", st, stamp))
        for old, new in (("queued", "submitted"), ("submitted", status)):
            transition_rows.append((job_id, 1, old, new, stamp))
    counts = [("running", min(jobs, running)), ("succeeded", max(0, jobs - running))]
    statements = [
        (
            "insert into jobs (id, status, model, params, attempt, progress, created_at, updated_at, "
            "last_update_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            job_rows,
        ),
        ("insert into attempts (job_id, attempt, reply_ref, token_hash) values (?, ?, ?, ?)", attempt_rows),
        (
            "insert into events (job_id, attempt, source, kind, outcome, status, at) "
            "values (?, ?, ?, ?, ?, ?, ?)",
            event_rows,
        ),
        (
            "insert into transitions (job_id, attempt, from_status, to_status, at) values (?, ?, ?, ?, ?)",
            transition_rows,
        ),
        ("insert into job_counts (status, n) values (?, ?)", counts),
    ]
    conn = _connect(db)
    try:
        cursor = conn.cursor()
        for sql, rows in statements:
            if is_postgres(db):
                sql = sql.replace("?", "%s")
            cursor.executemany(sql, rows)
        conn.commit()
    finally:
        conn.close()


# -- servers --------------------------------------------------------------------------------------


@dataclass
class Server:
    """A server subprocess on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_up(server: Server, path: str, timeout: float = 60.0) -> Server:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + path, timeout=2).status_code < 500:
                return server
        time.sleep(0.1)
    raise TimeoutError(f"server did not start:\n{server.log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(
    workdir: Path, name: str, argv: list[str], env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[Server]:
    """Run ``argv`` with ``port`` (default: a free one) appended, as a server process, until the end."""
    port = port or free_port()
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, str(port)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir
        )
    server = Server(proc, port, log)
    try:
        yield _wait_up(server, "/healthz")
    finally:
        _stop(proc)


@contextlib.contextmanager
def relay_server(workdir: Path, db: str | Path, port: int | None = None, **env: str) -> Iterator[Server]:
    """``runway-relay serve`` on ``db`` (a SQLite path or a PostgreSQL URL; built-in simulator as
    upstream unless ``env`` says otherwise); stopped at the end."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "USEAPI_"))}
    clean.update({"RELAY_DB": str(db), "RELAY_DOWNLOAD_DIR": str(workdir / "downloads"), **env})
    argv = [sys.executable, "-m", "runway_relay", "serve", "--port"]
    with serve(workdir, "relay", argv, clean, port) as server:
        yield server


@contextlib.contextmanager
def bare_server(workdir: Path) -> Iterator[Server]:
    """The bare Starlette endpoint (``python bench/common.py bare PORT``)."""
    with serve(workdir, "bare", [sys.executable, str(Path(__file__).resolve()), "bare"]) as server:
        yield server


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve_bare(port: int) -> None:
    """A Starlette app whose callback endpoint reads the body and answers 200, nothing more.

    Started exactly like ``runway-relay serve`` starts uvicorn (same options, same logging, same CPU pinning).
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from runway_relay import affinity, logs, serving
    from runway_relay.settings import Settings

    async def callback(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True, "outcome": "applied"})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/callbacks/{token}", callback, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )
    logs.setup("INFO")
    affinity.pin(affinity.AUTO)  # as `runway-relay serve` does by default
    serving.run(app, Settings(host="127.0.0.1", port=port), access_log=False)  # uvicorn as serve runs it


# -- load -----------------------------------------------------------------------------------------

WRK_LUA = """
local tokens = {%(tokens)s}
local template = %(template)s
counter = 0
local headers = {["Content-Type"] = "application/json"}
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  nthreads = %(threads)d
end
function request()
  counter = counter + 1
  -- each wrk thread owns every nthreads-th token, so per job the progress only grows
  local slot = (counter %% math.floor(#tokens / nthreads)) * nthreads + tid + 1
  local progress = string.format("%%.9f", %(base)f + counter / 1e7)
  local body = string.format(template, progress, progress)
  return wrk.format("POST", "/callbacks/" .. tokens[slot], headers, body)
end
"""


def wrk_script(path: Path, tokens: list[str], threads: int, base: float = 0.0) -> Path:
    """A wrk Lua script posting callbacks with ever-growing progress (from ``base``) to ``tokens``."""
    body = json.dumps(task_body("PROGRESS")).replace("%", "%%").replace('"PROGRESS"', '"%s"')
    body = body.replace("(PROGRESS)", "(%s)")
    path.write_text(
        WRK_LUA
        % {
            "tokens": ",".join(json.dumps(t) for t in tokens),
            "template": json.dumps(body),
            "threads": threads,
            "base": base,
        }
    )
    return path


@dataclass
class WrkResult:
    """What wrk measured, plus the CPU both sides used."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    server_cpu: float
    wrk_cpu: float
    seconds: float


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def require_wrk() -> str:
    """The path of ``wrk`` or exit with how to install it."""
    found = shutil.which("wrk")
    if found is None:
        sys.exit("bench needs wrk as load generator: apt-get install wrk (Debian/Ubuntu), then run again")
    return found


def run_wrk(server: Server, script: Path, *, threads: int, connections: int, seconds: float) -> WrkResult:
    """Closed-loop load with wrk; returns throughput, latency and CPU of server and wrk."""
    cmd = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
    ]
    cpu0 = server.cpu_seconds()
    usage0 = os.times()
    started = time.monotonic()
    done = subprocess.run([*cmd, server.url], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    out = done.stdout
    elapsed = time.monotonic() - started
    usage1 = os.times()
    wrk_cpu = (usage1.children_user - usage0.children_user) + (
        usage1.children_system - usage0.children_system
    )
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return WrkResult(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(lat["50"]),
        p99_ms=_ms(lat["99"]),
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        errors=errors,
        server_cpu=(server.cpu_seconds() - cpu0) / elapsed,
        wrk_cpu=wrk_cpu / elapsed,
        seconds=elapsed,
    )


def percentile(values: list[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "bare":
        serve_bare(int(sys.argv[2]))
    else:
        sys.exit("usage: python bench/common.py bare PORT")
