"""Compare, usage, sessions, the live indicator, keyboard use and the page's CSP-readiness, in Chromium at
desktop and phone widths against a real relay."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RelayProcess
from ui import Console

WIDTHS = pytest.mark.parametrize("width", ["desktop", "phone"])
DONE = ("succeeded", "failed", "cancelled", "rejected")
KEY = "dashboard-key-123"
STATIC = Path(__file__).resolve().parent.parent / "receiver" / "static"


def settled(job: dict) -> bool:
    return job["status"] in DONE and all(h["status"] not in ("pending", "running") for h in job["handlers"])


@WIDTHS
def test_compare_three_models_side_by_side_in_sync(relay: RelayProcess, console: Any, width: str) -> None:
    ui: Console = console(relay, width)
    page = ui.open("compare")
    picked = page.eval_on_selector_all("#compare-form input[name=models]:checked", "b => b.map(x => x.value)")
    assert picked == ["kling-3.0-pro", "veo-3.1", "sora-2"]
    assert page.is_disabled("#cmp-gen4") and page.is_disabled("#cmp-wan-2_2-animate")

    page.check("#cmp-kling-2_6-pro")  # takes a prompt only if one is given: nothing may be stored
    page.click("#compare-submit")
    page.wait_for_selector("#compare-error:not([hidden])")
    assert "kling-2.6-pro: text_prompt is required" in page.inner_text("#compare-error")
    assert relay.api("GET", "/api/jobs").json()["jobs"] == []
    page.uncheck("#cmp-kling-2_6-pro")

    page.fill("#compare-prompt", "a paper boat drifting down a rainy street")
    page.select_option("#compare-aspect", "16:9")
    page.click("#compare-submit")
    page.wait_for_function("() => location.hash.startsWith('#group=')")
    group_id = page.evaluate("() => decodeURIComponent(location.hash.slice(7))")
    videos = "[...document.querySelectorAll('#group-grid video')]"
    page.wait_for_function(f"() => {videos}.length === 3", timeout=60_000)
    group = relay.api("GET", f"/api/groups/{group_id}").json()
    assert [j["model"] for j in group["jobs"]] == ["kling-3.0-pro", "veo-3.1", "sora-2"]
    boxes = [page.locator(".group-card").nth(n).bounding_box() for n in range(3)]
    if ui.phone:
        assert all(abs(b["x"] - boxes[0]["x"]) < 2 for b in boxes)  # stacked: one column on a phone
    else:
        assert all(abs(b["y"] - boxes[0]["y"]) < 2 for b in boxes)  # side by side
    page.click("#play-all")
    page.wait_for_function(f"() => {videos}.every(v => !v.paused && v.currentTime > 0.3)")
    times = page.evaluate(f"() => {videos}.map(v => v.currentTime)")
    assert max(times) - min(times) < 0.5, times
    ui.fits()
    ui.shot("group")


@WIDTHS
def test_usage_of_the_day(relay: RelayProcess, console: Any, width: str) -> None:
    bodies = [
        {"model": "veo-3.1", "text_prompt": "one", "duration": 8},
        {"model": "veo-3.1", "text_prompt": "two", "duration": 6},
        {"model": "sora-2", "text_prompt": "three [moderate]"},
    ]
    for body in bodies:
        relay.wait_for(relay.api("POST", "/api/jobs", json=body).json()["id"], settled)
    ui: Console = console(relay, width)
    page = ui.open("usage")
    page.select_option("#usage-days", "1")
    page.wait_for_function("() => (document.querySelector('#usage-stats .v') || {}).textContent === '3'")
    stats = page.inner_text("#usage-stats")
    assert "14 s" in stats and "66.7%" in stats and "33.3%" in stats
    assert page.eval_on_selector_all("#usage svg rect.c-succeeded", "r => r.length") >= 1
    assert page.eval_on_selector_all("#usage svg rect.c-p50", "r => r.length") == 1  # veo only succeeded
    assert "sim-1@example.com" in page.inner_text("#usage-slots")
    assert page.eval_on_selector_all("#usage-table tbody tr", "r => r.length") == 2
    ui.fits()
    ui.shot("usage")


def sign_in(page: Any, url: str) -> None:
    page.wait_for_url("**/login")
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_selector("#live[data-state=live]")


@WIDTHS
def test_an_expired_session_goes_to_the_login_page(relay_factory: Any, console: Any, width: str) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    ui: Console = console(relay, width)
    page = ui.page
    page.goto(relay.url + "/")
    page.wait_for_url("**/login")
    page.fill("#key", "wrong")
    page.click("button[type=submit]")
    assert "Wrong key" in page.content()
    sign_in(page, relay.url)
    assert page.is_visible("#logout")
    ui.context.clear_cookies()  # the session is gone (expired, or the key changed)
    page.fill("#q", "lighthouse")  # the next API call answers 401
    sign_in(page, relay.url)
    page.wait_for_function("() => document.getElementById('q').value === 'lighthouse'")  # back where it was
    assert page.url.startswith(relay.url + "/#")


@WIDTHS
def test_sign_out(relay_factory: Any, console: Any, width: str) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    if relay.api("POST", "/logout").status_code in (404, 405):
        pytest.skip("POST /logout is the session work's (security branch); the button posts to it")
    ui: Console = console(relay, width)
    page = ui.page
    page.goto(relay.url + "/")
    sign_in(page, relay.url)
    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(relay.url + "/")
    page.wait_for_url("**/login")


@WIDTHS
def test_the_live_indicator_shows_a_lost_stream_and_reconnects(
    relay: RelayProcess, console: Any, width: str
) -> None:
    ui: Console = console(relay, width)
    page = ui.open("jobs")
    relay.stop()
    page.wait_for_selector("#live[data-state=reconnecting]")
    assert "Reconnecting" in page.inner_text("#live")
    ui.shot("reconnecting")
    relay.start()
    page.wait_for_selector("#live[data-state=live]", timeout=30_000)
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "after the restart"}).json()
    page.wait_for_selector(f"#jobs tr[data-id='{job['id']}']")


@WIDTHS
def test_keyboard_reaches_a_job(relay: RelayProcess, console: Any, width: str) -> None:
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "by keyboard"}).json()
    ui: Console = console(relay, width)
    page = ui.open("jobs")
    page.wait_for_selector(f"#jobs tr[data-id='{job['id']}']")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('prompt-link')"):
            break
    else:
        raise AssertionError("Tab never reached the job's link")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('job-prompt')?.textContent === 'by keyboard'")
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "q"


def test_the_page_holds_a_strict_csp(relay: RelayProcess) -> None:
    page = relay.api("GET", "/")
    assert page.headers["content-security-policy"].startswith("default-src 'self'; script-src 'self';")
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert "<style" not in html and not re.search(r"\sstyle=", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    for path in STATIC.rglob("*.js"):
        text = path.read_text()
        assert ".innerHTML" not in text and "insertAdjacentHTML" not in text, path.name
        assert 'setAttribute("style"' not in text and ".style." not in text, path.name
    module = relay.api("GET", "/static/js/main.js")
    assert module.headers["content-type"].startswith("text/javascript")
    assert module.headers["cache-control"] == "no-cache"
    assert httpx.get(f"{relay.url}/static/nothing.js").status_code == 404
