"""Fixtures that start the real relay (``runway-relay serve``) as a subprocess on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from runway_relay.storage import is_postgres
from runway_relay.storage.postgres import numbered

import pg


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RelayProcess:
    """A running ``runway-relay serve`` and what it was started with."""

    tmp: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        """The SQLite file (for tests about SQLite itself; others use :attr:`db_url` / :meth:`query`)."""
        return Path(self.env["RELAY_DB"])

    @property
    def db_url(self) -> str:
        """``RELAY_DB`` as given: a SQLite path or a PostgreSQL URL."""
        return self.env["RELAY_DB"]

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders) read from this relay's database."""
        return query(self.db_url, sql, args)

    @property
    def downloads(self) -> Path:
        return Path(self.env["RELAY_DOWNLOAD_DIR"])

    def start(self, timeout: float = 20.0) -> RelayProcess:
        log = (self.tmp / "relay.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runway_relay", "serve", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"relay did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        path = self.tmp / "relay.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=10, **kwargs)

    def wait_for(self, job_id: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the job until ``predicate(job)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.api("GET", f"/api/jobs/{job_id}").json()
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last state: {job}\n{self.log()[-3000:]}")
            time.sleep(0.05)


def query(db: str | Path, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` (``?`` placeholders) on a relay's database, as an operator would read it:
    a SQLite file (read-only) or a PostgreSQL URL."""
    url = str(db)
    if is_postgres(url):
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.RawCursor) as conn:
            return [tuple(row) for row in conn.execute(numbered(sql), list(args)).fetchall()]
    with contextlib.closing(sqlite3.connect(f"file:{url}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute(sql, list(args)).fetchall()


def execute(db: str | Path, sql: str, args: Sequence[Any] = ()) -> None:
    """Change a relay's database behind its back (to stage a crash long ago, a broken row…)."""
    url = str(db)
    if is_postgres(url):
        with psycopg.connect(url, autocommit=True, cursor_factory=psycopg.RawCursor) as conn:
            conn.execute(numbered(sql), list(args))
        return
    with contextlib.closing(sqlite3.connect(url, timeout=30)) as conn, conn:
        conn.execute(sql, list(args))


def relay_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a relay in ``tmp`` with the simulator sped up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "USEAPI_"))}
    env.update(
        {
            "RELAY_DB": str(tmp / "relay.db"),
            "RELAY_DOWNLOAD_DIR": str(tmp / "downloads"),
            "RELAY_SIM_STEP_SECONDS": "0.05",
            "RELAY_POLL_AFTER": "30",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def relay_factory(tmp_path: Path) -> Iterator[Any]:
    """Start relays with extra environment; all are stopped at the end of the test."""
    started: list[RelayProcess] = []

    def make(**extra: str) -> RelayProcess:
        relay = RelayProcess(tmp_path, relay_env(tmp_path, **extra))
        started.append(relay)
        return relay.start()

    yield make
    for relay in started:
        relay.stop()


@pytest.fixture
def relay(relay_factory: Any) -> RelayProcess:
    """A relay on its embedded defaults: built-in simulator, SQLite file in a temp dir."""
    return relay_factory()


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once on SQLite and once on PostgreSQL."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the test's backend: a SQLite file in ``tmp_path``, or a new PostgreSQL
    database (dropped afterwards). Fails, never skips, when PostgreSQL cannot be had."""
    if backend == "sqlite":
        yield str(tmp_path / "relay.db")
        return
    yield from pg_database()


def pg_database() -> Iterator[str]:
    """A new PostgreSQL database for one test (the body of the fixtures that need one)."""
    try:
        url = pg.create_database()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield url
    finally:
        pg.drop_database(url)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like :func:`db_url`, for module-scoped fixtures (one relay shared by a module's tests)."""
    if request.param == "sqlite":
        yield str(tmp_path_factory.mktemp("db") / "relay.db")
        return
    yield from pg_database()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database (for tests that are about PostgreSQL only)."""
    yield from pg_database()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, one per test module (skips without either).

    Not one per session: Playwright's sync API holds an event loop on the main thread while it runs,
    and the asyncio tests of later modules need that thread's loop free.
    """
    from ui import launch

    with launch() as browser:
        yield browser


@pytest.fixture
def console(chromium: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``console(relay, "phone")``: a page on the relay's dashboard at that width, under the CSP."""
    from ui import Console

    opened: list[Console] = []

    def make(relay: RelayProcess, width: str = "desktop") -> Console:
        page = Console(chromium, relay.url, width, tmp_path / "screenshots", request.node.name)
        opened.append(page)
        return page

    yield make
    for page in opened:
        page.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test, to fill up (needs root; skips, saying why, otherwise).
    Unmounted at the end, lazily if a relay still holds a file on it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; the file that holds them (unlink it to free them)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):  # ENOSPC: no room for a piece this big
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler
