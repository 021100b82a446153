"""Browser helpers for the dashboard tests: Debian's Chromium through Playwright, at a desktop or a phone
width. The relay serves its pages with a strict Content-Security-Policy; anything it refuses (an inline
script or style) is collected as an error and fails the test."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
MEDIA = Path(__file__).resolve().parent.parent / "relay" / "simulator"
IMAGE, VIDEO = MEDIA / "preview.jpg", MEDIA / "sample.mp4"


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium; the test is skipped where Chromium or Playwright is missing."""
    if CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Console:
    """One browser context on the dashboard; collects page errors and CSP refusals."""

    def __init__(self, browser: Any, url: str, width: str, shots: Path, test: str) -> None:
        self.url, self.width, self.shots = url, width, shots
        self.test = "".join(c if c.isalnum() or c in "-_" else "-" for c in test)[:80]
        self.context = browser.new_context(viewport=WIDTHS[width])
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}\n{e.stack}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and ("Content Security Policy" in text or "Refused to" in text):
            self.errors.append(f"CSP: {text}")

    @property
    def phone(self) -> bool:
        return self.width == "phone"

    def open(self, hash_: str = "") -> Any:
        """The dashboard at ``/#hash_``, once its event stream is live."""
        self.page.goto(f"{self.url}/" + (f"#{hash_}" if hash_ else ""))
        self.page.wait_for_selector("#live[data-state=live]")
        return self.page

    def go(self, hash_: str) -> None:
        """Another view of the already open page (no reload)."""
        self.page.evaluate("h => { location.hash = h; }", hash_)

    def events(self) -> int:
        """Live events the page has received so far."""
        return int(self.page.get_attribute("#live", "data-events") or 0)

    def shot(self, name: str) -> Path:
        """A full-page screenshot under the test's temporary folder."""
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{self.test}-{self.width}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def fits(self) -> None:
        """No horizontal scroll: the page is no wider than the window."""
        scroll, client = self.page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert scroll <= client, f"{self.width}: the page is {scroll} px wide in a {client} px window"

    def close(self) -> None:
        errors = list(self.errors)
        self.context.close()
        assert not errors, "\n".join(errors)
