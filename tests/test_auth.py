"""RELAY_API_KEY: the API, metrics and files need the key; callbacks and health stay open."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from conftest import free_port, relay_env


def test_api_key_guards_the_api_but_not_callbacks(relay_factory: Any) -> None:
    relay = relay_factory(RELAY_API_KEY="s3cret-key")
    assert relay.api("GET", "/api/jobs").status_code == 401
    assert relay.api("GET", "/metrics").status_code == 401
    assert relay.api("GET", "/api/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = relay.api("GET", "/api/jobs", headers={"Authorization": "Bearer s3cret-key"})
    assert ok.status_code == 200
    assert relay.api("GET", "/healthz").status_code == 200
    assert relay.api("POST", "/callbacks/whatever", json={}).status_code == 404
    assert relay.api("GET", "/", follow_redirects=False).headers["location"] == "/login"
    cli = [sys.executable, "-m", "runway_relay", "jobs", "--server", relay.url]
    assert subprocess.run(cli, capture_output=True, timeout=30).returncode == 2
    keyed = subprocess.run([*cli, "--api-key", "s3cret-key"], capture_output=True, timeout=30)
    assert keyed.returncode == 0
    assert "s3cret-key" not in relay.log()


def test_serve_refuses_a_public_host_without_a_key(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runway_relay", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=relay_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "RELAY_API_KEY" in result.stderr


def test_bad_configuration_is_a_clear_exit_2(tmp_path) -> None:
    for extra in ({"RELAY_HANDLERS": "download,nonesuch"}, {"RELAY_POLL_AFTER": "soon"}):
        env = {**relay_env(tmp_path), **extra}
        result = subprocess.run(
            [sys.executable, "-m", "runway_relay", "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2, result.stderr
        assert "configuration error" in result.stderr and "Traceback" not in result.stderr
