"""A third-party handler package (examples/runway-relay-example-handler) installed with pip and run by
a real relay through the ``runway_relay.handlers`` entry-point group."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "runway-relay-example-handler"
DIST = "runway-relay-example-handler"


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def example_plugin(tmp_path: Path) -> Iterator[None]:
    """Install the example (from a copy, so no build files land in the checkout); uninstall after."""
    source = tmp_path / "example-src"
    shutil.copytree(EXAMPLE, source)
    # Without build isolation nothing is downloaded, but setuptools < 70.1 also needs `wheel`;
    # when the venv lacks it, an isolated build fetches the build backend from the package index.
    installed = pip("install", "--no-deps", "--no-build-isolation", str(source))
    if installed.returncode != 0:
        installed = pip("install", "--no-deps", str(source))
    assert installed.returncode == 0, installed.stderr
    try:
        yield
    finally:
        pip("uninstall", "-y", DIST)


def test_an_installed_plugin_handler_runs(example_plugin: None, relay_factory: Any) -> None:
    relay = relay_factory(RELAY_HANDLERS="download,example")
    assert relay.api("GET", "/healthz").json()["handlers"] == ["download", "example"]
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "plugins"}).json()
    job = relay.wait_for(
        job["id"],
        lambda j: (
            j["status"] == "succeeded"
            and any(h["name"] == "example" and h["signal"] == "job-succeeded" for h in j["handlers"])
            and all(h["status"] == "done" for h in j["handlers"])
        ),
    )
    lines = [json.loads(line) for line in (relay.downloads / "events.jsonl").read_text().splitlines()]
    assert {line["job"] for line in lines} == {job["id"]}
    events = [line["event"] for line in lines]
    assert {"job-submitted", "job-succeeded"} <= set(events)
    assert len(events) == sum(1 for h in job["handlers"] if h["name"] == "example")
