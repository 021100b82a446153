"""``runway-relay backup FILE`` against a relay that serves (and ingests callbacks) meanwhile."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pg
from conftest import RelayProcess


def backup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runway_relay", "backup", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def submit(relay: RelayProcess, n: int) -> str:
    answer = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"backup {n}"})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


class Traffic:
    """Submits jobs until stopped; the built-in simulator answers each with a few callbacks."""

    def __init__(self, relay: RelayProcess) -> None:
        self.relay = relay
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 1000
        while not self.stop.is_set():
            submit(self.relay, n)
            n += 1

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_serving_sqlite_relay_is_copied_whole_while_callbacks_arrive(
    relay: RelayProcess, tmp_path: Path
) -> None:
    before = [submit(relay, n) for n in range(40)]
    relay.wait_for(before[0], lambda j: j["status"] in ("running", "succeeded"))
    copy = tmp_path / "copy.db"
    with Traffic(relay):
        events_at_start = relay.query("select count(*) from events")[0][0]
        done = backup(relay.env, str(copy))
    assert done.returncode == 0, done.stderr
    assert str(copy) in done.stdout and "integrity ok" in done.stdout and " jobs" in done.stdout
    assert events_at_start > 0
    assert not Path(f"{copy}-wal").exists()  # one self-contained file
    assert copy.stat().st_mode & 0o077 == 0
    with contextlib.closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as db:
        assert db.execute("pragma integrity_check").fetchall() == [("ok",)]
        ids = {row[0] for row in db.execute("select id from jobs")}
        events = db.execute("select count(*) from events").fetchone()[0]
    assert set(before) <= ids
    assert events >= events_at_start
    jobs = int(done.stdout.split(" jobs")[0].rsplit(" ", 1)[-1])
    assert jobs == len(ids) >= len(before)


def test_an_existing_file_is_kept_unless_forced(relay: RelayProcess, tmp_path: Path) -> None:
    submit(relay, 1)
    target = tmp_path / "keep.db"
    target.write_bytes(b"precious")
    refused = backup(relay.env, str(target))
    assert refused.returncode != 0
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_bytes() == b"precious"
    forced = backup(relay.env, str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    with contextlib.closing(sqlite3.connect(target)) as db:
        assert db.execute("select count(*) from jobs").fetchone()[0] == 1


def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    env = {**os.environ, "RELAY_DB": str(tmp_path / "nope.db")}
    done = backup(env, str(tmp_path / "copy.db"))
    assert done.returncode != 0 and "no SQLite database" in done.stderr
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "copy.db").exists()


def _with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed (postgresql-client)")
def test_postgresql_is_dumped_and_restores_every_job(relay_factory: Any, pg_url: str, tmp_path: Path) -> None:
    relay = relay_factory(RELAY_DB=pg_url)
    before = [submit(relay, n) for n in range(20)]
    # The server trusts local connections, so a password in the URL is accepted and unused: it
    # must still appear nowhere.
    env = {**relay.env, "RELAY_DB": _with_password(pg_url, "s3cret-pw")}
    dump = tmp_path / "relay.dump"
    with Traffic(relay):
        done = backup(env, str(dump))
    assert done.returncode == 0, done.stderr
    assert "s3cret-pw" not in done.stdout + done.stderr
    assert str(dump) in done.stdout and "pg_dump" in done.stdout
    restored = pg.create_database()
    try:
        loaded = subprocess.run(
            ["pg_restore", "--no-owner", "--dbname", restored, str(dump)], capture_output=True, text=True
        )
        assert loaded.returncode == 0, loaded.stderr
        with psycopg.connect(restored) as conn:
            ids = {row[0] for row in conn.execute("select id from jobs").fetchall()}
        assert set(before) <= ids
    finally:
        pg.drop_database(restored)


def test_postgresql_without_pg_dump_says_so(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "RELAY_DB": pg_url, "PATH": str(tmp_path)}  # no pg_dump on this PATH
    done = backup(env, str(tmp_path / "relay.dump"))
    assert done.returncode != 0
    assert "pg_dump is not installed" in done.stderr and "postgresql-client" in done.stderr
