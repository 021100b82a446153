"""The relay's background loops survive a failure: the guard restarts them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from runway_relay.coordination import guard
from runway_relay.service import Relay
from runway_relay.settings import load_settings

from conftest import RelayProcess, free_port, relay_env


def test_a_failing_loop_is_restarted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    relay = Relay(load_settings({"RELAY_DB": str(tmp_path / "r.db")}))
    calls: list[int] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")

    async def main() -> None:
        await asyncio.wait_for(guard("test", flaky), timeout=10)
        await relay.http.aclose()

    asyncio.run(main())
    assert len(calls) == 2
    assert "the test loop stopped unexpectedly; restarting it" in caplog.text


def _serve(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    port = str(free_port())
    argv = [sys.executable, "-m", "runway_relay", "serve", "--port", port]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_serve_stops_with_a_clear_message_when_postgresql_cannot_be_reached(tmp_path: Path) -> None:
    env = relay_env(tmp_path, RELAY_DB=f"postgresql://postgres@127.0.0.1:{free_port()}/relay")
    done = _serve(env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "database error: cannot connect to PostgreSQL at 127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_stops_with_a_clear_message_when_relay_db_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("my notes, not a database\n" * 100)
    done = _serve(relay_env(tmp_path, RELAY_DB=str(tmp_path / "notes.db")), tmp_path)
    assert done.returncode == 2, done.stderr
    assert "cannot be used as a SQLite database: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "notes.db").read_text().startswith("my notes")  # untouched


def test_a_second_serve_on_one_sqlite_file_is_refused(relay: RelayProcess, tmp_path: Path) -> None:
    done = _serve(relay.env, tmp_path)
    assert done.returncode == 2, done.stderr
    assert "already served by a relay" in done.stderr and "postgresql://" in done.stderr
    assert relay.api("GET", "/healthz").status_code == 200  # the first one is untouched


def test_serve_on_a_port_in_use_says_so_and_exits_2(relay: RelayProcess, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "runway_relay", "serve", "--port", str(relay.port)]
    done = subprocess.run(argv, env=relay_env(tmp_path / "other"), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{relay.port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_simulate_refuses_accounts_it_cannot_read_naming_its_flag() -> None:
    for given, says in (("garbage", "expected email:maxJobs"), ("a@x.com:abc", "maxJobs must be")):
        argv = [sys.executable, "-m", "runway_relay", "simulate", "--accounts", given]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and f"--accounts entry {given!r}: {says}" in done.stderr, done.stderr
