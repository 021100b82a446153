"""Who may call what: with RELAY_API_KEY nothing answers without the key but callbacks, sign-in and
health; the built-in simulator answers only to its relay and posts only to that relay's callbacks."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from runway_relay.simulator import Simulator

from conftest import RelayProcess, free_port, relay_env
from servers import serve_in_thread

KEY = "access-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Every route the relay has, the mounted simulator's, and some it does not (yet) have.
GUARDED = [
    ("GET", "/"),
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("GET", "/api/jobs/j1"),
    ("POST", "/api/jobs/j1/cancel"),
    ("POST", "/api/jobs/j1/replay"),
    ("GET", "/api/jobs/j1/events"),
    ("GET", "/api/events"),
    ("POST", "/api/assets"),
    ("GET", "/api/models"),
    ("GET", "/metrics"),
    ("GET", "/files/j1/clip.mp4"),
    ("GET", "/static/js/main.js"),
    ("GET", "/sim/stats"),
    ("GET", "/sim/artifacts/0000.mp4"),
    ("POST", "/sim/release/t1"),
    ("GET", "/v1/runwayml/scheduler/"),
    ("DELETE", "/v1/runwayml/scheduler/t1"),
    ("POST", "/v1/runwayml/videos/create"),
    ("GET", "/v1/runwayml/accounts/"),
    ("GET", "/readyz"),
    ("GET", "/openapi.json"),
    ("GET", "/nonesuch"),
    ("PUT", "/api/jobs"),
    ("GET", "/callbacks/some-token"),
    ("POST", "/healthz"),
]


def test_with_a_key_nothing_answers_without_it(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    for method, path in GUARDED:
        answer = relay.api(method, path, follow_redirects=False)
        if path == "/":
            assert (answer.status_code, answer.headers["location"]) == (303, "/login")
        else:
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
            assert "RELAY_API_KEY" in answer.json()["error"]
    assert relay.api("GET", "/healthz").status_code == 200
    assert relay.api("GET", "/login").status_code == 200
    assert relay.api("POST", "/callbacks/some-token", json={}).status_code == 404
    # with the key: the relay's own routes answer, the simulator's stats too ...
    for path in ("/api/jobs", "/metrics", "/sim/stats", "/static/js/main.js"):
        assert relay.api("GET", path, headers=AUTH).status_code == 200, path
    # ... but the simulated upstream answers only to the relay itself, key or not
    for path in ("/v1/runwayml/scheduler/", "/v1/runwayml/accounts/"):
        assert relay.api("GET", path, headers=AUTH).json() == {"error": "Unauthorized", "code": 401}


def test_a_keyed_relay_still_runs_jobs_on_its_simulator(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY=KEY)
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "x"}, headers=AUTH).json()

    def downloaded() -> dict[str, Any] | None:
        found = relay.api("GET", f"/api/jobs/{job['id']}", headers=AUTH).json()
        runs = [h for h in found["handlers"] if h["name"] == "download"]
        return found if runs and runs[0]["status"] in ("done", "dead") else None

    final = wait(downloaded)
    assert final["status"] == "succeeded"
    assert [h["status"] for h in final["handlers"] if h["name"] == "download"] == ["done"], final
    assert httpx.get(final["artifacts"][0]["url"], headers=AUTH).status_code == 200


def wait(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def test_without_a_key_the_simulator_still_answers_only_to_its_relay(relay: RelayProcess) -> None:
    listed = relay.api("GET", "/v1/runwayml/scheduler/")
    assert listed.status_code == 401  # it would list every running task's replyUrl, token and all
    assert relay.api("DELETE", "/v1/runwayml/scheduler/x").status_code == 401
    relayed = relay.api(
        "POST",
        "/v1/runwayml/videos/create",
        json={"model": "gen4.5", "text_prompt": "x", "replyUrl": "http://192.0.2.1/hook"},
    )
    assert relayed.status_code == 401
    job = relay.api("POST", "/api/jobs", json={"model": "gen4.5", "text_prompt": "still works"}).json()
    assert relay.wait_for(job["id"], lambda j: j["status"] == "succeeded")["progress"] == 1.0


@pytest.mark.parametrize(
    ("reply_url", "accepted"),
    [
        ("http://127.0.0.1:8000/callbacks/AbC_d-9", True),
        ("http://127.0.0.1:8000/callbacks/", False),
        ("http://192.0.2.1/callbacks/AbC", False),
        ("https://127.0.0.1:8000/callbacks/AbC", False),
        ("http://127.0.0.1:8001/callbacks/AbC", False),
        ("http://127.0.0.1:8000/callbacks/../api/jobs", False),
        ("http://127.0.0.1:8000/callbacks/a/b", False),
        ("http://127.0.0.1:8000/callbacks/a?next=http://192.0.2.1/", False),
        ("http://127.0.0.1:8000@192.0.2.1/callbacks/AbC", False),
        ("http://127.0.0.1:8000/api/jobs", False),
    ],
)
def test_the_mounted_simulator_posts_only_to_its_relays_callbacks(reply_url: str, accepted: bool) -> None:
    sim = Simulator(token="t", step_seconds=3600, reply_root="http://127.0.0.1:8000/callbacks/")
    body = {"model": "gen4.5", "text_prompt": "x", "replyUrl": reply_url}
    with serve_in_thread(sim.app) as url:
        answer = httpx.post(
            f"{url}/v1/runwayml/videos/create", json=body, headers={"Authorization": "Bearer t"}
        )
    assert answer.status_code == (200 if accepted else 400), answer.text
    if not accepted:
        assert "replyUrl" in answer.json()["error"] and not sim.tasks


def test_simulate_refuses_a_public_host_without_a_token(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runway_relay", "simulate", "--host", "0.0.0.0", "--port", str(free_port())],
        env=relay_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "--token" in result.stderr and "Traceback" not in result.stderr
