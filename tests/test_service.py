"""The relay's background loops survive a failure: the guard restarts them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from runway_relay.coordination import guard
from runway_relay.service import Relay
from runway_relay.settings import load_settings


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
