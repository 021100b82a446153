"""Assets and accounts: an upload remembers its account and jobs using the asset run there; accounts come
from ``GET accounts/`` and nothing but their email and ``maxJobs`` is kept."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_scheduler_support import finish, interval, running_relay, submit, task_of, upstream, wait_until

from runway_relay.simulator import Simulator

from conftest import RelayProcess

ACCOUNTS = {"a@sim.test": 1, "b@sim.test": 1, "c@sim.test": 1}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RelayProcess, Simulator, Path]]:
    tmp = tmp_path_factory.mktemp("assets")
    with upstream(accounts=ACCOUNTS, step_seconds=0.1) as (sim, url), running_relay(tmp, url) as relay:
        yield relay, sim, tmp


def upload(relay: RelayProcess, name: str = "frame.png", email: str | None = None) -> dict[str, Any]:
    answer = relay.api(
        "POST",
        "/api/assets",
        files={"file": (name, PNG, "image/png")},
        data={"email": email} if email else None,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_uploads_remember_their_account_and_jobs_follow_it(
    trio: tuple[RelayProcess, Simulator, Path],
) -> None:
    relay, sim, tmp = trio
    first, second = upload(relay), upload(relay, "other.png")
    (tmp / "frame.png").write_bytes(PNG)
    cli = subprocess.run(
        [sys.executable, "-m", "runway_relay", "upload", str(tmp / "frame.png"), "--email", "c@sim.test",
         "--server", relay.url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "uploaded to account c@sim.test" in cli.stderr
    third = {"assetId": cli.stdout.strip(), "account": "c@sim.test"}
    owners = {a["assetId"]: a["account"] for a in (first, second, third)}
    assert len(set(owners.values())) == 3  # the simulator spreads uploads; --email pinned the third
    for asset_id, owner in owners.items():
        assert sim.engine.assets[asset_id]["email"] == owner
    jobs = {
        asset_id: submit(relay, model="gen4-turbo", text_prompt="from a frame", imageAssetId1=asset_id)
        for asset_id in owners
    }
    for asset_id, job in jobs.items():
        final = finish(relay, job["id"])
        assert final["status"] == "succeeded" and final["account"] == owners[asset_id]
        assert task_of(sim, f"{job['id']}.1").email == owners[asset_id]
    with sqlite3.connect(relay.db) as db:
        kept = dict(db.execute("select asset_id, account from assets").fetchall())
    assert kept == owners


def test_a_job_waits_for_the_account_holding_its_asset(trio: tuple[RelayProcess, Simulator, Path]) -> None:
    relay, sim, _ = trio
    asset = upload(relay, email="a@sim.test")["assetId"]
    long = submit(relay, model="gen4-turbo", text_prompt="[hold] holds a", imageAssetId1=asset)
    long = relay.wait_for(long["id"], lambda j: j["task_id"] is not None)
    waiting = submit(relay, model="gen4-turbo", text_prompt="needs a", imageAssetId1=asset)
    sim.engine.release(long["task_id"])  # held until now, so a's only slot was taken when it came
    final = finish(relay, waiting["id"])
    assert final["status"] == "succeeded" and final["account"] == "a@sim.test"
    # b and c were free all along, but the asset lives on a: it waited for a's only slot
    assert interval(task_of(sim, f"{waiting['id']}.1"))[0] >= interval(task_of(sim, f"{long['id']}.1"))[1]
    assert sim.rejected_429 == 0


def test_account_secrets_are_never_stored_logged_or_shown(trio: tuple[RelayProcess, Simulator, Path]) -> None:
    relay, _, tmp = trio
    secrets = ("sim-secret-password", "sim-jwt")  # what the simulator's GET accounts/ answers carry

    def accounts() -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(relay.db)) as db:
            return {row[0]: row[1] for row in db.execute("select email, max_jobs from accounts")}

    assert wait_until(accounts, what="accounts discovered") == ACCOUNTS
    with contextlib.closing(sqlite3.connect(relay.db)) as db:
        dumped = "\n".join(db.iterdump())
    stored = b"".join(path.read_bytes() for path in tmp.glob("relay.db*"))
    shown = relay.api("GET", "/api/jobs").text + relay.api("GET", "/healthz").text
    for secret in secrets:
        assert secret not in dumped and secret.encode() not in stored
        assert secret not in relay.log() and secret not in shown
