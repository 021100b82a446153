"""The job list (filters, search, paging, live rows) and the job page (timeline, handlers, actions,
a player that stays put) in Chromium at desktop and phone widths, against a real relay."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runway_relay.storage import open_store

from conftest import RelayProcess
from ui import Console

WIDTHS = pytest.mark.parametrize("width", ["desktop", "phone"])
DONE = ("succeeded", "failed", "cancelled", "rejected")
WORDS = ["harbor", "forest", "desert", "city", "ocean", "mountain", "river", "snow", "night", "storm"]
MODELS = ["gen4.5", "veo-3.1", "sora-2", "kling-3.0-pro"]
STATUSES = ["succeeded", "failed", "cancelled", "rejected", "succeeded"]


def settled(job: dict) -> bool:
    return job["status"] in DONE and all(h["status"] not in ("pending", "running") for h in job["handlers"])


def seed_jobs(db: Path, count: int) -> None:
    """``count`` finished jobs straight into the relay's database, before it starts."""

    async def create() -> list[str]:
        store = open_store(str(db), owner=False)
        await store.open()
        try:
            ids = []
            for n in range(count):
                model = MODELS[n % len(MODELS)]
                params = {"model": model, "text_prompt": f"a {WORDS[n % 10]} scene number {n}", "duration": 4}
                account = "a@x.com" if n % 2 else "b@x.com"
                ids.append((await store.create_job(model, params, None, account)).job_id)
            return ids
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's event loop
        ids = thread.submit(asyncio.run, create()).result()
    with sqlite3.connect(db) as conn:
        for n, job_id in enumerate(ids):
            status = STATUSES[n % len(STATUSES)]
            conn.execute(
                "update jobs set status = ?, progress = ? where id = ?",
                [status, 1.0 if status == "succeeded" else 0.4, job_id],
            )
        conn.execute("delete from job_counts")  # the statuses were set behind the store's back
        conn.execute("insert into job_counts (status, n) select status, count(*) from jobs group by status")


def rows(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#jobs tr", "rows => rows.map(r => r.dataset.id)"))


def wait_rows(page: Any, count: int) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('#jobs tr').length === {count}")


def wait_summary(page: Any, text: str) -> None:
    page.wait_for_function(f"() => document.getElementById('jobs-summary').textContent.includes({text!r})")


@WIDTHS
def test_filters_search_and_paging_on_250_jobs(
    relay_factory: Any, tmp_path: Path, console: Any, width: str
) -> None:
    seed_jobs(tmp_path / "relay.db", 250)
    relay: RelayProcess = relay_factory()
    ui: Console = console(relay, width)
    page = ui.open("jobs")
    wait_rows(page, 50)
    newest = [j["id"] for j in relay.api("GET", "/api/jobs", params={"limit": 50}).json()["jobs"]]
    assert rows(page) == newest
    assert "scene number 249" in page.inner_text("#jobs tr:first-child .prompt-link")
    ui.fits()
    ui.shot("page-1")
    seen = set(rows(page))
    for number in range(2, 6):
        page.click("#page-older")
        wait_summary(page, f"Jobs {(number - 1) * 50 + 1}–{number * 50}")
        assert not seen & set(rows(page))
        seen |= set(rows(page))
    assert len(seen) == 250 and page.is_disabled("#page-older")
    page.click("#page-newer")
    wait_summary(page, "Jobs 151–200")

    page.select_option("#f-status", "failed")
    wait_summary(page, "matching the filters")
    wait_rows(page, 50)  # exactly 50 of the 250 failed
    statuses = page.eval_on_selector_all("#jobs .pill", "p => p.map(x => x.textContent)")
    assert set(statuses) == {"Failed"} and page.is_disabled("#page-older")
    page.select_option("#f-model", "veo-3.1")
    expected = relay.api("GET", "/api/jobs", params={"status": "failed", "model": "veo-3.1"}).json()["jobs"]
    wait_rows(page, len(expected))
    assert rows(page) == [j["id"] for j in expected]
    assert "status=failed" in page.evaluate("location.hash")

    page.click("#f-reset")
    wait_rows(page, 50)
    page.select_option("#f-account", "a@x.com")
    wait_summary(page, "matching the filters")
    by_account = relay.api("GET", "/api/jobs", params={"account": "a@x.com", "limit": 50}).json()["jobs"]
    assert rows(page) == [j["id"] for j in by_account] and not page.is_disabled("#page-older")
    page.select_option("#f-account", "")

    page.fill("#q", "HARBOR")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#jobs .prompt-link')]"
        ".every(a => a.textContent.includes('harbor')) && document.querySelectorAll('#jobs tr').length === 25"
    )
    ui.shot("search-harbor")
    page.fill("#q", "zzzz-nothing")
    page.wait_for_selector("#jobs-empty:not([hidden])")
    assert "No job matches" in page.inner_text("#jobs-empty")
    page.click("#jobs-empty button")
    wait_rows(page, 50)

    # Live: a new job appears on top without a reload, and its row is patched in place.
    page.evaluate("() => document.querySelector('#jobs tr').dataset.mark = 'old-top'")
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "a live one"}).json()
    page.wait_for_function(f"() => document.querySelector('#jobs tr')?.dataset.id === {job['id']!r}")
    page.evaluate("() => document.querySelector('#jobs tr').dataset.mark = 'new-top'")
    relay.wait_for(job["id"], settled)
    page.wait_for_function("() => document.querySelector('#jobs tr .pill')?.textContent === 'Succeeded'")
    assert page.get_attribute("#jobs tr:first-child", "data-mark") == "new-top"  # patched, not rebuilt
    assert page.get_attribute("#jobs tr:nth-child(2)", "data-mark") == "old-top" and len(rows(page)) == 50


@WIDTHS
def test_empty_state_says_how_to_submit(relay: RelayProcess, console: Any, width: str) -> None:
    ui: Console = console(relay, width)
    page = ui.open()
    page.wait_for_selector("#jobs-empty:not([hidden])")
    text = page.inner_text("#jobs-empty")
    assert "No jobs yet" in text and "runway-relay submit" in text
    page.click("#jobs-empty a[href='#new']")
    page.wait_for_selector("#view-new:not([hidden])")
    ui.fits()


PLAYER_PROBE = """() => {
  const v = document.getElementById('job-video');
  window.__video = v; window.__played = 0; window.__resets = 0; let last = 0;
  v.addEventListener('timeupdate', () => { if (v.currentTime > last) window.__played += v.currentTime - last;
                                            last = v.currentTime; });
  v.addEventListener('emptied', () => { window.__resets += 1; });
  v.muted = true; v.loop = true;
  return v.play();
}"""


@WIDTHS
def test_the_player_stays_put_while_other_jobs_update(relay: RelayProcess, console: Any, width: str) -> None:
    ui: Console = console(relay, width)
    page = ui.open("new")
    page.select_option("#model", "veo-3.1")
    page.fill("#prompt", "the one we watch")
    page.click("#submit-button")
    page.wait_for_function("() => location.hash.startsWith('#job=')")
    page.wait_for_selector("#job-video")  # appears once downloaded, and never goes away
    page.evaluate("() => { window.__first = document.getElementById('job-video'); }")
    page.evaluate(PLAYER_PROBE)
    page.wait_for_function("() => window.__played > 0.2")
    before = ui.events()
    others = [
        relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": f"other {n}"}).json()["id"]
        for n in range(3)
    ]
    for job_id in others:
        relay.wait_for(job_id, settled)
    page.wait_for_function(f"() => Number(document.getElementById('live').dataset.events) >= {before + 9}")
    played = page.evaluate("() => window.__played")
    page.wait_for_function(f"() => window.__played > {played} + 0.5")  # still playing after those events
    state = page.evaluate(
        "() => ({same: document.getElementById('job-video') === window.__first, count: "
        "document.querySelectorAll('video').length, paused: window.__video.paused, resets: window.__resets})"
    )
    assert state == {"same": True, "count": 1, "paused": False, "resets": 0}
    ui.fits()
    ui.shot("playing")


@WIDTHS
def test_job_page_timeline_handlers_and_actions(relay: RelayProcess, console: Any, width: str) -> None:
    # A job that ends soon, then one that Runway answers 429 once: it waits for the first to end.
    relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "first"})
    throttled = relay.api(
        "POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "[throttle] a lighthouse"}
    )
    job = relay.wait_for(throttled.json()["id"], settled, timeout=60)
    ui: Console = console(relay, width)
    page = ui.open(f"job={job['id']}")
    page.wait_for_selector("#timeline li[data-state=throttled]")
    rest = page.inner_text("#timeline li[data-state=throttled]")
    assert "429" in rest and "waiting to retry" in rest and " s" in rest
    labels = page.eval_on_selector_all("#timeline .t-label", "l => l.map(x => x.textContent)")
    assert labels[0].startswith("Queued") and labels[-1] == "Succeeded" and "Generating" in labels
    assert "Done" in page.inner_text("#runs") and "download" in page.inner_text("#runs")
    page.wait_for_selector("#job-video")

    page.click("#job-replay")
    page.wait_for_function("() => document.getElementById('job-note').textContent.includes('Replaying')")
    page.wait_for_function(
        "() => (document.querySelector('#runs details summary') || {}).textContent?.includes('1 replay')"
    )
    page.click("#runs details summary")
    assert page.eval_on_selector_all("#runs details li", "l => l.length") == 2
    assert "Replay 1, try 1" in page.inner_text("#runs details")
    ui.fits()
    ui.shot("timeline-replay")

    moderated = relay.api("POST", "/api/jobs", json={"model": "sora-2", "text_prompt": "[moderate] x"}).json()
    relay.wait_for(moderated["id"], settled)
    ui.go(f"job={moderated['id']}")
    page.wait_for_function(
        "() => (document.querySelector('.error-box strong') || {}).textContent"
        ' === "Blocked by Runway\'s moderation"'
    )
    assert "not re-submitted: moderation failure" in page.inner_text("#runs")
    assert not page.is_visible("#player")
    ui.shot("moderated")

    stalled = relay.api(
        "POST", "/api/jobs", json={"model": "kling-2.6-pro", "text_prompt": "[hold] a dancer"}
    ).json()
    ui.go(f"job={stalled['id']}")
    page.wait_for_selector("#view-job .job-badges .pill.s-running")
    assert page.is_visible("#timeline li.t-ongoing")
    page.click("#job-cancel")
    page.wait_for_selector("#view-job .job-badges .pill.s-cancelled")
    assert "Cancelled" in page.inner_text("#job-note") and not page.is_visible("#job-cancel")
    assert relay.api("GET", f"/api/jobs/{stalled['id']}").json()["status"] == "cancelled"

    page.click("#job-resubmit")
    page.wait_for_function(
        f"() => location.hash.startsWith('#job=') && !location.hash.includes({stalled['id']!r})"
    )
    copy = page.evaluate("() => decodeURIComponent(location.hash.slice(5))")
    assert relay.api("GET", f"/api/jobs/{copy}").json()["params"] == stalled["params"]
    assert "Re-submitted" in page.inner_text("#toasts")
    relay.api("POST", f"/api/jobs/{copy}/cancel")
