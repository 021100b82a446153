"""``GET /readyz``: 200 while the relay can work; 503, with reasons in words, while its database
cannot take writes (read-only PostgreSQL, a full disk under SQLite, a write lock held too long)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

import pg
from conftest import RelayProcess, fill

KEY = "ready-key-0123456789"


def readyz(relay: RelayProcess, **headers: str) -> httpx.Response:
    return relay.api("GET", "/readyz", headers={"Authorization": f"Bearer {KEY}", **headers})


def until(relay: RelayProcess, predicate: Any, timeout: float = 30.0) -> httpx.Response:
    """Ask ``/readyz`` until ``predicate(answer)`` holds (the relay's pool reconnects in its own time)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = readyz(relay)
        if predicate(answer):
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"last answer {answer.status_code} {answer.text}\n{relay.log()[-3000:]}")
        time.sleep(0.1)


def test_ready_needs_the_key_and_says_nothing_private(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    assert relay.api("GET", "/readyz").status_code == 401
    answer = readyz(relay)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "upstream": "simulator"}
    # Probes address a relay by its own name, as for /healthz.
    assert readyz(relay, Host="relay1:8000").status_code == 200
    assert relay.api("GET", "/healthz").json() == {"status": "ok"}  # liveness unchanged


def _backends(url: str) -> None:
    """End the relay's connections to its database, so its pool opens new ones (with new defaults)."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = %s and pid <> pg_backend_pid()",
            [name],
        )


def _read_only(url: str, on: bool) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(pg.admin_url(), autocommit=True) as conn:
        setting = "set default_transaction_read_only = on" if on else "reset default_transaction_read_only"
        conn.execute(f'alter database "{name}" {setting}')
    _backends(url)


def test_a_read_only_postgresql_makes_it_not_ready_until_writable(relay_factory: Any, pg_url: str) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY, RELAY_DB=pg_url)
    assert readyz(relay).status_code == 200
    _read_only(pg_url, True)
    try:
        answer = until(relay, lambda a: a.status_code == 503 and "ReadOnlySqlTransaction" in a.text)
        body = answer.json()
        assert body["status"] == "not ready"
        assert any("cannot take writes" in reason for reason in body["reasons"])
        assert relay.api("GET", "/healthz").status_code == 200  # alive all along
    finally:
        _read_only(pg_url, False)
    until(relay, lambda a: a.status_code == 200)


def test_a_full_disk_under_sqlite_makes_it_not_ready_until_freed(
    relay_factory: Any, small_disk: Path
) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY, RELAY_DB=str(small_disk / "relay.db"))
    assert readyz(relay).status_code == 200
    filler = fill(small_disk)
    try:
        answer = until(relay, lambda a: a.status_code == 503)
        body = answer.json()
        assert body["status"] == "not ready"
        assert any("disk is full" in reason for reason in body["reasons"]), body
        assert relay.api("GET", "/healthz").status_code == 200
    finally:
        filler.unlink()
    until(relay, lambda a: a.status_code == 200)
    relay.stop()  # before the fixture unmounts the disk under it


def test_a_write_held_off_answers_not_ready_within_the_probe_timeout(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    assert readyz(relay).status_code == 200
    # Another process holds SQLite's one write lock: the relay's writes wait on it.
    with contextlib.closing(sqlite3.connect(relay.db, isolation_level=None, timeout=30)) as other:
        other.execute("begin immediate")
        try:
            answer = readyz(relay)  # httpx's own 10 s timeout would fail this if the probe waited on
            assert answer.status_code == 503, answer.text
            assert answer.json()["reasons"][0] == "the database did not take a write within 2 s"
        finally:
            other.execute("rollback")
    until(relay, lambda a: a.status_code == 200)
