"""The dashboard's accounts view in Chromium, at desktop and phone widths, against a real relay on the
simulator with two accounts: a moderation pause shows with its reason and end, the header warns, and
Resume lifts it (the pinned job that waited then runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_scheduler_support import finish, running_relay, submit, upstream

from ui import Console

A, B = "a@sim.test", "b@sim.test"


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_a_paused_account_shows_why_and_until_when_and_resumes(
    tmp_path: Path, console: Any, width: str
) -> None:
    with (
        upstream(accounts={A: 1, B: 2}, credits={B: 5000}) as (_sim, url),
        running_relay(tmp_path, url, RELAY_MODERATION_PAUSE="3/1h") as relay,
    ):
        for n in range(3):
            finish(relay, submit(relay, model="gen4.5", text_prompt=f"[moderate] {n}", email=A)["id"])
        waiting = submit(relay, model="gen4.5", text_prompt="pinned to a", email=A)
        ui: Console = console(relay, width)
        page = ui.open("accounts")
        card = "#account-a-sim-test"
        page.wait_for_selector(f"{card}[data-state=paused]")
        banner = page.inner_text("#paused-a-sim-test")
        assert "Paused until" in banner and "(in 59 min" in banner
        assert "3 moderation failures within 1h" in banner
        until = page.get_attribute("#paused-a-sim-test time", "datetime")
        paused = next(a for a in relay.api("GET", "/api/accounts").json()["accounts"] if a["email"] == A)
        assert until == paused["paused_until"]
        assert "a@sim.test: paused" in page.inner_text("#accounts-alert")
        other = page.inner_text("#account-b-sim-test")
        assert "5,000 of 5,000 left" in other and "0 of 2" in other
        assert page.is_hidden("#resume-b-sim-test")
        assert "0 of 3 within 1h" in page.inner_text(card) and "moderation:" in page.inner_text(card)
        ui.fits()
        ui.shot("paused")
        page.click("#resume-a-sim-test")
        page.wait_for_selector(f"{card}[data-state=ok]")
        assert page.is_hidden("#paused-a-sim-test") and page.is_hidden("#accounts-alert")
        assert "resumed" in page.inner_text("#toasts")
        done = finish(relay, waiting["id"])
        assert done["status"] == "succeeded" and done["account"] == A
        page.click(".tabs a[data-view=jobs]")
        page.wait_for_selector("#view-jobs:not([hidden])")
        page.click(".tabs a[data-view=accounts]")
        page.wait_for_selector(f"{card}[data-state=ok]")
        ui.shot("resumed")
