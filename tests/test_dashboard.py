"""The dashboard in a real headless Chromium (Debian's package), against a real relay process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import RelayProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


def refusals(page: Any) -> list[str]:
    """Collects what the page's Content-Security-Policy refused (Chromium says so on the console)."""
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


def test_submit_watch_and_play(relay: RelayProcess, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page()
    refused = refusals(page)
    page.goto(relay.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", "gen4.5")
    page.fill("#prompt", "a lighthouse in a storm")
    page.click("button[type=submit]")
    page.wait_for_selector("td.succeeded", timeout=30_000)
    page.wait_for_selector("#detail video", timeout=30_000)
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('#detail video');"
        " return v && v.readyState >= 1 && v.duration > 0 ? v.duration : null; }",
        timeout=15_000,
    )
    assert duration.json_value() > 1
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert "Replay" in page.inner_text("#detail")
    job_id = relay.api("GET", "/api/jobs").json()["jobs"][0]["id"]
    linked = browser.new_page()
    linked.goto(f"{relay.url}/#job={job_id}")  # the link Slack and Discord messages carry
    linked.wait_for_selector(f"#detail h3:has-text('{job_id}')")
    width = page.eval_on_selector("#jobs .bar > div", "el => el.style.width")
    assert width == "100%"  # the progress bar, drawn without an inline style attribute
    assert refused == []


def test_rule_break_shows_the_field(relay: RelayProcess, browser: Any) -> None:
    page = browser.new_page()
    page.goto(relay.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", "gen4")
    page.click("button[type=submit]")
    page.wait_for_function("() => document.getElementById('form-error').textContent.length > 0")
    assert "text_prompt" in page.inner_text("#form-error")
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []


def test_login_form_when_an_api_key_is_set(relay_factory: Any, browser: Any) -> None:
    relay = relay_factory(RELAY_API_KEY="dashboard-key-123")
    page = browser.new_page()
    refused = refusals(page)
    page.goto(relay.url + "/")
    assert page.url.endswith("/login")
    page.fill("#key", "wrong")
    page.click("button[type=submit]")
    assert "Wrong key" in page.content()
    page.fill("#key", "dashboard-key-123")
    page.click("button[type=submit]")
    page.wait_for_selector("#model option", state="attached")
    assert page.url == relay.url + "/"
    assert refused == []
